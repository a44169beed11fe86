"""PhysioNet/CinC Challenge 2012 stays (Silva et al., CinC 2012): ``Time,Parameter,Value``.

``Time`` is ``HH:MM`` since ICU admission. The mapping lives in ``presets/replay/readers.toml``:
``MAP`` (else ``NIMAP``) → ``map``, ``Temp`` → ``core_temp``, ``Lactate`` → ``lactate``;
``Urine`` (mL since the previous Urine row) and ``Weight`` (kg, −1 unknown) become
``urine_output`` in mL/kg/h. A stay can be a file, a directory of files, or the Challenge's
``set-a.tar.gz`` read directly.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from itertools import chain, groupby
from operator import attrgetter, itemgetter
from pathlib import Path
from typing import Any

from streamproc.readers.messages import Message, context_message, vitals_message
from streamproc.readers.options import UNDATED_START, RecordingOptions, bed_name
from streamproc.readers.presets import reader_preset

__all__ = ["read_challenge_archive", "read_challenge_stay", "stay_texts"]

_SECONDS_PER_HOUR = 3600.0


@dataclass(slots=True)
class _Urine:
    """Urine volume waiting for an interval long enough to be a rate."""

    min_interval: float
    since: float | None = None
    volume: float = 0.0

    def add(self, ts: float, ml: float, weight: float | None) -> float | None:
        if self.since is None:  # the first row's interval is unknown (pre-ICU volume)
            self.since = ts
            return None
        self.volume += ml
        hours = (ts - self.since) / _SECONDS_PER_HOUR
        if hours * _SECONDS_PER_HOUR < self.min_interval or weight is None:
            return None
        rate = self.volume / weight / hours
        self.since, self.volume = ts, 0.0
        return rate


@dataclass(slots=True)
class _Stay:
    record_id: str | None = None
    weights: list[float] = field(default_factory=list)
    rows: list[tuple[float, str, float]] = field(default_factory=list)


def _parse(text: str, start: float, wanted: frozenset[str]) -> _Stay:
    """The rows of the parameters streamproc uses; the others are skipped by the regex."""
    stay = _Stay()
    for hours, minutes, parameter, raw in _row_pattern(wanted).findall(text):
        try:
            value = float(raw)
        except ValueError:
            continue
        ts = start + int(hours) * 3600.0 + int(minutes) * 60.0
        if parameter == "RecordID":
            stay.record_id = raw.strip()
        elif parameter == "Weight" and value > 0:
            stay.weights.append(value)
        stay.rows.append((ts, parameter, value))
    return stay


@cache
def _row_pattern(wanted: frozenset[str]) -> re.Pattern[str]:
    names = "|".join(sorted(map(re.escape, wanted)))
    return re.compile(rf"^(\d+):(\d+),({names}),([^\r\n]*)", re.MULTILINE)


def read_challenge_stay(text: str, options: RecordingOptions, *, name: str) -> Iterator[Message]:
    """One stay's messages in time order; the bed is its RecordID unless set."""
    preset: dict[str, Any] = reader_preset()["challenge2012"]
    start = options.start if options.start is not None else UNDATED_START
    wanted = frozenset({"RecordID", "Weight", "Urine", *(p for p, _ in preset["signals"])})
    stay = _parse(text, start, wanted)
    ward, bed = options.ward, options.bed or bed_name(stay.record_id or name)
    context = dict(options.context)
    if stay.weights and "weight_kg" not in context:
        context["weight_kg"] = stay.weights[0]
    ctx = context_message(ward, bed, start, context)
    if ctx is not None:
        yield ctx
    for seq, (ts, values) in enumerate(_readings(stay, preset)):
        # a chart is not a device: no device id, so no device.offline between chartings
        yield vitals_message(ward, bed, ts, values, seq=seq)


def _readings(stay: _Stay, preset: dict[str, Any]) -> Iterator[tuple[float, dict[str, float]]]:
    rank = {param: i for i, (param, _) in enumerate(preset["signals"])}
    signal_of = dict(preset["signals"])
    missing = set(preset["missing_values"])
    urine = _Urine(min_interval=float(preset["urine_min_interval_min"]) * 60.0)
    weight = stay.weights[0] if stay.weights else None
    for ts, group in groupby(sorted(stay.rows, key=itemgetter(0)), key=itemgetter(0)):
        values: dict[str, tuple[int, float]] = {}
        for _, parameter, value in group:
            if parameter == "Weight" and value > 0:
                weight = value
            elif parameter == "Urine" and (rate := urine.add(ts, value, weight)) is not None:
                values["urine_output"] = (-1, rate)
            elif parameter in signal_of and value not in missing:
                signal = signal_of[parameter]
                if signal not in values or rank[parameter] < values[signal][0]:
                    values[signal] = (rank[parameter], value)
        if values:
            yield ts, {signal: value for signal, (_, value) in values.items()}


def stay_texts(path: Path) -> Iterator[tuple[str, str]]:
    """``(name, text)`` of each stay in a file, a directory or a ``.tar.gz`` of stays."""
    if path.is_dir():
        for file in sorted(path.glob("*.txt")):
            yield file.stem, file.read_text("utf-8")
    elif path.name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(path) as archive:
            for member in archive:
                if (
                    member.isfile()
                    and member.name.endswith(".txt")
                    and "Outcomes" not in member.name
                ):
                    handle = archive.extractfile(member)
                    if handle is not None:
                        yield Path(member.name).stem, handle.read().decode("utf-8")
    else:
        yield path.stem, path.read_text("utf-8")


def read_challenge_archive(path: Path, options: RecordingOptions) -> list[Iterable[Message]]:
    """Every stay's messages as one ward stream in event-time order.

    A sort of the whole set (a stable one: each stay keeps its own order) is several times
    faster than a heap merge of 4,000 streams, and set A fits in memory (~250,000 messages).
    """
    stays: list[Iterable[Message]] = [
        read_challenge_stay(text, options, name=name) for name, text in stay_texts(path)
    ]
    if len(stays) == 1:
        return stays
    return [sorted(chain.from_iterable(stays), key=attrgetter("ts"))]
