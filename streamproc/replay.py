"""Offline replay of a recorded bus: ``streamproc replay FILE|- [--out PATH] [--protocol NAME]``.

The input is JSON Lines, one message per line, in the order the bus carried them::

    {"topic": "icu/w1/b07/vitals", "payload": {"ts": "...", "values": {"map": 47.0}}}
    {"topic": "icu/w1/b07/vitals", "payload": "{not json"}      (a raw payload, verbatim)
    {"topic": "icu/w1/b07/context", "payload": null}              (an empty payload)

Each message goes through :func:`streamproc.ingest.ingest`'s two halves, exactly as live.
The clock ticks with event time: before a message whose event time has reached a new whole
second, :meth:`Evaluator.advance` runs once for every whole second since the last tick, as
the live service's one-second tick would (a gap of more than a day is jumped in one tick).

The output is one alert event per line: the §3.4 payload with its ``"topic"`` first.
A summary (messages read, rejected by reason, alerts by rule) goes to stderr.

:func:`replay_messages` is the reusable loop; readers of other formats (WFDB, CSV) only
need to produce ``(topic, payload bytes)`` pairs for it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import IO, Final

from streamproc.codec import decode
from streamproc.evaluator import Evaluator
from streamproc.events import ArtefactReading, Event, Reading, Rejection, WaveformChunk
from streamproc.ingest import Outcome, feed_decoded
from streamproc.models import AlertEventPayload, dump
from streamproc.protocol import Protocol, load_protocol

__all__ = [
    "EXAMPLE",
    "ReplaySummary",
    "alert_line",
    "example_path",
    "read_jsonl",
    "replay_messages",
]

logger = logging.getLogger(__name__)

#: The example recording shipped with the package (``streamproc replay --example``).
EXAMPLE: Final = "floor-alert.jsonl"
#: A tick gap longer than this (seconds of event time) is jumped in one tick.
MAX_TICK_GAP_S: Final = 86_400
#: How often (wall clock, seconds) the command line reports progress on long inputs.
PROGRESS_EVERY_S: Final = 2.0


@dataclass(slots=True)
class ReplaySummary:
    """What a replay read and produced."""

    messages: int = 0
    unreadable_lines: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    alerts: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    unknown_signals: Counter[str] = field(default_factory=Counter)

    def count(self, outcome: Outcome) -> None:
        if outcome.rejection is not None:
            self.rejected[outcome.rejection.reason] += 1
        if isinstance(outcome.event, Reading):
            self.unknown_signals.update(outcome.event.unknown)

    def count_alert(self, alert: AlertEventPayload) -> None:
        self.events[alert.event] += 1
        if alert.event == "raised":
            self.alerts[alert.rule] += 1

    def render(self) -> str:
        lines = [f"messages read: {self.messages}"]
        if self.unreadable_lines:
            lines.append(f"unreadable lines (skipped): {self.unreadable_lines}")
        lines.append(f"rejected: {sum(self.rejected.values())}")
        lines += [f"  {reason}: {n}" for reason, n in sorted(self.rejected.items())]
        lines.append(f"alerts raised: {sum(self.alerts.values())}")
        lines += [f"  {rule}: {n}" for rule, n in sorted(self.alerts.items())]
        lines.append(
            "alert events: "
            + (", ".join(f"{e} {n}" for e, n in sorted(self.events.items())) or "none")
        )
        if self.unknown_signals:
            names = ", ".join(f"{s} {n}" for s, n in sorted(self.unknown_signals.items()))
            lines.append(f"unknown signals (ignored): {names}")
        return "\n".join(lines)


def alert_line(alert: AlertEventPayload) -> bytes:
    """One output line: ``{"topic": "icu/{ward}/{bed}/alerts", ...the §3.4 payload...}``."""
    topic = json.dumps(f"icu/{alert.ward}/{alert.bed}/alerts")
    return b'{"topic":' + topic.encode() + b"," + dump(alert)[1:] + b"\n"


def read_jsonl(
    lines: Iterable[str], *, source: str, summary: ReplaySummary | None = None
) -> Iterator[tuple[str, bytes]]:
    """``(topic, payload)`` per recorded message; a line that is not one is logged, skipped."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        message = _parse_line(line)
        if message is None:
            logger.warning('%s:%d: not {"topic": ..., "payload": ...}; skipped', source, number)
            if summary is not None:
                summary.unreadable_lines += 1
            continue
        yield message


def _parse_line(line: str) -> tuple[str, bytes] | None:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("topic"), str):
        return None
    payload = record.get("payload")
    if payload is None:
        return record["topic"], b""
    if isinstance(payload, str):
        return record["topic"], payload.encode("utf-8", "surrogateescape")
    return record["topic"], json.dumps(payload, separators=(",", ":")).encode()


def _event_time(decoded: Event | Rejection) -> float | None:
    """The event time a message carries, if any (contexts and acks carry none)."""
    if isinstance(decoded, Reading | ArtefactReading):
        return decoded.ts
    if isinstance(decoded, WaveformChunk):
        return decoded.t0 + len(decoded.samples) / decoded.fs
    if isinstance(decoded, Rejection) and decoded.artefact is not None:
        return decoded.artefact.ts
    return None


class _Clock:
    """The offline tick: every whole second of event time, as the live one-second tick."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.second: int | None = None

    def tick_to(self, ts: float) -> list[AlertEventPayload]:
        if not math.isfinite(ts):
            return []
        second = math.floor(ts)
        last = self.second
        if last is not None and second <= last:
            return []
        self.second = second
        if last is None or second - last > MAX_TICK_GAP_S:
            return self.evaluator.advance(float(second))
        out: list[AlertEventPayload] = []
        for now in range(last + 1, second + 1):
            out.extend(self.evaluator.advance(float(now)))
        return out


def replay_messages(
    messages: Iterable[tuple[str, bytes]],
    evaluator: Evaluator,
    *,
    summary: ReplaySummary | None = None,
    ticks: bool = True,
    progress: Callable[[ReplaySummary], None] | None = None,
) -> Iterator[AlertEventPayload]:
    """Feed recorded ``(topic, payload)`` messages in order; yield every alert event."""
    summary = summary if summary is not None else ReplaySummary()
    clock = _Clock(evaluator)
    for topic, payload in messages:
        summary.messages += 1
        decoded = decode(topic, payload, received=None)
        ts = _event_time(decoded) if ticks else None
        alerts = clock.tick_to(ts) if ts is not None else []
        outcome = feed_decoded(evaluator, topic, payload, decoded)
        summary.count(outcome)
        alerts.extend(outcome.alerts)
        for alert in alerts:
            summary.count_alert(alert)
            yield alert
        if progress is not None and summary.messages % 10_000 == 0:
            progress(summary)


def example_path() -> Path:
    """Where the shipped example recording is."""
    return Path(str(resources.files("streamproc").joinpath("examples", EXAMPLE)))


def _evaluator(protocol: str) -> Evaluator:
    loaded: Protocol = load_protocol(protocol)
    return Evaluator(default_protocol=loaded.name, protocols={loaded.name: loaded})


def _progress_printer(stream: IO[str]) -> Callable[[ReplaySummary], None]:
    started = last = time.monotonic()

    def report(summary: ReplaySummary) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            rate = summary.messages / (now - started)
            raised = sum(summary.alerts.values())
            print(f"… {summary.messages} messages ({rate:,.0f}/s), {raised} alerts", file=stream)

    return report


def _run(args: argparse.Namespace) -> int:
    source = str(example_path()) if args.example else args.file
    if source is None:
        print("streamproc replay: give FILE, - for stdin, or --example", file=sys.stderr)
        return 2
    evaluator = _evaluator(args.protocol)
    summary = ReplaySummary()
    with ExitStack() as stack:
        infile = sys.stdin if source == "-" else stack.enter_context(_open_input(source))
        out = (
            sys.stdout.buffer
            if args.out in (None, "-")
            else stack.enter_context(Path(args.out).open("wb"))
        )
        messages = read_jsonl(infile, source=source, summary=summary)
        for alert in replay_messages(
            messages, evaluator, summary=summary, progress=_progress_printer(sys.stderr)
        ):
            out.write(alert_line(alert))
    print(summary.render(), file=sys.stderr)
    return 0


def _open_input(source: str) -> IO[str]:
    from streamproc.errors import ConfigError

    try:
        return Path(source).open(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror}") from exc


def configure_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay a recorded bus (JSON Lines) through the protocol rules, offline",
        description=(
            "Replay a recorded bus through the same evaluator as the live service. FILE holds "
            'one {"topic": ..., "payload": {...} or "raw string"} per line, in bus order '
            "(- reads stdin). Writes one alert event per line (the alert payload plus its "
            "topic) and a summary on stderr. The clock ticks with event time."
        ),
    )
    parser.add_argument("file", nargs="?", metavar="FILE", help="JSON Lines recording, or -")
    parser.add_argument("--out", metavar="PATH", help="write alert events here (default stdout)")
    parser.add_argument(
        "--protocol",
        default="tartare2s-ttp",
        metavar="NAME",
        help="protocol for beds without a context message: a preset or a file "
        "(default tartare2s-ttp; `streamproc protocols` lists them)",
    )
    parser.add_argument(
        "--example",
        action="store_true",
        help=f"replay the bundled example recording ({EXAMPLE}: MAP falls below the floor)",
    )
    parser.set_defaults(handler=_run)
