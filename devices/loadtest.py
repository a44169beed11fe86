"""``python -m devices loadtest``: drive a chosen rate of readings at a running streamproc.

Every bed sends MAP at 1 Hz of event time, temperatures every 10 s and charted CRT,
lactate and urine output (values in ``physiology.toml [loadtest]``). A fraction of the beds
breach, predictably:

* CRT probes chart an abnormal CRT every other time (``crt.abnormal`` and
  ``perfusion.inadequate`` at that reading, cleared by the next, normal one);
* MAP probes drop below the 50 mmHg floor once (``map.below_floor`` 60 s later).

The generator stamps the wall-clock time it publishes each reading of a breaching bed; a
listener in a separate process stamps each alert's arrival. An alert's ``at`` is the event
time of the reading that completed the breach, so ``arrival − publish time of (bed, at)`` is
the end-to-end latency. Expected alerts never received are *lost*; raised alerts that were
not expected are *unexpected*.

``--rate`` is the aggregate of readings per wall second. At the default rate (1.15 messages
per bed per second) MAP runs at 1 Hz in real time; a higher rate compresses time as
``simulate --speed`` does (the timeline ends now, no reading is ahead of the clock).
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import random
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from devices.bedside import encode_json
from devices.listener import AlertRecord, echo_topic, listen
from devices.physiology import LoadParams, physiology
from devices.publisher import Pipeline, connect
from devices.simulate import Timeline, bed_names
from streamproc.errors import BrokerError
from streamproc.percentiles import percentile
from streamproc.timestamps import format_ts

__all__ = ["Expected", "LoadConfig", "LoadPlan", "format_table", "run_loadtest"]

logger = logging.getLogger(__name__)

#: Seconds a MAP below the floor must last before ``map.below_floor`` (design §4).
MAP_FLOOR_SUSTAIN_S = 60
#: Seconds between the starts of successive MAP probes' breaches.
MAP_PROBE_STAGGER_S = 13
#: Rules raised by the reading that completes each kind of breach (design §4): an abnormal
#: CRT misses a TTP perfusion target, so ``perfusion.inadequate`` comes with ``crt.abnormal``.
CRT_PROBE_RULES: tuple[str, ...] = ("crt.abnormal", "perfusion.inadequate")
MAP_PROBE_RULES: tuple[str, ...] = ("map.below_floor",)
#: One echo probe (generator → broker → listener, without streamproc: the latency baseline)
#: per this many readings.
ECHO_EVERY = 50
#: The drain ends early once no alert arrived for this long (s) and enough have come.
DRAIN_QUIET_S = 1.0
#: How long the listener may take to subscribe (s).
LISTENER_READY_TIMEOUT_S = 15.0


@dataclass(frozen=True, slots=True)
class Expected:
    bed: str
    rule: str
    at: str


@dataclass(frozen=True, slots=True)
class LoadMessage:
    offset: float
    topic: str
    payload: bytes
    stamp: tuple[str, str] | None  # (bed, ts) of a breaching bed's reading


@dataclass(frozen=True, slots=True)
class LoadConfig:
    broker: str
    beds: int
    rate: float | None  # readings per wall second; None = MAP at 1 Hz in real time
    duration: float  # wall seconds of publishing
    ward: str = "load"
    seed: int = 1
    breach_fraction: float = 0.1
    # bad messages on the beds that do not breach, each rejected by streamproc with a reason
    malformed_rate: float = 0.0  # truncated JSON → malformed_json
    duplicate_rate: float = 0.0  # the same (device, seq) twice → duplicate
    drain: float = 10.0  # at most this many wall seconds to wait for the last alerts
    watch_pids: tuple[tuple[str, int], ...] = ()  # (label, pid) of streamproc, broker...
    progress: bool = True


def messages_per_bed_second(params: LoadParams) -> float:
    return 1.0 / params.map_period_s + 1.0 / params.temp_period_s + 1.0 / params.chart_period_s


class LoadPlan:
    """The messages of every bed, in event-time order, and the alerts they must raise."""

    def __init__(self, *, cfg: LoadConfig, start_ts: float, event_seconds: float) -> None:
        self.cfg = cfg
        self.p = physiology().loadtest
        self.start_ts = start_ts
        self.event_seconds = event_seconds
        self.beds = bed_names(cfg.beds)
        self.rng = random.Random(cfg.seed)
        self.crt_probes: set[int] = set()
        self.map_breach_at: dict[int, int] = {}
        self._assign_probes()
        self.expected: list[Expected] = []
        #: rejections the bad messages must draw, by reason
        self.expected_rejections: Counter[str] = Counter()
        self.seq = [0] * cfg.beds

    def _assign_probes(self) -> None:
        """Every ``1/breach_fraction``-th bed breaches: CRT and MAP probes in turn. MAP probes
        start their breach 13 s apart (wrapping), so that floor alerts spread over the run."""
        fraction = self.cfg.breach_fraction
        if fraction <= 0:
            return
        every = max(1, round(1.0 / fraction))
        span = max(1, int(self.event_seconds) - MAP_FLOOR_SUSTAIN_S)
        for j, i in enumerate(range(every - 1, self.cfg.beds, every)):
            if j % 2 == 0:
                self.crt_probes.add(i)
            else:
                self.map_breach_at[i] = (j * MAP_PROBE_STAGGER_S) % span

    @property
    def breaching(self) -> int:
        return len(self.crt_probes) + len(self.map_breach_at)

    def _payload(self, i: int, ts: str, values: str) -> bytes:
        self.seq[i] += 1
        bed = self.beds[i]
        head = f'{{"ts":"{ts}","device":"mon-{bed}","seq":{self.seq[i]},'
        return f'{head}"values":{{{values}}}}}'.encode()

    def contexts(self) -> Iterator[tuple[str, bytes]]:
        started = format_ts(self.start_ts)
        for bed in self.beds:
            body = {
                "patient": f"load-{bed}",
                "protocol": "tartare2s-ttp",
                "weight_kg": 70.0,
                "protocol_started": started,
            }
            yield f"icu/{self.cfg.ward}/{bed}/context", encode_json(body)

    def messages(self) -> Iterator[LoadMessage]:
        n = len(self.beds)
        phases = [round(i / n, 3) for i in range(n)]
        for k in range(int(self.event_seconds)):
            for i in range(n):
                yield from self._bed_second(i, k, phases[i])

    def _bed_second(self, i: int, k: int, phase: float) -> Iterator[LoadMessage]:
        p = self.p
        offset = k + phase
        ts = format_ts(self.start_ts + offset)
        bed = self.beds[i]
        breaching = i in self.crt_probes or i in self.map_breach_at
        stamp = (bed, ts) if breaching else None
        topic = f"icu/{self.cfg.ward}/{bed}/vitals"
        reading = LoadMessage(
            offset, topic, self._payload(i, ts, f'"map":{self._map(i, k, ts)}'), stamp
        )
        yield from (self._spoil(reading) if stamp is None else (reading,))
        if (k + i) % int(p.temp_period_s) == 0:
            temps = (
                f'"core_temp":{p.core_temp},"skin_temp":{p.skin_temp},'
                f'"skin_temp_ref":{p.skin_temp_ref}'
            )
            yield LoadMessage(offset, topic, self._payload(i, ts, temps), stamp)
        if (k + i) % int(p.chart_period_s) == 0:
            yield LoadMessage(
                offset, topic, self._payload(i, ts, self._chart(i, k, bed, ts)), stamp
            )

    def _spoil(self, message: LoadMessage) -> tuple[LoadMessage, ...]:
        """The message, truncated or twice at the configured rates (non-breaching beds)."""
        draw = self.rng.random()
        if draw < self.cfg.malformed_rate:
            self.expected_rejections["malformed_json"] += 1
            broken = message.payload[: len(message.payload) // 2]
            return (LoadMessage(message.offset, message.topic, broken, None),)
        if draw < self.cfg.malformed_rate + self.cfg.duplicate_rate:
            self.expected_rejections["duplicate"] += 1
            return (message, message)
        return (message,)

    def _map(self, i: int, k: int, ts: str) -> float:
        p = self.p
        start = self.map_breach_at.get(i)
        if start is None or k < start:
            return round(
                p.map_normal + self.rng.uniform(-p.map_normal_spread, p.map_normal_spread), 1
            )
        if k == start + MAP_FLOOR_SUSTAIN_S:
            self.expected.extend(Expected(self.beds[i], rule, ts) for rule in MAP_PROBE_RULES)
        return p.map_breach

    def _chart(self, i: int, k: int, bed: str, ts: str) -> str:
        p = self.p
        # this bed's chart number: beds chart at staggered seconds, (k + i) % period == 0
        count = (k + i) // int(p.chart_period_s)
        crt = p.crt_normal
        if i in self.crt_probes and count % 2 == 1:
            crt = p.crt_breach
            self.expected.extend(Expected(bed, rule, ts) for rule in CRT_PROBE_RULES)
        values = f'"crt":{crt},"mottling":0'
        if count % 3 == 0:
            values += f',"lactate":{p.lactate},"urine_output":{p.urine_output}'
        return values


# --- running ----------------------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process, from /proc (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(slots=True)
class _ListenerLink:
    """The parent's end of the pipe to the listener process, and what it has reported."""

    conn: Connection
    process: BaseProcess
    alerts: int = 0
    rejections: int = 0
    records: list[AlertRecord] = field(default_factory=list)
    cpu_s: float = 0.0

    def _absorb(self, message: tuple[Any, ...]) -> str:
        kind: str = message[0]
        if kind == "progress":
            self.alerts, self.rejections = message[1], message[2]
        elif kind == "done":
            self.records, self.cpu_s = message[1], message[2]
        elif kind == "error":
            raise BrokerError(f"the alert listener: {message[1]}")
        return kind

    def poll(self) -> None:
        while self.conn.poll():
            self._absorb(self.conn.recv())

    async def wait_for(self, kind: str, limit: float) -> None:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            while self.conn.poll():
                if self._absorb(self.conn.recv()) == kind:
                    return
            if not self.process.is_alive():
                raise BrokerError(
                    "the alert listener exited (exit code "
                    f"{self.process.exitcode}): is the broker reachable?"
                )
            await asyncio.sleep(0.02)
        raise BrokerError(f"the alert listener did not report {kind!r} within {limit:.0f} s")


async def run_loadtest(cfg: LoadConfig) -> dict[str, Any]:
    """Run the load test and return its figures (the ``--json`` document)."""
    params = physiology().loadtest
    per_bed = messages_per_bed_second(params)
    rate = cfg.rate if cfg.rate is not None else cfg.beds * per_bed
    speed = rate / (cfg.beds * per_bed)
    event_seconds = cfg.duration * speed
    timeline = Timeline.ending_now(duration=event_seconds, speed=speed)
    plan = LoadPlan(cfg=cfg, start_ts=timeline.start_ts, event_seconds=event_seconds)
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    listener = ctx.Process(target=listen, args=(child, cfg.broker, cfg.ward), daemon=True)
    listener.start()
    link = _ListenerLink(parent, listener)
    try:
        await link.wait_for("ready", LISTENER_READY_TIMEOUT_S)
        figures = await _drive(cfg, plan, timeline, link)
        parent.send(("stop",))
        await link.wait_for("done", LISTENER_READY_TIMEOUT_S)
    finally:
        listener.join(timeout=5.0)
        if listener.is_alive():
            listener.terminate()
            listener.join(timeout=5.0)
    figures.update(rate=rate, speed=speed, event_seconds=event_seconds)
    return _report(cfg, plan, figures, link)


async def _drive(
    cfg: LoadConfig, plan: LoadPlan, timeline: Timeline, link: _ListenerLink
) -> dict[str, Any]:
    async with connect(cfg.broker, identifier=f"devices-loadtest-{cfg.ward}") as client:
        async with Pipeline(client) as contexts:
            for topic, payload in plan.contexts():
                await contexts.publish(topic, payload, retain=True)
        watched = {(label, pid): _cpu_seconds(pid) for label, pid in cfg.watch_pids}
        # the clock starts now, after the set-up: readings carry "now", not the set-up's time
        timeline = Timeline.ending_now(duration=plan.event_seconds, speed=timeline.speed)
        plan.start_ts = timeline.start_ts
        cpu0, wall0 = time.process_time(), timeline.wall0
        async with Pipeline(client) as pipeline:
            lag, echoes = await _publish(
                pipeline, plan.messages(), timeline=timeline, link=link, cfg=cfg
            )
        wall1, cpu1 = time.monotonic(), time.process_time()
        watched_cpu = {
            label: (
                None if before is None or (after := _cpu_seconds(pid)) is None else after - before
            )
            for (label, pid), before in watched.items()
        }
        await _drain(link, expected=len(plan.expected), limit=cfg.drain)
    return {
        "published": pipeline.acked - echoes,
        "stamps": pipeline.stamps,
        "wall_s": wall1 - wall0,
        "generator_cpu_s": cpu1 - cpu0,
        "max_lag_ms": lag * 1000.0,
        "watched_cpu_s": watched_cpu,
    }


async def _drain(link: _ListenerLink, *, expected: int, limit: float) -> None:
    """Wait for the last alerts: until at least ``expected`` arrived and none came for a
    second, or ``limit`` seconds at most."""
    deadline = time.monotonic() + limit
    count, changed = link.alerts, time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        link.poll()
        if link.alerts != count:
            count, changed = link.alerts, time.monotonic()
        elif count >= expected and time.monotonic() - changed >= DRAIN_QUIET_S:
            return


async def _publish(
    pipeline: Pipeline,
    messages: Iterator[LoadMessage],
    *,
    timeline: Timeline,
    link: _ListenerLink,
    cfg: LoadConfig,
) -> tuple[float, int]:
    """Publish on schedule; returns the largest lag behind the schedule (s) and the number
    of echo probes sent."""
    max_lag = 0.0
    next_report = time.monotonic() + 1.0
    echo = echo_topic(cfg.ward)
    echoes = 0
    for count, message in enumerate(messages):
        now = time.monotonic()
        delay = timeline.due(message.offset) - now
        if delay > 0.002:
            await asyncio.sleep(delay)
        else:
            max_lag = max(max_lag, -delay)
        await pipeline.publish(message.topic, message.payload, stamp=message.stamp)
        if count % ECHO_EVERY == 0:
            await pipeline.publish(echo, str(count).encode(), stamp=("echo", str(count)))
            echoes += 1
        if now >= next_report:
            next_report += 1.0
            link.poll()
            if cfg.progress:
                elapsed = now - timeline.wall0
                logger.info(
                    "%5.1f s  published %d (%.0f/s)  alerts %d  rejected %d",
                    elapsed,
                    pipeline.sent,
                    pipeline.sent / elapsed,
                    link.alerts,
                    link.rejections,
                )
    return max_lag, echoes


# --- the report -------------------------------------------------------------------------------


def _latencies(records: Sequence[AlertRecord], stamps: dict[Any, float]) -> list[float]:
    """Milliseconds from the publish of the reading at ``(bed, at)`` to the alert's arrival."""
    out = []
    for record in records:
        published = stamps.get((record.bed, record.at))
        if published is not None and record.event in {"raised", "cleared"}:
            out.append((record.received - published) * 1000.0)
    return out


def _echo_latencies(records: Sequence[AlertRecord], stamps: dict[Any, float]) -> list[float]:
    out = []
    for record in records:
        published = stamps.get(("echo", record.at)) if record.rule == "echo" else None
        if published is not None:
            out.append((record.received - published) * 1000.0)
    return out


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "p99_9": None, "max": None}
    return {
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "p99_9": percentile(values, 99.9),
        "max": max(values),
    }


def _report(
    cfg: LoadConfig, plan: LoadPlan, figures: dict[str, Any], link: _ListenerLink
) -> dict[str, Any]:
    records = link.records
    prefix = f"icu/{cfg.ward}/"
    alerts = [r for r in records if r.reason is None and r.topic.startswith(prefix)]
    baseline = _percentiles(_echo_latencies(records, figures["stamps"]))
    rejections = [
        r for r in records if r.reason is not None and (r.rejected_topic or "").startswith(prefix)
    ]
    raised = {(r.bed, r.rule, r.at) for r in alerts if r.event == "raised"}
    expected = {(e.bed, e.rule, e.at) for e in plan.expected}
    stamps = figures.pop("stamps")
    latencies = _latencies(alerts, stamps)
    wall = figures["wall_s"]
    return {
        "beds": cfg.beds,
        "breaching_beds": plan.breaching,
        "duration_s": cfg.duration,
        "speed": figures["speed"],
        "event_seconds": figures["event_seconds"],
        "readings": {
            "offered_per_s": figures["rate"],
            "published": figures["published"],
            "achieved_per_s": figures["published"] / wall if wall else 0.0,
            "publish_wall_s": wall,
            "max_lag_behind_schedule_ms": figures["max_lag_ms"],
        },
        "alerts": {
            "received": len(alerts),
            "by_event": dict(Counter(r.event or "?" for r in alerts)),
            "raised_by_rule": dict(Counter(r.rule or "?" for r in alerts if r.event == "raised")),
            "expected": len(expected),
            "lost": sorted(f"{b} {rule} {at}" for b, rule, at in expected - raised),
            "unexpected": sorted(f"{b} {rule} {at}" for b, rule, at in raised - expected),
        },
        "latency_ms": {"samples": len(latencies), **_percentiles(latencies)},
        "baseline_via_broker_ms": baseline,
        "rejections": dict(Counter(r.reason or "?" for r in rejections)),
        "rejections_expected": dict(plan.expected_rejections),
        # the machine's 1-min load average at the end: latency means little on a busy host
        "load_average_1m": os.getloadavg()[0],
        "cpu": {
            "generator_s": figures["generator_cpu_s"],
            "generator_share_of_core": figures["generator_cpu_s"] / wall if wall else 0.0,
            "listener_s": link.cpu_s,
            "watched_s": figures["watched_cpu_s"],
            "watched_share_of_core": {
                label: None if cpu is None or not wall else cpu / wall
                for label, cpu in figures["watched_cpu_s"].items()
            },
        },
    }


def _fmt(value: float | None, unit: str = "") -> str:
    return "n/a" if value is None else f"{value:,.1f}{unit}"


def _share(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0%} of a core"


def _ratio(value: float | None, baseline: float | None) -> str:
    return "n/a" if value is None or not baseline else f"{value / baseline:.1f}x"


def format_table(report: dict[str, Any]) -> str:
    r, a, lat, cpu = report["readings"], report["alerts"], report["latency_ms"], report["cpu"]
    base = report["baseline_via_broker_ms"]
    rows = [
        ("beds (breaching)", f"{report['beds']} ({report['breaching_beds']})"),
        ("duration / speed", f"{report['duration_s']:g} s wall, {report['speed']:.2f}x"),
        ("readings offered", f"{r['offered_per_s']:,.0f}/s"),
        ("readings achieved", f"{r['achieved_per_s']:,.0f}/s ({r['published']:,} acknowledged)"),
        ("max lag behind schedule", _fmt(r["max_lag_behind_schedule_ms"], " ms")),
        ("alerts received", f"{a['received']} {a['by_event']}"),
        ("raised by rule", str(a["raised_by_rule"])),
        (
            "expected / lost / unexpected",
            f"{a['expected']} / {len(a['lost'])} / {len(a['unexpected'])}",
        ),
        ("latency samples", str(lat["samples"])),
        ("latency p50 / p99", f"{_fmt(lat['p50'], ' ms')} / {_fmt(lat['p99'], ' ms')}"),
        ("latency p99.9 / max", f"{_fmt(lat['p99_9'], ' ms')} / {_fmt(lat['max'], ' ms')}"),
        ("baseline p50 / p99", f"{_fmt(base['p50'], ' ms')} / {_fmt(base['p99'], ' ms')}"),
        ("alert / baseline p50", _ratio(lat["p50"], base["p50"])),
        ("rejections by reason", str(report["rejections"] or "none")),
        ("rejections expected", str(report["rejections_expected"] or "none")),
        (
            "generator CPU",
            f"{cpu['generator_s']:.2f} s ({cpu['generator_share_of_core']:.0%} of a core)",
        ),
        ("listener CPU", f"{cpu['listener_s']:.2f} s"),
        ("host load average (1 min)", f"{report['load_average_1m']:.2f} on {os.cpu_count()} CPUs"),
    ]
    rows += [
        (f"{label} CPU", f"{_fmt(sec, ' s')} ({_share(cpu['watched_share_of_core'][label])})")
        for label, sec in cpu["watched_s"].items()
    ]
    width = max(len(label) for label, _ in rows)
    lines = [f"{label:<{width}}  {value}" for label, value in rows]
    lines += [f"  lost: {item}" for item in a["lost"][:10]]
    lines += [f"  unexpected: {item}" for item in a["unexpected"][:10]]
    return "\n".join(lines)
