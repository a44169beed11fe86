"""Wire messages made from recordings: ``(topic, payload)`` plus the event time to order by.

Readers build the exact bytes a monitor would publish (design §3), so that the offline
replay and ``python -m devices replay`` feed the same ``ingest()`` the live service runs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from heapq import merge
from typing import Any

import numpy as np
import numpy.typing as npt

from streamproc.timestamps import format_ts

__all__ = [
    "Message",
    "context_message",
    "merge_messages",
    "vitals_message",
    "waveform_messages",
]

# Waveform samples on the wire are rounded to 0.01 mmHg: far below a transducer's accuracy
# (ANSI/AAMI BP22: ±4 % or ±4 mmHg), and it keeps a 1-s 125-Hz chunk near 1 KiB.
_SAMPLE_DECIMALS = 2


@dataclass(frozen=True, slots=True)
class Message:
    """One MQTT message of a recording; ``ts`` is its event time, for ordering and progress."""

    ts: float
    topic: str
    payload: bytes
    #: the (ward, bed) it belongs to, for per-bed reports
    ward: str
    bed: str


def _encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def context_message(ward: str, bed: str, ts: float, context: Mapping[str, Any]) -> Message | None:
    """The bed's context (design §3.3), sent before its first reading; None if empty."""
    if not context:
        return None
    return Message(ts, f"icu/{ward}/{bed}/context", _encode(context), ward, bed)


def vitals_message(
    ward: str,
    bed: str,
    ts: float,
    values: Mapping[str, float],
    *,
    device: str | None = None,
    seq: int | None = None,
) -> Message:
    body: dict[str, Any] = {"ts": format_ts(ts), "values": dict(values)}
    if device is not None:
        body["device"] = device
    if seq is not None:
        body["seq"] = seq
    return Message(ts, f"icu/{ward}/{bed}/vitals", _encode(body), ward, bed)


def waveform_messages(
    ward: str,
    bed: str,
    *,
    start: float,
    fs: float,
    samples: npt.NDArray[np.float64],
    chunk: int,
    unit: str = "mmHg",
    device: str | None = None,
) -> Iterator[Message]:
    """ABP chunks of ``chunk`` samples; missing (NaN) samples split a chunk, never travel."""
    topic = f"icu/{ward}/{bed}/waveform/abp"
    finite = np.isfinite(samples)
    seq = 0
    for begin in range(0, samples.size, chunk):
        for lo, hi in _finite_runs(finite[begin : begin + chunk]):
            t0 = start + (begin + lo) / fs
            body: dict[str, Any] = {"t0": format_ts(t0), "fs": fs, "unit": unit, "seq": seq}
            if device is not None:
                body["device"] = device
            body["samples"] = np.round(samples[begin + lo : begin + hi], _SAMPLE_DECIMALS).tolist()
            seq += 1
            yield Message(t0, topic, _encode(body), ward, bed)


def _finite_runs(finite: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
    if finite.all():
        return [(0, finite.size)]
    edges = np.flatnonzero(np.diff(np.concatenate(([False], finite, [False])).astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def merge_messages(sources: Iterable[Iterable[Message]]) -> Iterator[Message]:
    """All sources in event-time order; ties keep source order (a bed's context first)."""
    return merge(*sources, key=lambda m: m.ts)
