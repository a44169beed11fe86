"""Where a recording's ward, bed, start time and bed context come from.

Precedence, lowest first: built-in defaults, a sidecar TOML file next to the recording
(``<recording>.replay.toml``, or ``--sidecar FILE``), then command-line options::

    # 03700181.replay.toml
    ward = "icu-a"
    bed = "b07"
    start = "2026-11-25T08:00:00Z"     # re-base the recording's clock (ISO 8601 with offset)
    format = "wfdb"                     # only when detection from the file is not enough
    [context]                           # the bed context message (design §3.3)
    protocol = "tartare2s-ttp"
    chronic_hypertension = false
    weight_kg = 72
    [columns]                           # CSV column names, when not time/signal/value
    time = "charttime"
    [signals]                           # recorded name → signal of the wire contract
    "ABP mean" = "map"
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from streamproc.errors import ConfigError

__all__ = [
    "UNDATED_START",
    "RecordingOptions",
    "bed_name",
    "find_sidecar",
    "load_options",
    "parse_start",
]

#: Event time of t = 0 for recordings that carry no date (MIMIC-II segments, Challenge 2012
#: stays): an obviously synthetic midnight, UTC.
UNDATED_START: Final = datetime(2000, 1, 1, tzinfo=UTC).timestamp()

_SIDECAR_SUFFIX: Final = ".replay.toml"
_NAME: Final = re.compile(r"[^A-Za-z0-9_-]+")
_SIDECAR_KEYS: Final = {"ward", "bed", "start", "format", "context", "columns", "signals"}


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordingOptions:
    ward: str = "replay"
    #: None: the bed is named after the file (or the Challenge 2012 RecordID)
    bed: str | None = None
    #: epoch seconds of the recording's t = 0; None: the recording's own date, else UNDATED_START
    start: float | None = None
    format: str | None = None
    #: fields of the context payload (design §3.3); sent before the bed's first reading
    context: Mapping[str, Any] = field(default_factory=dict)
    columns: Mapping[str, str] = field(default_factory=dict)
    signals: Mapping[str, str] = field(default_factory=dict)
    device: str | None = "replay"
    chunk_s: float | None = None


def parse_start(value: str | float) -> float:
    """Epoch seconds from ``2026-11-25T08:00:00Z`` or a number of epoch seconds."""
    if isinstance(value, int | float):
        return float(value)
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise ConfigError(
            f"start {value!r}: use ISO 8601 with an offset, e.g. 2026-11-25T08:00Z"
        ) from exc
    if parsed.tzinfo is None:
        raise ConfigError(f"start {value!r} has no UTC offset: add Z or +01:00")
    return parsed.timestamp()


def bed_name(text: str) -> str:
    """A topic-safe bed name (``[A-Za-z0-9_-]{1,64}``) from a file stem or record id."""
    return _NAME.sub("-", text).strip("-")[:64] or "bed"


def find_sidecar(recording: Path) -> Path | None:
    name = recording.name.removesuffix(".hea").removesuffix(".tar.gz")
    for candidate in (
        recording.with_name(name + _SIDECAR_SUFFIX),
        recording.with_name(recording.stem + _SIDECAR_SUFFIX),
    ):
        if candidate.is_file():
            return candidate
    return None


def _read_sidecar(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text("utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"sidecar {path}: {exc}") from exc
    unknown = set(raw) - _SIDECAR_KEYS
    if unknown:
        raise ConfigError(
            f"sidecar {path}: unknown keys {sorted(unknown)}; known: {sorted(_SIDECAR_KEYS)}"
        )
    if "start" in raw:
        raw["start"] = parse_start(raw["start"])
    return raw


def load_options(
    recording: Path, *, sidecar: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> RecordingOptions:
    """Defaults, then the sidecar (given or found next to the recording), then ``overrides``."""
    options = RecordingOptions()
    found = sidecar or find_sidecar(recording)
    if found is not None:
        options = _apply(options, _read_sidecar(found))
    given = {k: v for k, v in (overrides or {}).items() if v is not None and v != {}}
    if "start" in given:
        given["start"] = parse_start(given["start"])
    return _apply(options, given)


def _apply(options: RecordingOptions, values: Mapping[str, Any]) -> RecordingOptions:
    merged = dict(values)
    for table in ("context", "columns", "signals"):
        if table in merged:
            merged[table] = {**getattr(options, table), **merged[table]}
    return replace(options, **merged)
