"""A simulated ward: every bed's monitor publishing the wire contract, or JSON Lines offline.

Time compression (``speed``): a scenario of ``duration`` seconds of event time runs in
``duration / speed`` seconds of wall time. Its timeline is placed so that it *ends* at the
wall-clock time the run ends: event offset ``e`` carries the timestamp
``start + e`` with ``start = now + duration / speed − duration`` and is published at
``now + e / speed``. With ``speed ≥ 1`` a reading's timestamp is therefore never ahead of
the wall clock when it is published (the receiver's ``future`` check stays on), and the
last readings are about "now".
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from devices.bedside import BedPlan, bed_messages
from devices.faults import Message, faults_for_bed
from devices.publisher import Pipeline, connect
from devices.scenario import FaultSpec, scenarios_for_beds
from streamproc.errors import ConfigError

__all__ = [
    "Timeline",
    "bed_names",
    "publish_ward",
    "run_length",
    "simulate",
    "ward_messages",
    "ward_plans",
    "write_jsonl",
]

logger = logging.getLogger(__name__)

#: How often a running simulation logs its progress (wall seconds).
PROGRESS_EVERY_S = 5.0

ExtraFaults = Sequence[tuple[FaultSpec, frozenset[str] | None]]


@dataclass(frozen=True, slots=True)
class Timeline:
    """Where event offsets land: on the wire (``start_ts + e``) and on the wall clock."""

    start_ts: float  # epoch seconds of event offset 0
    speed: float
    wall0: float  # time.monotonic() when offset 0 is due

    @classmethod
    def ending_now(cls, *, duration: float, speed: float) -> Timeline:
        """A compressed timeline that starts in the past and ends when the run ends.

        A slowed-down one (``speed < 1``) starts now instead, so that it never runs ahead.
        """
        if speed <= 0.0:
            raise ConfigError(f"--speed {speed}: must be positive (1 = real time)")
        now = time.time()
        lead = min(0.0, duration / speed - duration)
        return cls(start_ts=now + lead, speed=speed, wall0=time.monotonic())

    def due(self, offset: float) -> float:
        return self.wall0 + offset / self.speed


def bed_names(beds: int) -> list[str]:
    if beds < 1:
        raise ConfigError(f"--beds {beds}: need at least one bed")
    width = max(3, len(str(beds)))
    return [f"b{i:0{width}d}" for i in range(1, beds + 1)]


def ward_plans(
    *,
    scenario: str,
    beds: int,
    seed: int,
    ward: str,
    start_ts: float,
    duration: float | None,
    waveform: bool = False,
    faults: ExtraFaults = (),
) -> list[BedPlan]:
    """One plan per bed (``mix`` spreads the scenarios over the beds)."""
    scenarios = scenarios_for_beds(scenario, beds)
    return [
        BedPlan(
            scenario=sc,
            ward=ward,
            bed=bed,
            seed=seed,
            start_ts=start_ts,
            duration_s=sc.duration_s if duration is None else duration,
            waveform=waveform,
            extra_faults=faults_for_bed(faults, bed),
        )
        for sc, bed in zip(scenarios, bed_names(beds), strict=True)
    ]


def run_length(plans: Sequence[BedPlan]) -> float:
    return max(plan.duration_s for plan in plans)


def ward_messages(plans: Iterable[BedPlan]) -> Iterator[Message]:
    """Every bed's messages merged in event-time order (beds in order at equal times)."""
    return heapq.merge(*(bed_messages(plan) for plan in plans), key=lambda m: m.offset)


def write_jsonl(path: Path, plans: Sequence[BedPlan]) -> int:
    """Write the ward's messages as JSON Lines ``{"topic", "payload"}``; returns the count."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for message in ward_messages(plans):
            line = {"topic": message.topic, "payload": message.payload.decode("utf-8")}
            out.write(json.dumps(line, separators=(",", ":")) + "\n")
            count += 1
    return count


async def simulate(
    *,
    broker: str,
    beds: int,
    scenario: str,
    speed: float,
    seed: int,
    duration: float | None,
    ward: str = "w1",
    waveform: bool = False,
    faults: ExtraFaults = (),
) -> None:
    """Publish a simulated ward to ``broker`` until the scenarios end (``duration`` s of
    event time, default each scenario's own length), ``speed`` times faster than real time."""
    probe = ward_plans(
        scenario=scenario, beds=beds, seed=seed, ward=ward, start_ts=0.0, duration=duration
    )
    timeline = Timeline.ending_now(duration=run_length(probe), speed=speed)
    plans = ward_plans(
        scenario=scenario,
        beds=beds,
        seed=seed,
        ward=ward,
        start_ts=timeline.start_ts,
        duration=duration,
        waveform=waveform,
        faults=faults,
    )
    logger.info(
        "simulating %d beds (%s) on %s: %.0f s of event time at %gx",
        beds,
        scenario,
        broker,
        run_length(plans),
        speed,
    )
    await publish_ward(broker=broker, plans=plans, timeline=timeline)


async def publish_ward(*, broker: str, plans: Sequence[BedPlan], timeline: Timeline) -> int:
    """Publish the beds' messages on ``timeline``; returns how many were acknowledged."""
    identifier = f"devices-sim-{plans[0].ward}-{plans[0].seed}-{len(plans)}"
    async with connect(broker, identifier=identifier) as client, Pipeline(client) as pipeline:
        await _publish(pipeline, ward_messages(plans), timeline)
    logger.info("simulation done: %d messages published and acknowledged", pipeline.acked)
    return pipeline.acked


async def _publish(pipeline: Pipeline, messages: Iterator[Message], timeline: Timeline) -> None:
    next_report = time.monotonic() + PROGRESS_EVERY_S
    for message in messages:
        delay = timeline.due(message.offset) - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        await pipeline.publish(message.topic, message.payload, retain=message.retain)
        if time.monotonic() >= next_report:
            next_report += PROGRESS_EVERY_S
            logger.info("event time +%.0f s, %d messages published", message.offset, pipeline.sent)
