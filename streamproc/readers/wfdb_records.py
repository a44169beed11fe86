"""WFDB records (PhysioNet) through the ``wfdb`` package, an optional extra.

* A record with an arterial pressure channel (``ABP``, ``ART``, …) is replayed as ABP
  waveform chunks on ``icu/{ward}/{bed}/waveform/abp``; streamproc derives MAP from them.
* A numerics record (one value a minute: ``ABPMean``, ``NBPMean``, …) is replayed as
  readings on ``icu/{ward}/{bed}/vitals``; 0 and NaN mean "not available".
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from streamproc.errors import ConfigError
from streamproc.readers.messages import Message, context_message, vitals_message, waveform_messages
from streamproc.readers.options import UNDATED_START, RecordingOptions, bed_name
from streamproc.readers.presets import reader_preset

__all__ = ["is_numerics", "is_wfdb", "read_wfdb", "record_base"]


def _wfdb(function: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``wfdb.<function>``; the package is an optional extra, imported on first use."""
    with warnings.catch_warnings():
        # wfdb 4.x calls pandas APIs that pandas deprecates (even on import): not our
        # users' concern, and pytest turns warnings into errors
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            import wfdb
        except ImportError as exc:
            raise ConfigError(
                "reading WFDB records needs the wfdb extra: pip install 'streamproc[wfdb]'"
            ) from exc
        return getattr(wfdb, function)(*args, **kwargs)


def record_base(path: Path) -> str:
    """The record name wfdb wants: the path without ``.hea``."""
    return str(path.with_suffix("")) if path.suffix == ".hea" else str(path)


def is_wfdb(path: Path) -> bool:
    return path.suffix == ".hea" or Path(str(path) + ".hea").is_file()


def is_numerics(path: Path) -> bool:
    """A WFDB record without an arterial waveform: intermittent numerics (NBP, ABPMean)."""
    header = _wfdb("rdheader", record_base(path))
    return _first(header.sig_name, reader_preset()["wfdb"]["waveform_channels"]) is None


def _start(header: Any, options: RecordingOptions) -> float:
    if options.start is not None:
        return options.start
    if header.base_time is None:
        return UNDATED_START
    day = header.base_date or datetime.fromtimestamp(UNDATED_START, tz=UTC).date()
    return datetime.combine(day, header.base_time, tzinfo=UTC).timestamp()


def read_wfdb(path: Path, options: RecordingOptions) -> Iterator[Message]:
    name = record_base(path)
    header = _wfdb("rdheader", name)
    preset = reader_preset()["wfdb"]
    ward, bed = options.ward, options.bed or bed_name(Path(name).name)
    start = _start(header, options)
    ctx = context_message(ward, bed, start, options.context)
    if ctx is not None:
        yield ctx
    channel = _first(header.sig_name, preset["waveform_channels"])
    if channel is not None:
        yield from _waveform(
            name, channel=channel, ward=ward, bed=bed, start=start, options=options
        )
    else:
        yield from _numerics(
            name, channels=header.sig_name, ward=ward, bed=bed, start=start, options=options
        )


def _first(names: Sequence[str], wanted: Sequence[str]) -> str | None:
    return next((w for w in wanted if w in names), None)


def _waveform(
    name: str,
    *,
    channel: str,
    ward: str,
    bed: str,
    start: float,
    options: RecordingOptions,
) -> Iterator[Message]:
    # smooth_frames=False keeps each channel at its own rate in multi-frequency records
    record = _wfdb("rdrecord", name, channel_names=[channel], smooth_frames=False)
    fs = float(record.fs) * int(record.samps_per_frame[0])
    samples: npt.NDArray[np.float64] = np.asarray(record.e_p_signal[0], dtype=np.float64)
    chunk_s = options.chunk_s or reader_preset()["wfdb"]["chunk_s"]
    yield from waveform_messages(
        ward,
        bed,
        start=start,
        fs=fs,
        samples=samples,
        chunk=max(1, round(chunk_s * fs)),
        unit=record.units[0] or "mmHg",
        device=options.device,
    )


def _numerics(
    name: str,
    *,
    channels: Sequence[str],
    ward: str,
    bed: str,
    start: float,
    options: RecordingOptions,
) -> Iterator[Message]:
    preset = reader_preset()["wfdb"]
    wanted = {s: [c for c in cs if c in channels] for s, cs in preset["numerics"].items()}
    for src, signal in options.signals.items():
        if src in channels:
            wanted[signal] = [src]
    wanted = {signal: found for signal, found in wanted.items() if found}
    if not wanted:
        raise ConfigError(
            f"{name}: no ABP waveform and no known numerics in {list(channels)}; "
            "map a channel with --signal NAME=map"
        )
    used = list(dict.fromkeys(c for found in wanted.values() for c in found))
    record = _wfdb("rdrecord", name, channel_names=used)
    table = np.asarray(record.p_signal, dtype=np.float64)
    table[table == float(preset["numerics_missing_value"])] = np.nan
    column = {c: i for i, c in enumerate(record.sig_name)}
    times = start + np.arange(record.sig_len) / float(record.fs)
    for i, ts in enumerate(times.tolist()):
        values = _first_values(table[i], wanted, column)
        if values:
            # only the mapped numerics travel, so the device would look silent between them
            yield vitals_message(ward, bed, ts, values, seq=i)


def _first_values(
    row: npt.NDArray[np.float64], wanted: dict[str, list[str]], column: dict[str, int]
) -> dict[str, float]:
    values: dict[str, float] = {}
    for signal, sources in wanted.items():
        found = next((row[column[c]] for c in sources if np.isfinite(row[column[c]])), None)
        if found is not None:
            values[signal] = float(found)
    return values
