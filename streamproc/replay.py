"""Offline replay: ``streamproc replay RECORDING... [--protocol NAME]... [--report DIR [--plot]]``.

Recordings are read by :mod:`streamproc.readers` — wire JSON Lines (one recorded MQTT
message per line, in bus order), PhysioNet WFDB records (ABP waveforms, numerics),
PhysioNet/CinC Challenge 2012 stays, long and wide CSV — and become the very
``(topic, payload)`` messages a monitor would publish. Each message goes through
:func:`streamproc.ingest.ingest`'s two halves, exactly as live.

The clock ticks with event time: before a message whose event time has reached a new tick
(every whole second by default; every minute for Challenge 2012 charts, whose times have
minute resolution), :meth:`Evaluator.advance` runs once for every tick since the last one,
as the live service's one-second tick would (a gap of more than a day is jumped in one tick).

Given ``--protocol`` more than once, the recording is replayed once per protocol, each bed
under that protocol (context messages keep their other fields), for a side-by-side report.

The output is one alert event per line: the §3.4 payload with its ``"topic"`` first.
A summary (messages read, rejected by reason, alerts by rule) goes to stderr, and progress
while it runs. ``--report DIR`` writes ``alerts.jsonl``, ``summary.json`` and ``summary.md``
(:mod:`streamproc.report`); ``--plot`` adds one PNG per bed (:mod:`streamproc.plot`).

:func:`replay_messages` is the reusable loop over ``(topic, payload bytes)`` pairs.
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
from streamproc.errors import ConfigError
from streamproc.evaluator import Evaluator
from streamproc.events import ArtefactReading, Event, Reading, Rejection, WaveformChunk
from streamproc.ingest import Outcome, feed_decoded
from streamproc.models import AlertEventPayload, dump
from streamproc.protocol import Protocol, load_protocol
from streamproc.readers.wire import read_jsonl
from streamproc.recording import (
    DEFAULT_PROTOCOL,
    REPLAY_EPILOG,
    adapt_for_charts,
    add_recording_options,
    load_recording,
)
from streamproc.report import ProtocolRun, TraceRecorder, write_report

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
    """The offline tick: every ``step`` seconds of event time, as the live periodic tick."""

    def __init__(self, evaluator: Evaluator, *, step: float = 1.0) -> None:
        self.evaluator = evaluator
        self.step = step
        self.tick: int | None = None

    def tick_to(self, ts: float) -> list[AlertEventPayload]:
        if not math.isfinite(ts):
            return []
        tick = math.floor(ts / self.step)
        last = self.tick
        if last is not None and tick <= last:
            return []
        self.tick = tick
        if last is None or (tick - last) * self.step > MAX_TICK_GAP_S:
            return self.evaluator.advance(tick * self.step)
        out: list[AlertEventPayload] = []
        for now in range(last + 1, tick + 1):
            out.extend(self.evaluator.advance(now * self.step))
        return out


def replay_messages(
    messages: Iterable[tuple[str, bytes]],
    evaluator: Evaluator,
    *,
    summary: ReplaySummary | None = None,
    ticks: bool = True,
    tick_every: float = 1.0,
    progress: Callable[[ReplaySummary], None] | None = None,
    observe: Callable[[Outcome], None] | None = None,
) -> Iterator[AlertEventPayload]:
    """Feed recorded ``(topic, payload)`` messages in order; yield every alert event.

    ``observe`` sees what became of each message (the report's MAP trace is built from it).
    """
    summary = summary if summary is not None else ReplaySummary()
    clock = _Clock(evaluator, step=tick_every)
    for topic, payload in messages:
        summary.messages += 1
        decoded = decode(topic, payload, received=None)
        ts = _event_time(decoded) if ticks else None
        alerts = clock.tick_to(ts) if ts is not None else []
        outcome = feed_decoded(evaluator, topic, payload, decoded)
        summary.count(outcome)
        if observe is not None:
            observe(outcome)
        alerts.extend(outcome.alerts)
        for alert in alerts:
            summary.count_alert(alert)
            yield alert
        if progress is not None and summary.messages % 10_000 == 0:
            progress(summary)


def example_path() -> Path:
    """Where the shipped example recording is."""
    return Path(str(resources.files("streamproc").joinpath("examples", EXAMPLE)))


def _evaluator(protocol: Protocol) -> Evaluator:
    return Evaluator(default_protocol=protocol.name, protocols={protocol.name: protocol})


def _progress_printer(
    stream: IO[str], *, label: str, total: int | None = None
) -> Callable[[ReplaySummary], None]:
    """Throttled progress lines (at most one every ``PROGRESS_EVERY_S`` of wall clock)."""
    started = last = time.monotonic()

    def report(summary: ReplaySummary) -> None:
        nonlocal last
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            rate = summary.messages / (now - started)
            raised = sum(summary.alerts.values())
            done = f"/{total} ({100 * summary.messages / total:.0f} %)" if total else ""
            print(
                f"… {label}: {summary.messages}{done} messages ({rate:,.0f}/s), {raised} alerts",
                file=stream,
            )

    return report


def _run(args: argparse.Namespace) -> int:
    sources = [str(example_path())] if args.example else list(args.files)
    if not sources:
        print("streamproc replay: give RECORDING..., - for stdin, or --example", file=sys.stderr)
        return 2
    if args.plot and args.report is None:
        raise ConfigError("--plot draws into the report: give --report DIR too")
    recording = load_recording(sources, args)
    protocols = [load_protocol(p) for p in (args.protocol or [DEFAULT_PROTOCOL])]
    if recording.charted:
        protocols = [adapt_for_charts(p) for p in protocols]
    recorder = TraceRecorder() if args.report is not None else None
    runs: list[ProtocolRun] = []
    with ExitStack() as stack:
        sinks = _alert_sinks(stack, args)
        for protocol in protocols:
            run = ProtocolRun(protocol)
            summary = ReplaySummary()
            observe = recorder.observe_outcome if recorder is not None and not runs else None
            pairs = recording.pairs(protocol.name if args.protocol else None)
            progress = _progress_printer(
                sys.stderr, label=protocol.name, total=len(recording.messages)
            )
            for alert in replay_messages(
                pairs,
                _evaluator(protocol),
                summary=summary,
                tick_every=args.tick_every or recording.tick_every,
                progress=progress,
                observe=observe,
            ):
                line = alert_line(alert)
                for sink in sinks:
                    sink.write(line)
                run.add(alert)
            runs.append(run)
            print(f"== {protocol.name}\n{summary.render()}", file=sys.stderr)
    if recorder is not None:
        _write_report(Path(args.report), recorder, runs, sources=sources, plot=args.plot)
    return 0


def _alert_sinks(stack: ExitStack, args: argparse.Namespace) -> list[IO[bytes]]:
    sinks: list[IO[bytes]] = []
    if args.report is not None:
        directory = Path(args.report)
        directory.mkdir(parents=True, exist_ok=True)
        sinks.append(stack.enter_context((directory / "alerts.jsonl").open("wb")))
    if args.out not in (None, "-"):
        sinks.append(stack.enter_context(Path(args.out).open("wb")))  # noqa: SIM115
    elif args.out == "-" or args.report is None:
        sinks.append(sys.stdout.buffer)
    return sinks


def _write_report(
    directory: Path,
    recorder: TraceRecorder,
    runs: list[ProtocolRun],
    *,
    sources: list[str],
    plot: bool,
) -> None:
    summary = write_report(directory, recorder, runs, sources=sources)
    print(f"report: {directory}/summary.md, summary.json, alerts.jsonl", file=sys.stderr)
    if plot:
        from streamproc.plot import plot_beds

        traces = [recorder.beds[k] for k in sorted(recorder.beds)]
        drawn = plot_beds(directory / "plots", traces, runs)
        more = len(summary["beds"]) - len(drawn)
        print(
            f"plots: {len(drawn)} PNG in {directory}/plots"
            + (f" ({more} more beds not drawn: see presets/replay/report.toml)" if more else ""),
            file=sys.stderr,
        )


def configure_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "replay",
        help="replay recordings (JSON Lines, WFDB, Challenge 2012, CSV) through the protocol "
        "rules, offline, with reports and plots",
        description=(
            "Replay recordings through the same evaluator as the live service. Formats: "
            'wire JSON Lines (one {"topic": ..., "payload": ...} per line; - reads stdin), '
            "PhysioNet WFDB records (ABP waveform → MAP, or numerics with ABPMean/NBPMean), "
            "PhysioNet/CinC Challenge 2012 stays (a file, a directory or set-a.tar.gz), long "
            "CSV (time,signal,value) and wide CSV (a column per signal); detected from the "
            "file, or --format. Several recordings are merged in event-time order. Writes one "
            "alert event per line and a summary on stderr; --report DIR writes a per-bed "
            "summary (Markdown and JSON). The clock ticks with event time."
        ),
        epilog=REPLAY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "files", nargs="*", metavar="RECORDING", help="recordings to replay (- for stdin JSONL)"
    )
    parser.add_argument("--out", metavar="PATH", help="write alert events here (- for stdout)")
    parser.add_argument(
        "--protocol",
        action="append",
        metavar="NAME",
        help="evaluate every bed under this protocol (a preset or a file); give it more than "
        "once to compare protocols side by side (default: each bed's context protocol, "
        f"else {DEFAULT_PROTOCOL}; `streamproc protocols` lists them)",
    )
    parser.add_argument(
        "--example",
        action="store_true",
        help=f"replay the bundled example recording ({EXAMPLE}: MAP falls below the floor)",
    )
    add_recording_options(parser)
    parser.add_argument(
        "--tick-every",
        type=float,
        metavar="SECONDS",
        help="event-time tick for signal.lost, overdue assessments and escalation "
        "(default 1 s; 60 s for Challenge 2012 charts)",
    )
    parser.add_argument(
        "--report", metavar="DIR", help="write alerts.jsonl, summary.md and summary.json here"
    )
    parser.add_argument(
        "--plot", action="store_true", help="also draw one PNG per bed into DIR/plots"
    )
    parser.set_defaults(handler=_run)
