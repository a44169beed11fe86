"""Recordings for ``streamproc replay`` (and ``python -m devices replay``): command-line
options → :class:`RecordingOptions` per file → one event-time-ordered list of messages.

Options beat a sidecar file (``<recording>.replay.toml``), which beats the defaults; see
:mod:`streamproc.readers.options`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from streamproc.errors import ConfigError
from streamproc.protocol import Protocol
from streamproc.readers import FORMATS, Message, detect_format, load_options, read_recordings
from streamproc.readers.options import RecordingOptions
from streamproc.readers.presets import reader_preset
from streamproc.readers.wire import messages_of, read_jsonl

__all__ = [
    "DEFAULT_PROTOCOL",
    "REPLAY_EPILOG",
    "Recording",
    "adapt_for_charts",
    "add_recording_options",
    "load_recording",
    "with_protocol",
]

#: The protocol of beds whose recording names none (design §4: TTP is the main protocol).
DEFAULT_PROTOCOL: Final = "tartare2s-ttp"
#: Challenge 2012 times are HH:MM: ticking more often than once a minute adds nothing.
_CHART_TICK_S: Final = 60.0

REPLAY_EPILOG = """\
examples:
  # an ABP waveform record: MAP derived from the waveform, report and plot
  streamproc replay tests/data/wfdb/03700181_abp --report out/ --plot
  # TTP against standard care, side by side
  streamproc replay tests/data/wfdb/mimicdb230_5min_abp \\
      --protocol tartare2s-ttp --protocol tartare2s-sc --report out/
  # the whole PhysioNet/CinC Challenge 2012 set A, straight from the tarball
  streamproc replay set-a.tar.gz --report out/
  # a long CSV with its own names
  streamproc replay chart.csv --column time=charttime --column signal=label \\
      --signal "ABP mean=map" --ward icu-a --bed b07 --start 2026-11-25T08:00Z

ward, bed, start time and bed context may also come from a sidecar TOML next to the
recording (<recording>.replay.toml); command-line options win.
"""


def _pairs(values: Sequence[str] | None, option: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option} {item!r}: use {option} NAME=VALUE")
        out[key.strip()] = value.strip()
    return out


def _context(values: Sequence[str] | None) -> dict[str, Any]:
    """``--context weight_kg=72`` → ``{"weight_kg": 72}`` (JSON values, else strings)."""
    parsed: dict[str, Any] = {}
    for key, raw in _pairs(values, "--context").items():
        try:
            parsed[key] = json.loads(raw)
        except ValueError:
            parsed[key] = raw
    return parsed


def add_recording_options(parser: argparse.ArgumentParser) -> None:
    """The options that say how to read a recording (shared with ``devices replay``)."""
    group = parser.add_argument_group("reading recordings")
    group.add_argument("--format", choices=FORMATS, help="recording format (default: detect)")
    group.add_argument("--ward", help="ward name for the topics (default: replay)")
    group.add_argument("--bed", help="bed name (default: the file name or the stay's RecordID)")
    group.add_argument(
        "--start",
        metavar="TIME",
        help="event time of the recording's start, ISO 8601 with an offset (default: the "
        "record's own date, else 2000-01-01T00:00Z)",
    )
    group.add_argument(
        "--context",
        action="append",
        metavar="KEY=VALUE",
        help="bed context field (design §3.3), e.g. chronic_hypertension=true, weight_kg=72",
    )
    group.add_argument(
        "--signal",
        action="append",
        metavar="NAME=SIGNAL",
        help='map a recorded signal or channel name to a signal, e.g. "ABP mean=map"',
    )
    group.add_argument(
        "--column",
        action="append",
        metavar="ROLE=NAME",
        help="CSV column for time, signal or value, e.g. time=charttime",
    )
    group.add_argument("--sidecar", type=Path, metavar="TOML", help="a sidecar file to use")
    group.add_argument(
        "--chunk-s", type=float, metavar="SECONDS", help="ABP waveform chunk length (default 1)"
    )
    group.add_argument(
        "--charted",
        choices=("auto", "yes", "no"),
        default="auto",
        help="treat the data as charted (hourly), not streamed: signal.lost and sustained MAP "
        "rules follow the charting interval (default auto: yes for Challenge 2012)",
    )


def options_from_args(args: argparse.Namespace, path: Path) -> RecordingOptions:
    overrides = {
        "format": args.format,
        "ward": args.ward,
        "bed": args.bed,
        "start": args.start,
        "context": _context(args.context),
        "signals": _pairs(args.signal, "--signal"),
        "columns": _pairs(args.column, "--column"),
        "chunk_s": args.chunk_s,
    }
    return load_options(path, sidecar=args.sidecar, overrides=overrides)


@dataclass(frozen=True, slots=True)
class Recording:
    """Every message of the recordings, in event-time order."""

    messages: list[Message]
    #: charted (hourly) data rather than a monitor stream: see :func:`adapt_for_charts`
    charted: bool = False

    @property
    def tick_every(self) -> float:
        """The event-time tick that suits the data (see ``replay --tick-every``)."""
        return _CHART_TICK_S if self.charted else 1.0

    def pairs(self, protocol: str | None = None) -> Iterator[tuple[str, bytes]]:
        """``(topic, payload)``; with ``protocol``, every bed's context names it."""
        for message in self.messages:
            if protocol is not None and message.topic.endswith("/context"):
                yield message.topic, with_protocol(message.payload, protocol)
            else:
                yield message.topic, message.payload


def with_protocol(payload: bytes, protocol: str) -> bytes:
    """A context payload with its protocol replaced (other fields and bad payloads kept)."""
    try:
        context = json.loads(payload)
    except ValueError:
        return payload
    if not isinstance(context, dict):
        return payload
    context["protocol"] = protocol
    return json.dumps(context, separators=(",", ":")).encode()


def load_recording(sources: Sequence[str], args: argparse.Namespace) -> Recording:
    """Read every source (``-``: JSON Lines on stdin) into one ordered recording."""
    paths = [Path(s) for s in sources if s != "-"]
    streams: list[Iterator[Message]] = [
        read_recordings(paths, lambda p: options_from_args(args, p))
    ]
    if "-" in sources:
        stdin = read_jsonl(sys.stdin, source="stdin")
        streams.append(messages_of(stdin, options_from_args(args, Path("stdin.jsonl"))))
    messages = (
        list(streams[0])
        if len(streams) == 1
        else sorted((m for s in streams for m in s), key=lambda m: m.ts)
    )
    return Recording(messages, charted=_charted(paths, args))


def _charted(paths: Sequence[Path], args: argparse.Namespace) -> bool:
    if args.charted != "auto":
        return bool(args.charted == "yes")
    columns = _pairs(args.column, "--column")
    formats = {args.format or detect_format(p, columns=columns) for p in paths}
    return "challenge2012" in formats


def adapt_for_charts(protocol: Protocol) -> Protocol:
    """``protocol`` for charted (hourly) data: see ``[challenge2012.charted]`` in the preset.

    ``signal.lost`` waits for the charting interval, and the sustained MAP rules accept
    charted values that far apart; every other number is the protocol's own.
    """
    charted = reader_preset()["challenge2012"]["charted"]
    rules = protocol.rules
    gap = float(charted["sustained_max_gap_s"])
    update: dict[str, Any] = {
        "signal_lost": rules.signal_lost.model_copy(
            update={"after_s": float(charted["signal_lost_after_s"])}
        )
    }
    for name in ("map_below_floor", "map_below_target", "map_above_target"):
        spec = getattr(rules, name)
        if spec is not None:
            update[name] = spec.model_copy(update={"max_gap_s": gap})
    return protocol.model_copy(update={"rules": rules.model_copy(update=update)})
