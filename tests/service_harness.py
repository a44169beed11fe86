"""Helpers of the service's integration tests: a real subscriber, the service in-process or as
a child process, and HTTP probes. Every wait has a timeout."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from prometheus_client import CollectorRegistry

from streamproc.broker import free_port
from streamproc.service import Service, open_service, serve
from streamproc.settings import Settings

WAIT = 10.0  # the longest any single wait in these tests may take


class Watcher:
    """A real MQTT subscriber that records every message it receives, per topic."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self._arrived = asyncio.Condition()

    def json(self, suffix: str) -> list[dict[str, Any]]:
        return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix) and p]

    async def wait_for(
        self, predicate: Callable[[Watcher], bool], *, limit: float = WAIT, what: str = ""
    ) -> None:
        try:
            async with asyncio.timeout(limit), self._arrived:
                await self._arrived.wait_for(lambda: predicate(self))
        except TimeoutError:
            topics = sorted({t for t, _, _ in self.messages})
            raise AssertionError(f"timed out waiting for {what}; got topics {topics}") from None

    async def _record(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            payload = message.payload if isinstance(message.payload, bytes) else b""
            async with self._arrived:
                self.messages.append((str(message.topic), payload, bool(message.retain)))
                self._arrived.notify_all()


@asynccontextmanager
async def watching(
    url: str, *filters: str, identifier: str | None = None
) -> AsyncIterator[Watcher]:
    """Subscribe to ``filters`` (QoS 1) and record until the block ends.

    With an ``identifier`` the session is persistent: messages for its subscriptions wait in
    the broker while the watcher is away and arrive when it comes back.
    """
    port = int(url.rsplit(":", 1)[1])
    watcher = Watcher()
    properties = None
    if identifier is not None:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = 300
    async with aiomqtt.Client(
        "127.0.0.1",
        port,
        protocol=aiomqtt.ProtocolVersion.V5,
        identifier=identifier,
        clean_start=identifier is None,
        properties=properties,
    ) as client:
        for topic_filter in filters:
            await client.subscribe(topic_filter, qos=1)
        task = asyncio.create_task(watcher._record(client))
        try:
            yield watcher
        finally:
            task.cancel()
            with suppress(asyncio.CancelledError):
                await task


@asynccontextmanager
async def publisher(url: str) -> AsyncIterator[aiomqtt.Client]:
    port = int(url.rsplit(":", 1)[1])
    async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        yield client


async def until(condition: Callable[[], bool], *, limit: float = WAIT, what: str = "") -> None:
    """Poll ``condition`` (often state in another process) until it holds, at most ``limit`` s."""
    async with asyncio.timeout(limit):
        while not condition():  # noqa: ASYNC110 - the state may live in another process
            await asyncio.sleep(0.02)
    assert condition(), what


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[Service]:
    """The service in-process, with its HTTP server, until the block ends (then stopped)."""
    service = open_service(settings, registry=CollectorRegistry())
    task = asyncio.create_task(serve(service))
    try:
        await until(lambda: service.ready or task.done(), what="service ready")
        if task.done():
            task.result()
        yield service
    finally:
        service.request_stop()
        async with asyncio.timeout(WAIT):
            await task


async def http_get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), WAIT)
    writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def metric_value(text: str, name: str, **labels: str) -> float:
    """A sample's value in Prometheus text, 0.0 when absent."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        metric, _, label_text = series.partition("{")
        if metric == name and ",".join(sorted(label_text.rstrip("}").split(","))) == wanted:
            return float(value)
    return 0.0


class ServiceProcess:
    """``streamproc run`` as a child process, for SIGKILL and SIGTERM tests."""

    def __init__(self, *, broker_url: str, state_dir: Path, instance: str, **flags: str) -> None:
        self.metrics_port = free_port()
        self.log = state_dir.parent / f"{instance}.log"
        self.argv = [
            sys.executable, "-m", "streamproc", "run", "--broker", broker_url,
            "--state-dir", str(state_dir), "--instance", instance,
            "--metrics-port", str(self.metrics_port), "--checkpoint-interval", "0.5",
        ]  # fmt: skip
        for flag, value in flags.items():
            self.argv += [f"--{flag.replace('_', '-')}", value]
        self.process: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
                self.argv, stdout=log, stderr=log, env=env
            )
        await until(self._ready, limit=20, what=f"service ready (see {self.log})")

    def _ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"service exited: {self.log.read_text()}")
        try:
            import urllib.request

            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=1
            ) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(WAIT)

    def terminate(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(WAIT)

    def stop_quietly(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(WAIT)


def now() -> float:
    return time.time()
