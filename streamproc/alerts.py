"""The alert lifecycle of one bed (design §3.4, §5).

    raised ──▶ active ──ack──▶ acknowledged ──condition gone──▶ cleared
                 │  ▲                                              ▲
                 │  └── updated (observed values moved materially)  │
                 │  └── escalated (medium, unacknowledged too long) │
                 └──condition gone──▶ latched ──ack──▶ acknowledged, cleared
                    (high-priority physiological alerts; others clear at once)

A rule keeps at most one open alert per bed: if its condition returns while the alert is
latched, the same alert becomes ``active`` again (event ``updated``).

``alert_id`` is the first 16 hex digits of SHA-256 over ward, bed, rule and onset (the
onset at millisecond precision, as it is written on the wire), so a replay or a
redelivery carries the same id. ``seq`` counts the alert events of one bed.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

from streamproc.models import (
    AlertEventName,
    AlertEventPayload,
    AlertKind,
    AlertState,
    Priority,
    StatusAlert,
)
from streamproc.protocol import EscalationSpec, RuleSpec
from streamproc.timestamps import format_ts

__all__ = ["Alert", "AlertBook", "Header", "alert_id", "materially_changed"]


def alert_id(ward: str, bed: str, rule: str, onset: float) -> str:
    """The deterministic id of the alert of ``rule`` that began at ``onset``."""
    key = "\x1f".join((ward, bed, rule, format_ts(onset)))
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def materially_changed(old: dict[str, Any], new: dict[str, Any], min_relative: float) -> bool:
    """Whether an observed value moved by ``min_relative`` or more (non-numbers: changed)."""
    if old.keys() != new.keys():
        return True
    for key, before in old.items():
        after = new[key]
        if isinstance(before, float) and isinstance(after, float):
            scale = max(abs(before), abs(after))
            if scale and abs(after - before) >= min_relative * scale:
                return True
        elif before != after:
            return True
    return False


@dataclass(slots=True, frozen=True)
class Header:
    """Who the alert events are about: fixed per bed and moment."""

    ward: str
    bed: str
    patient: str | None
    protocol: str


@dataclass(slots=True)
class Alert:
    rule: str
    alert_id: str
    onset: float
    raised_at: float
    state: AlertState
    priority: Priority
    kind: AlertKind
    latching: bool
    message: str
    observed: dict[str, Any]
    target: dict[str, Any]

    def snapshot(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "alert_id": self.alert_id,
            "onset": self.onset,
            "raised_at": self.raised_at,
            "state": self.state,
            "priority": self.priority,
            "kind": self.kind,
            "latching": self.latching,
            "message": self.message,
            "observed": self.observed,
            "target": self.target,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> Alert:
        return cls(**data)

    def status(self) -> StatusAlert:
        return StatusAlert(
            alert_id=self.alert_id,
            rule=self.rule,
            priority=self.priority,
            kind=self.kind,
            state=self.state,
            onset=format_ts(self.onset),
            message=self.message,
        )


class AlertBook:
    """The open alerts of one bed, by rule, and the bed's alert-event counter."""

    __slots__ = ("alerts", "seq")

    def __init__(self) -> None:
        self.alerts: dict[str, Alert] = {}
        self.seq = 0

    def is_open(self, rule: str) -> bool:
        return rule in self.alerts

    def _event(
        self, head: Header, alert: Alert, event: AlertEventName, at: float
    ) -> AlertEventPayload:
        self.seq += 1
        return AlertEventPayload(
            alert_id=alert.alert_id,
            event=event,
            state=alert.state,
            ward=head.ward,
            bed=head.bed,
            patient=head.patient,
            rule=alert.rule,
            protocol=head.protocol,
            priority=alert.priority,
            kind=alert.kind,
            message=alert.message,
            onset=format_ts(alert.onset),
            at=format_ts(at),
            observed=dict(alert.observed),
            target=dict(alert.target),
            seq=self.seq,
        )

    def open(
        self,
        head: Header,
        spec: RuleSpec,
        *,
        rule: str,
        message: str,
        onset: float,
        at: float,
        clock: float,
        observed: dict[str, Any],
        target: dict[str, Any],
    ) -> AlertEventPayload:
        """The condition of ``rule`` has held for its onset delay: raise (or re-activate).

        ``at`` is the event time of the alert event; ``clock`` the tick clock at that moment
        (escalation counts from it, since ticks run on that clock).
        """
        current = self.alerts.get(rule)
        if current is not None:  # latched, and the condition is back
            current.state, current.observed, current.target = "active", observed, target
            return self._event(head, current, "updated", at)
        alert = Alert(
            rule=rule,
            alert_id=alert_id(head.ward, head.bed, rule, onset),
            onset=onset,
            raised_at=clock,
            state="active",
            priority=spec.priority,
            kind=spec.kind,
            latching=spec.latching,
            message=message,
            observed=observed,
            target=target,
        )
        self.alerts[rule] = alert
        return self._event(head, alert, "raised", at)

    def close(self, head: Header, rule: str, at: float) -> AlertEventPayload | None:
        """The condition of ``rule`` is gone for its clear delay: clear, or latch."""
        alert = self.alerts.get(rule)
        if alert is None or alert.state == "latched":
            return None
        if alert.state == "active" and self._latches(alert):
            alert.state = "latched"
            return self._event(head, alert, "latched", at)
        del self.alerts[rule]
        alert.state = "cleared"
        return self._event(head, alert, "cleared", at)

    @staticmethod
    def _latches(alert: Alert) -> bool:
        # design §5: high-priority physiological alerts latch until acknowledged (this
        # includes a medium alert escalated to high); a protocol may latch others too
        return alert.latching or (alert.priority == "high" and alert.kind == "physiological")

    def update(
        self,
        head: Header,
        rule: str,
        at: float,
        observed: dict[str, Any],
        min_relative: float,
    ) -> AlertEventPayload | None:
        """Publish ``updated`` when an open alert's observed values moved materially."""
        alert = self.alerts.get(rule)
        if alert is None or alert.state == "latched":
            return None
        if not materially_changed(alert.observed, observed, min_relative):
            return None
        alert.observed = observed
        return self._event(head, alert, "updated", at)

    def acknowledge(self, head: Header, alert_id: str, at: float) -> list[AlertEventPayload]:
        """An acknowledgement: active → acknowledged; latched → acknowledged, then cleared."""
        for rule, alert in self.alerts.items():
            if alert.alert_id != alert_id:
                continue
            if alert.state == "acknowledged":
                return []
            was_latched = alert.state == "latched"
            alert.state = "acknowledged"
            events = [self._event(head, alert, "acknowledged", at)]
            if was_latched:
                del self.alerts[rule]
                alert.state = "cleared"
                events.append(self._event(head, alert, "cleared", at))
            return events
        return []

    def escalate(self, head: Header, now: float, spec: EscalationSpec) -> list[AlertEventPayload]:
        """Unacknowledged active alerts of ``spec.from_priority`` open too long go up."""
        events = []
        for alert in self.alerts.values():
            if (
                alert.state == "active"
                and alert.priority == spec.from_priority
                and now - alert.raised_at >= spec.after_s
            ):
                alert.priority = spec.to_priority
                events.append(self._event(head, alert, "escalated", now))
        return events

    def clear_one(self, head: Header, rule: str, at: float) -> AlertEventPayload:
        """Clear the open alert of ``rule`` whatever its state (its rule no longer applies)."""
        alert = self.alerts.pop(rule)
        alert.state = "cleared"
        return self._event(head, alert, "cleared", at)

    def clear_all(self, head: Header, at: float) -> list[AlertEventPayload]:
        """Discharge: every open alert is cleared, whatever its state."""
        return [self.clear_one(head, rule, at) for rule in list(self.alerts)]

    def status(self) -> list[StatusAlert]:
        return [a.status() for a in self.alerts.values()]

    def snapshot(self) -> dict[str, Any]:
        return {"seq": self.seq, "alerts": [a.snapshot() for a in self.alerts.values()]}

    @classmethod
    def restore(cls, data: dict[str, Any]) -> AlertBook:
        book = cls()
        book.seq = data["seq"]
        for raw in data["alerts"]:
            alert = Alert.restore(raw)
            book.alerts[alert.rule] = alert
        return book


def rounded(value: float, digits: int = 2) -> float:
    """An observed value as published: rounded, and always a float."""
    return float(round(value, digits)) if math.isfinite(value) else value
