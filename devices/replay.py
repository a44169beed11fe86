"""``python -m devices replay RECORDING... --speed X --broker URL``: publish a recording
onto the bus as the monitors would have, for the live service.

The messages are the ones ``streamproc replay`` evaluates offline (the same readers, the
same bytes), so the live service sees exactly what the offline replay saw. Each message
goes out at ``start + (ts − first ts) / speed`` on the wall clock (``--speed 0``: as fast
as the broker takes them), QoS 1 over a TCP_NODELAY connection; context messages are
retained, as an ADT system publishes them (design §3.3).

Timestamps are the recording's own unless ``--start now``: then the recording is moved so
that each message's event time is at most its publish time (none is ever ``future``).
``devices`` shares readers and wire models with streamproc, never its evaluator.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from devices.publisher import Pipeline, connect
from streamproc.errors import ConfigError
from streamproc.readers import Message
from streamproc.recording import Recording, add_recording_options, load_recording, with_protocol

__all__ = [
    "ReplayStats",
    "add_replay_parser",
    "describe",
    "publish_recording",
    "rebased_start",
    "replay_from_args",
]

logger = logging.getLogger(__name__)

#: How often (wall clock, seconds) progress is reported on long replays.
PROGRESS_EVERY_S = 2.0


@dataclass(slots=True)
class ReplayStats:
    published: int = 0
    wall_s: float = 0.0
    #: how far behind schedule the publisher fell at worst (seconds of wall clock)
    max_lag_s: float = 0.0


def rebased_start(recording: Recording, *, speed: float, now: float) -> float:
    """The ``--start`` that makes the last message's event time its publish time.

    With ``speed`` ≥ 1 every earlier message is then also at or before its publish time.
    """
    messages = recording.messages
    if not messages:
        return now
    span = messages[-1].ts - messages[0].ts
    publish_span = span / speed if speed > 0 else 0.0
    return now + publish_span - span


async def publish_recording(
    messages: Sequence[Message],
    *,
    broker: str,
    speed: float,
    window: int = 100,
    identifier: str = "devices-replay",
    progress: Callable[[ReplayStats, int], None] | None = None,
) -> ReplayStats:
    """Publish ``messages`` in order, paced by their event times divided by ``speed``."""
    stats = ReplayStats()
    started = time.monotonic()
    first = messages[0].ts if messages else 0.0
    async with (
        connect(broker, identifier=identifier, max_inflight=window) as client,
        Pipeline(client, window=window) as pipeline,
    ):
        for message in messages:
            if speed > 0:
                due = started + (message.ts - first) / speed
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    stats.max_lag_s = max(stats.max_lag_s, -delay)
            retain = message.topic.endswith("/context")
            await pipeline.publish(message.topic, message.payload, retain=retain)
            stats.published += 1
            if progress is not None:
                progress(stats, len(messages))
    stats.wall_s = time.monotonic() - started
    return stats


def _progress_printer() -> Callable[[ReplayStats, int], None]:
    last = time.monotonic()

    def report(stats: ReplayStats, total: int) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            logger.info("published %d/%d messages", stats.published, total)

    return report


def replay_from_args(args: argparse.Namespace) -> ReplayStats:
    """The ``replay`` command's work (``devices.cli`` prints the outcome)."""
    if args.speed < 0:
        raise ConfigError("--speed must be ≥ 0 (0: as fast as possible, 1: real time)")
    rebase = args.start == "now"
    if rebase:
        args.start = None
    recording = load_recording(args.files, args)
    if rebase:
        args.start = rebased_start(recording, speed=args.speed, now=time.time())
        recording = load_recording(args.files, args)
    messages = list(recording.messages)
    if args.protocol is not None:
        messages = [
            Message(m.ts, m.topic, with_protocol(m.payload, args.protocol), m.ward, m.bed)
            if m.topic.endswith("/context")
            else m
            for m in messages
        ]
    logger.info(
        "publishing %d messages to %s at %s",
        len(messages),
        args.broker,
        "full speed" if args.speed == 0 else f"{args.speed:g}x real time",
    )
    return asyncio.run(
        publish_recording(
            messages, broker=args.broker, speed=args.speed, progress=_progress_printer()
        )
    )


def describe(stats: ReplayStats) -> str:
    rate = stats.published / stats.wall_s if stats.wall_s else 0.0
    return (
        f"published {stats.published} messages in {stats.wall_s:.2f} s ({rate:,.0f}/s); "
        f"worst lag behind schedule {stats.max_lag_s * 1000:.1f} ms"
    )


def add_replay_parser(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    *,
    handler: Callable[[argparse.Namespace], int],
) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="publish a recording (WFDB, Challenge 2012, CSV, JSON Lines) as monitors would",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        epilog=(
            "examples:\n"
            "  python -m devices replay tests/data/wfdb/03700181_abp --speed 10 \\\n"
            "      --broker mqtt://127.0.0.1:1883 --ward w1 --bed b07 --start now\n"
            "  python -m devices replay set-a.tar.gz --speed 0 --broker mqtt://127.0.0.1:1883\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="RECORDING", help="recordings to publish")
    parser.add_argument(
        "--broker", required=True, help="mqtt://HOST:PORT or mqtts://HOST:PORT (TLS)"
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="1 = real time, 60 = a minute per second, 0 = as fast as possible (default 1)",
    )
    parser.add_argument(
        "--protocol", metavar="NAME", help="name this protocol in every bed's context message"
    )
    add_recording_options(parser)
    parser.set_defaults(handler=handler)
