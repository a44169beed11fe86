"""The MQTT edge of ``devices``: connect like a monitor gateway, publish without stalling.

``aiomqtt.MqttError`` is translated into :class:`streamproc.errors.BrokerError` here and
nowhere else. Clients set TCP_NODELAY (design §6: with Nagle's algorithm a QoS 1 round trip
on loopback takes tens of milliseconds). :class:`Pipeline` keeps many QoS 1 publishes in
flight at once instead of awaiting each PUBACK before sending the next message.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Hashable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiomqtt

from streamproc.errors import BrokerError, ConfigError

__all__ = ["BrokerAddress", "Pipeline", "connect", "parse_broker_url"]

logger = logging.getLogger(__name__)

#: Credentials for the broker come from the environment, never the command line (design §9).
USERNAME_ENV = "DEVICES_MQTT_USERNAME"
PASSWORD_ENV = "DEVICES_MQTT_PASSWORD"  # noqa: S105 - the name of a variable, not a secret
CA_FILE_ENV = "DEVICES_MQTT_CA_FILE"

_NODELAY = (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``."""
    parts = urlsplit(url)
    if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
        raise ConfigError(f"broker URL {url!r}: use mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls = parts.scheme == "mqtts"
    return BrokerAddress(parts.hostname, parts.port or (8883 if tls else 1883), tls)


def _tls_context(address: BrokerAddress) -> ssl.SSLContext | None:
    if not address.tls:
        return None
    return ssl.create_default_context(cafile=os.environ.get(CA_FILE_ENV))


@asynccontextmanager
async def connect(
    url: str, *, identifier: str, max_inflight: int = 1000, clean_session: bool = True
) -> AsyncIterator[aiomqtt.Client]:
    """A connected client with TCP_NODELAY; ``BrokerError`` if the broker cannot be reached."""
    address = parse_broker_url(url)
    client = aiomqtt.Client(
        address.host,
        address.port,
        identifier=identifier,
        username=os.environ.get(USERNAME_ENV),
        password=os.environ.get(PASSWORD_ENV),
        tls_context=_tls_context(address),
        clean_session=clean_session,
        max_inflight_messages=max_inflight,
        socket_options=[_NODELAY],
        timeout=30.0,
    )
    try:
        async with client:
            yield client
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"MQTT broker {url}: {exc}") from exc


class Pipeline:
    """Publish with at most ``window`` messages awaiting their PUBACK; an async context.

    ``publish`` returns as soon as the message is handed to the client (it waits only when
    the window is full), so a device never stalls on one round trip. Leaving the context
    waits until every message is acknowledged.
    """

    def __init__(self, client: aiomqtt.Client, *, window: int = 64, qos: int = 1) -> None:
        self.client = client
        self.qos = qos
        # aiomqtt warns once per publish beyond 10 pending calls; pipelining means many
        client.pending_calls_threshold = max(client.pending_calls_threshold, window)
        self._slots = asyncio.Semaphore(window)
        self._group = asyncio.TaskGroup()
        self.sent = 0
        self.acked = 0
        #: wall-clock time (epoch s) each stamped message was handed to the client
        self.stamps: dict[Hashable, float] = {}

    async def __aenter__(self) -> Self:
        await self._group.__aenter__()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self._group.__aexit__(exc_type, exc, tb)
        except* aiomqtt.MqttError as group:
            raise BrokerError(f"publishing failed: {group.exceptions[0]}") from group

    async def publish(
        self, topic: str, payload: bytes, *, retain: bool = False, stamp: Hashable = None
    ) -> None:
        """Hand a message over; with ``stamp``, record when it went out under that key."""
        await self._slots.acquire()
        self.sent += 1
        self._group.create_task(self._send(topic, payload, retain, stamp))

    async def _send(self, topic: str, payload: bytes, retain: bool, stamp: Hashable) -> None:
        try:
            if stamp is not None:
                self.stamps[stamp] = time.time()
            await self.client.publish(topic, payload, qos=self.qos, retain=retain)
            self.acked += 1
        finally:
            self._slots.release()
