"""Helpers for rule tests: build events and run them through one evaluator."""

from __future__ import annotations

from collections.abc import Iterable

from streamproc.evaluator import Evaluator
from streamproc.events import Ack, BedContext, ContextUpdate, Event, Reading
from streamproc.models import AlertEventPayload

WARD, BED = "w1", "b07"
T0 = 1_795_608_000.0  # 2026-11-25T12:00:00Z


def reading(t: float, *, arrival: float | None = None, **values: float) -> Reading:
    """A reading ``t`` seconds after T0."""
    return Reading(WARD, BED, T0 + t, values, arrival=arrival)


def context(**fields: object) -> ContextUpdate:
    return ContextUpdate(WARD, BED, BedContext(**fields))  # type: ignore[arg-type]


def ack(alert_id: str) -> Ack:
    return Ack(WARD, BED, alert_id, "nurse-1")


def feed_all(evaluator: Evaluator, events: Iterable[Event]) -> list[AlertEventPayload]:
    out: list[AlertEventPayload] = []
    for event in events:
        out.extend(evaluator.feed(event))
    return out


def series(start: float, stop: float, **values: float) -> list[Reading]:
    """One reading per second for t in [start, stop] (inclusive), the same values each."""
    return [reading(float(t), **values) for t in range(int(start), int(stop) + 1)]


def seconds(at: str) -> float:
    """Seconds after T0 of an ISO ``at``/``onset`` string of an alert."""
    from datetime import datetime

    return datetime.fromisoformat(at).timestamp() - T0


def summary(
    alerts: Iterable[AlertEventPayload], *, updates: bool = False
) -> list[tuple[str, str, float]]:
    """``(rule, event, t)`` of each alert event, t in seconds after T0.

    ``updated`` events (the published statistics moving) are left out unless asked for.
    """
    return [(a.rule, a.event, seconds(a.at)) for a in alerts if updates or a.event != "updated"]
