"""The events the core consumes: what the codec makes of a message, in plain dataclasses.

Events are plain slotted dataclasses, cheap to build on the hot path (a frozen dataclass
costs a microsecond more per reading); treat them as immutable.
Times are epoch seconds. ``arrival`` is the receiver's wall clock when the message
arrived (live service) or ``None`` offline, where arrival time *is* event time (design §5).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from streamproc.errors import RejectionReason

__all__ = [
    "Ack",
    "ArtefactReading",
    "BedContext",
    "BedKey",
    "ContextUpdate",
    "Event",
    "Reading",
    "Rejection",
    "WaveformChunk",
]

#: ``(ward, bed)``
BedKey = tuple[str, str]


@dataclass(slots=True)
class Reading:
    """Signals measured at ``ts``, already in canonical units and plausible."""

    ward: str
    bed: str
    ts: float
    values: Mapping[str, float]
    device: str | None = None
    seq: int | None = None
    arrival: float | None = None
    #: signal names the contract does not know: ignored, and counted by the shell
    unknown: tuple[str, ...] = ()


@dataclass(slots=True)
class ArtefactReading:
    """Signals whose values were implausible at ``ts``: they feed ``signal.artefact`` only."""

    ward: str
    bed: str
    ts: float
    signals: tuple[str, ...]
    arrival: float | None = None


@dataclass(slots=True)
class WaveformChunk:
    """Consecutive ABP samples in mmHg, the first at ``t0``, ``fs`` per second."""

    ward: str
    bed: str
    t0: float
    fs: float
    samples: tuple[float, ...]
    device: str | None = None
    seq: int | None = None
    arrival: float | None = None


@dataclass(slots=True)
class BedContext:
    """A bed's clinical context (design §3.3); times are epoch seconds."""

    patient: str | None = None
    protocol: str | None = None
    chronic_hypertension: bool = False
    weight_kg: float | None = None
    protocol_started: float | None = None
    map_trial_until: float | None = None


@dataclass(slots=True)
class ContextUpdate:
    """A retained context message; ``context is None`` discharges the bed."""

    ward: str
    bed: str
    context: BedContext | None
    arrival: float | None = None


@dataclass(slots=True)
class Ack:
    ward: str
    bed: str
    alert_id: str
    by: str
    arrival: float | None = None


Event = Reading | ArtefactReading | WaveformChunk | ContextUpdate | Ack


@dataclass(slots=True)
class Rejection:
    """A message that was not accepted, with one reason from the closed set (design §3.5)."""

    topic: str
    reason: RejectionReason
    detail: str
    payload: bytes = b""
    ward: str | None = None
    bed: str | None = None
    #: for ``implausible`` readings: the artefact the evaluator should still see
    artefact: ArtefactReading | None = None
