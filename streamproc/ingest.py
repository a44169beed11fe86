"""The one step every driver shares: bytes off the bus → events → the evaluator → alerts.

The live service, offline replay, the benchmark and the tests all call :func:`ingest`, so
a message is treated the same way wherever it comes from (design §2: live equals offline).

    decode ──Rejection──▶ (implausible: feed its artefact) ──▶ Outcome(rejection=…)
       └──Event──▶ Evaluator.feed ──RejectedReading──▶ Outcome(rejection=late|future|…)
                                  └──alerts──────────▶ Outcome(event=…, alerts=[…])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from streamproc.codec import DEFAULT_MAX_PAYLOAD, REJECTED_PAYLOAD_BYTES, decode
from streamproc.errors import RejectedReading, RejectionReason
from streamproc.evaluator import Evaluator, report_unexpected
from streamproc.events import Event, Rejection
from streamproc.models import AlertEventPayload

__all__ = ["Outcome", "feed_decoded", "ingest"]


@dataclass(slots=True)
class Outcome:
    """What became of one message."""

    event: Event | None  # the decoded event (None when the codec rejected the message)
    rejection: Rejection | None  # a codec or evaluator rejection
    alerts: list[AlertEventPayload] = field(default_factory=list)


def ingest(
    evaluator: Evaluator,
    topic: str,
    payload: bytes,
    *,
    received: float | None,
    max_bytes: int = DEFAULT_MAX_PAYLOAD,
) -> Outcome:
    """Decode one message and feed it; ``received`` is the wall clock live, ``None`` offline."""
    decoded = decode(topic, payload, received=received, max_bytes=max_bytes)
    return feed_decoded(evaluator, topic, payload, decoded)


def feed_decoded(
    evaluator: Evaluator, topic: str, payload: bytes, decoded: Event | Rejection
) -> Outcome:
    """The second half of :func:`ingest`, for a driver that looks at the event first
    (offline replay ticks the clock up to a reading's time before feeding it)."""
    if isinstance(decoded, Rejection):
        return Outcome(None, decoded, _feed_artefact(evaluator, decoded))
    try:
        alerts = evaluator.feed(decoded)
    except RejectedReading as exc:
        return _rejected(topic, payload, decoded, exc.reason, exc.detail)
    except Exception as exc:  # a bug must not kill the service nor redeliver
        report_unexpected("evaluating a message", topic, exc)
        detail = f"could not be evaluated ({type(exc).__name__}); see the service log"
        return _rejected(topic, payload, decoded, "schema", detail)
    return Outcome(decoded, None, alerts)


def _rejected(
    topic: str, payload: bytes, decoded: Event, reason: RejectionReason, detail: str
) -> Outcome:
    ward = getattr(decoded, "ward", None)
    bed = getattr(decoded, "bed", None)
    rejection = Rejection(topic, reason, detail, payload[:REJECTED_PAYLOAD_BYTES], ward, bed)
    return Outcome(decoded, rejection, [])


def _feed_artefact(evaluator: Evaluator, rejection: Rejection) -> list[AlertEventPayload]:
    """An implausible reading still counts towards ``signal.artefact`` (design §4)."""
    if rejection.artefact is None:
        return []
    try:
        return evaluator.feed(rejection.artefact)
    except RejectedReading:  # a future-dated artefact: the rejection already says enough
        return []
