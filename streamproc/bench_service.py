"""``streamproc bench-service``: throughput and latency of the live service on a real broker.

Three measurements in one run, on one Mosquitto (started here unless ``--broker``):

1. **Baseline.** A bare aiomqtt subscriber (MQTT 5, ``async for client.messages``) that
   only counts drains a backlog of N QoS 1 readings from its persistent session.
2. **Service throughput.** The service drains the same backlog from its own persistent
   session: decode, evaluate, acknowledge, publish. Reported as readings/s and as a ratio
   of the baseline, after checking that every reading was accepted (no loss).
3. **Latency.** A separate process publishes readings at a steady rate (2,000/s by
   default) over many beds, while a few beds alternate their capillary refill time around
   the 3-s target so that their readings raise and clear ``crt.abnormal``. For every alert
   event the service records the time from the reading's receipt to the alert's PUBLISH
   written to the socket, and to the broker's PUBACK of it; the command prints p50, p99
   and p99.9 of both, and the host's load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry

from streamproc.broker import LocalBroker
from streamproc.mqtt import count_messages, create_session, open_publisher
from streamproc.percentiles import percentile
from streamproc.service import Service, open_service, serve
from streamproc.settings import load_settings

__all__ = ["configure_parser", "percentile", "run_bench"]

#: Publishes awaited together when loading a backlog.
_PUBLISH_WINDOW: Final = 500
#: One bed in this many alternates its CRT around the target in the latency phase.
_ALERTING_EVERY: Final = 20
#: CRT values either side of the TTP target of < 3 s (the target itself is in the protocol).
_CRT_ABNORMAL, _CRT_NORMAL = 4.0, 2.0
_GIVE_UP: Final = 120.0


@dataclass(slots=True)
class BenchResult:
    readings: int
    baseline_rate: float
    service_rate: float
    accepted: int
    rate: float
    latencies: dict[str, list[float]]
    sent: int

    @property
    def ratio(self) -> float:
        return self.service_rate / self.baseline_rate if self.baseline_rate else 0.0


def _backlog(count: int, beds: int, start: float) -> Iterator[tuple[str, bytes]]:
    """``count`` plausible MAP readings over ``beds`` beds, one second apart per bed."""
    for n in range(count):
        bed, step = n % beds, n // beds
        payload = {"ts": start + step, "device": f"bench-{bed}", "seq": step,
                   "values": {"map": 72.0 + (n % 7)}}  # fmt: skip
        yield f"icu/bench/b{bed:03d}/vitals", json.dumps(payload).encode()


async def _publish_backlog(url: str, messages: Iterator[tuple[str, bytes]]) -> None:
    async with open_publisher(url, identifier="bench-backlog") as publisher:
        window: list[asyncio.Task[None]] = []
        for topic, payload in messages:
            window.append(asyncio.ensure_future(publisher.publish(topic, payload, qos=1)))
            if len(window) >= _PUBLISH_WINDOW:
                await asyncio.gather(*window)
                window.clear()
        await asyncio.gather(*window)


async def _baseline(url: str, readings: int, beds: int, start: float) -> float:
    await create_session(url, identifier="bench-baseline", topic_filter="icu/+/+/vitals")
    await _publish_backlog(url, _backlog(readings, beds, start))
    count, seconds = await count_messages(
        url, identifier="bench-baseline", expected=readings, give_up_after=_GIVE_UP
    )
    if count < readings:
        raise SystemExit(f"baseline received {count} of {readings} readings")
    return count / seconds


def _service(url: str, state: Path, latencies: dict[str, list[float]] | None = None) -> Service:
    settings = load_settings(
        broker=url, instance="bench", state_dir=state, metrics_port=0, status_interval=1.0
    )
    return open_service(
        settings,
        registry=CollectorRegistry(),
        on_latency=None if latencies is None else lambda stage, s: latencies[stage].append(s),
    )


def _accepted(service: Service) -> int:
    value = service.metrics.registry.get_sample_value(
        "streamproc_messages_received_total", {"outcome": "accepted", "reason": ""}
    )
    return int(value or 0)


async def _until_ready(service: Service, task: asyncio.Task[None]) -> None:
    async with asyncio.timeout(30):
        while not service.ready:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)


async def _service_throughput(url: str, state: Path, readings: int, beds: int) -> tuple[float, int]:
    first = _service(url, state)  # leaves the persistent session subscribed
    task = asyncio.ensure_future(serve(first))
    await _until_ready(first, task)
    first.request_stop()
    await task
    await _publish_backlog(url, _backlog(readings, beds, time.time() - readings / beds - 60))
    service = _service(url, state)
    task = asyncio.ensure_future(serve(service))
    started = finished = 0.0
    async with asyncio.timeout(_GIVE_UP):
        while (done := _accepted(service)) < readings:
            if done and not started:
                started, base = time.perf_counter(), done
            if task.done():
                task.result()
            await asyncio.sleep(0.002)
        finished = time.perf_counter()
    service.request_stop()
    await task
    return (readings - base) / (finished - started), _accepted(service)


def _paced_load(url: str, rate: float, seconds: float, beds: int) -> None:
    """The latency phase's load, run in a child process so it has its own CPU time."""
    asyncio.run(_publish_paced(url, rate, seconds, beds))


async def _publish_paced(url: str, rate: float, seconds: float, beds: int) -> None:
    batch = max(1, int(rate / 100))  # every 10 ms
    total = int(rate * seconds)
    start_ts = time.time() - 1.0
    async with open_publisher(url, identifier="bench-load") as publisher:
        began = time.perf_counter()
        for sent in range(0, total, batch):
            await asyncio.gather(
                *(publisher.publish(*_live_reading(n, beds, start_ts, rate)) for n in
                  range(sent, min(total, sent + batch)))
            )  # fmt: skip
            delay = began + (sent + batch) / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


def _live_reading(n: int, beds: int, start_ts: float, rate: float) -> tuple[str, bytes]:
    bed, step = n % beds, n // beds
    values: dict[str, float] = {"map": 70.0 + (n % 5)}
    if bed % _ALERTING_EVERY == 0:
        values["crt"] = _CRT_ABNORMAL if step % 2 == 0 else _CRT_NORMAL
    ts = start_ts + n / rate
    payload = {"ts": ts, "device": f"load-{bed}", "seq": step, "values": values}
    return f"icu/load/b{bed:03d}/vitals", json.dumps(payload).encode()


async def _latency(
    url: str, state: Path, rate: float, seconds: float, beds: int
) -> tuple[dict[str, list[float]], int]:
    latencies: dict[str, list[float]] = {"written": [], "acknowledged": []}
    service = _service(url, state, latencies)
    task = asyncio.ensure_future(serve(service))
    await _until_ready(service, task)
    before = _accepted(service)
    context = multiprocessing.get_context("spawn")
    load = context.Process(target=_paced_load, args=(url, rate, seconds, beds))
    load.start()
    try:
        while load.is_alive():
            await asyncio.sleep(0.1)
            if task.done():
                task.result()
        await asyncio.sleep(0.5)  # the last alerts' PUBACKs
    finally:
        load.join(5)
        service.request_stop()
        await task
    return latencies, _accepted(service) - before


async def run_bench(
    *, broker: str | None, readings: int, beds: int, rate: float, seconds: float
) -> BenchResult:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamproc-")))
        if broker is None:
            broker = stack.enter_context(
                LocalBroker(workdir=workdir / "broker", persistence=False)
            ).url
        start = time.time() - readings / beds - 60
        baseline = await _baseline(broker, readings, beds, start)
        service_rate, accepted = await _service_throughput(broker, workdir / "t", readings, beds)
        latencies, sent = await _latency(broker, workdir / "l", rate, seconds, beds)
    return BenchResult(readings, baseline, service_rate, accepted, rate, latencies, sent)


def _percentiles(label: str, seconds: list[float]) -> str:
    ms = [1000 * s for s in seconds]
    return (
        f"  {label:<34} p50 {percentile(ms, 50):6.2f} ms   p99 {percentile(ms, 99):7.2f} ms   "
        f"p99.9 {percentile(ms, 99.9):7.2f} ms   max {max(ms, default=float('nan')):7.2f} ms"
    )


def report(result: BenchResult) -> str:
    loss = "no loss" if result.accepted == result.readings else "LOSS"
    written, acknowledged = result.latencies["written"], result.latencies["acknowledged"]
    lines = [
        f"baseline (bare aiomqtt subscriber, counts only): {result.baseline_rate:9,.0f} readings/s",
        (
            f"service (decode, evaluate, ack, publish):        {result.service_rate:9,.0f} "
            f"readings/s = {100 * result.ratio:.0f} % of baseline (goal ≥ 70 %)"
        ),
        f"  {result.accepted:,} of {result.readings:,} backlog readings accepted at QoS 1: {loss}",
        (
            f"latency at {result.rate:,.0f} readings/s over {result.sent:,} readings, "
            f"{len(written):,} alert events (goal: receipt → publish p99 < 5 ms):"
        ),
        _percentiles("receipt → alert PUBLISH written", written),
        _percentiles("receipt → broker's PUBACK", acknowledged),
        "host load average (1, 5, 15 min) at the end: "
        + ", ".join(f"{load:.2f}" for load in os.getloadavg())
        + f" on {os.cpu_count()} CPUs",
    ]
    return "\n".join(lines)


def configure_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench-service",
        help="measure the service's throughput (vs a bare subscriber) and alert latency",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--readings", type=int, default=40_000, help="backlog size (40000)")
    parser.add_argument("--beds", type=int, default=200, help="beds the readings spread over")
    parser.add_argument("--rate", type=float, default=2000.0, help="latency load, readings/s")
    parser.add_argument("--seconds", type=float, default=10.0, help="latency load duration")
    parser.add_argument("--broker", metavar="URL", help="use this broker, not a local Mosquitto")
    parser.add_argument(
        "--uvloop", action="store_true", help="run on uvloop (pip install 'streamproc[fast]')"
    )
    parser.set_defaults(handler=_bench_command)


def _bench_command(args: argparse.Namespace) -> int:
    bench = run_bench(
        broker=args.broker, readings=args.readings, beds=args.beds, rate=args.rate,
        seconds=args.seconds,
    )  # fmt: skip
    if args.uvloop:
        import uvloop

        result = uvloop.run(bench)
    else:
        result = asyncio.run(bench)
    sys.stdout.write(report(result) + "\n")
    return 0
