"""CSV recordings: long (``time,signal,value``) and wide (one column per signal).

Times may be ISO 8601 with an offset, epoch seconds, or relative to the recording's start
(``HH:MM``, ``HH:MM:SS`` or seconds under 10^8). Rows are replayed in time order; the
values of one bed at one time travel in one reading message, like a monitor's.
"""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Final

from streamproc.errors import ConfigError
from streamproc.readers.messages import Message, context_message, vitals_message
from streamproc.readers.options import UNDATED_START, RecordingOptions, bed_name
from streamproc.signals import signal_table

__all__ = ["parse_time", "read_long_csv", "read_wide_csv", "sniff_csv"]

# Numbers above this are epoch seconds (1973-03-03), below it seconds since the start.
_EPOCH_FLOOR: Final = 1e8
_SECONDS = {1: 1, 2: 60, 3: 3600}
_SIGNAL_COLUMNS = frozenset({"signal", "parameter", "name", "label"})


def parse_time(text: str, start: float) -> float:
    """Epoch seconds of one recorded time (see the module docstring for the forms)."""
    text = text.strip()
    if ":" in text and "T" not in text and "-" not in text:
        parts = [float(p) for p in text.split(":")]
        scale = [_SECONDS[len(parts) - i] for i in range(len(parts))]
        return start + sum(p * s for p, s in zip(parts, scale, strict=True))
    try:
        number = float(text)
    except ValueError:
        parsed = datetime.fromisoformat(text)
        if parsed.tzinfo is None:
            raise ValueError(f"time {text!r} has no UTC offset") from None
        return parsed.timestamp()
    return number if number >= _EPOCH_FLOOR else start + number


def sniff_csv(path: Path, *, columns: Mapping[str, str] | None = None) -> str:
    """``challenge2012``, ``long-csv`` or ``wide-csv`` from the header line."""
    with path.open(encoding="utf-8", newline="") as handle:
        header = [h.strip().lower() for h in next(csv.reader(handle), [])]
    if header == ["time", "parameter", "value"]:
        return "challenge2012"
    signal_column = (columns or {}).get("signal", "").lower()
    if signal_column in header or (len(header) == 3 and header[1] in _SIGNAL_COLUMNS):
        return "long-csv"
    return "wide-csv"


def _signal_of(name: str, mapping: Mapping[str, str]) -> str | None:
    signal = mapping.get(name, name)
    return signal if signal in signal_table() else None


def _rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader, [])]
        return header, [row for row in reader if row]


def _column(header: list[str], options: RecordingOptions, role: str, default: int) -> int:
    wanted = options.columns.get(role)
    lowered = [h.lower() for h in header]
    if wanted is not None:
        if wanted.lower() not in lowered:
            raise ConfigError(f"column {wanted!r} for {role} not in the header {header}")
        return lowered.index(wanted.lower())
    return lowered.index(role) if role in lowered else default


def read_long_csv(path: Path, options: RecordingOptions) -> Iterator[Message]:
    header, rows = _rows(path)
    t_col, s_col, v_col = (
        _column(header, options, r, i) for i, r in enumerate(("time", "signal", "value"))
    )
    start = options.start if options.start is not None else UNDATED_START
    grouped: dict[float, dict[str, float]] = defaultdict(dict)
    for row in rows:
        signal = _signal_of(row[s_col].strip(), options.signals)
        value = _number(row[v_col])
        if signal is not None and value is not None:
            grouped[parse_time(row[t_col], start)].setdefault(signal, value)
    yield from _readings(path, options, start, sorted(grouped.items()))


def read_wide_csv(path: Path, options: RecordingOptions) -> Iterator[Message]:
    header, rows = _rows(path)
    t_col = _column(header, options, "time", 0)
    signals = {i: _signal_of(name, options.signals) for i, name in enumerate(header) if i != t_col}
    known = {i: s for i, s in signals.items() if s is not None}
    if not known:
        raise ConfigError(f"{path}: no column is a known signal; map one with --signal NAME=map")
    start = options.start if options.start is not None else UNDATED_START
    timed = []
    for row in rows:
        values = {
            s: v for i, s in known.items() if i < len(row) and (v := _number(row[i])) is not None
        }
        if values:
            timed.append((parse_time(row[t_col], start), values))
    timed.sort(key=lambda item: item[0])
    yield from _readings(path, options, start, timed)


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _readings(
    path: Path,
    options: RecordingOptions,
    start: float,
    timed: Iterable[tuple[float, dict[str, float]]],
) -> Iterator[Message]:
    ward, bed = options.ward, options.bed or bed_name(path.stem)
    first = True
    for seq, (ts, values) in enumerate(timed):
        if first and (ctx := context_message(ward, bed, ts, options.context)):
            yield ctx
        first = False
        yield vitals_message(ward, bed, ts, values, device=options.device, seq=seq)
