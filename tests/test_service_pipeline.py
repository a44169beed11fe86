"""The pipeline's routing with a fake evaluator: outbox first, coalesced statuses, rejections.

Unit tests only: the fake stands in for the core so that these tests pin the shell's own
behaviour. The end-to-end tests (tests/test_service_e2e.py) use the real evaluator.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from streamproc.checkpoint import CheckpointStore
from streamproc.errors import RejectedReading
from streamproc.events import Event, Reading
from streamproc.metrics import Metrics
from streamproc.models import AlertEventPayload, BedStatusPayload, StatusValue
from streamproc.outbox import Outbox
from streamproc.service import Service
from streamproc.settings import load_settings
from streamproc.timestamps import format_ts


class FakeEvaluator:
    """Raises one alert per reading with MAP below 50; rejects readings older than the last."""

    def __init__(self) -> None:
        self.latest: dict[tuple[str, str], float] = {}
        self.ticks: list[float] = []

    def feed(self, event: Event) -> list[AlertEventPayload]:
        if not isinstance(event, Reading):
            return []
        bed = (event.ward, event.bed)
        if event.ts <= self.latest.get(bed, float("-inf")):
            raise RejectedReading("late", "older than the newest reading")
        self.latest[bed] = event.ts
        if event.values.get("map", 99.0) >= 50:
            return []
        return [_alert(event)]

    def advance(self, now: float) -> list[AlertEventPayload]:
        self.ticks.append(now)
        return []

    def status(self, ward: str, bed: str) -> BedStatusPayload | None:
        ts = self.latest.get((ward, bed))
        if ts is None:
            return None
        return BedStatusPayload(
            ward=ward, bed=bed, patient=None, protocol="fake", context="default",
            at=format_ts(ts), targets={}, latest={"map": StatusValue(value=1, ts=format_ts(ts))},
            active_alerts=[],
        )  # fmt: skip

    def beds(self) -> list[tuple[str, str]]:
        return list(self.latest)

    def active_alerts_by_priority(self) -> dict[str, int]:
        return {"high": 0}

    def snapshot(self) -> dict[str, Any]:
        return {"latest": [[w, b, ts] for (w, b), ts in self.latest.items()]}


def _alert(event: Reading) -> AlertEventPayload:
    at = format_ts(event.ts)
    return AlertEventPayload(
        alert_id=f"id-{event.bed}", event="raised", state="active", ward=event.ward,
        bed=event.bed, patient=None, rule="map.below_floor", protocol="fake", priority="high",
        kind="physiological", message="MAP below the floor", onset=at, at=at,
        observed={"map": event.values["map"]}, target={"map_min": 50}, seq=1,
    )  # fmt: skip


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _service(tmp_path: Path, clock: Clock) -> tuple[Service, CollectorRegistry]:
    registry = CollectorRegistry()
    settings = load_settings(state_dir=tmp_path, instance="unit")
    service = Service(
        settings=settings,
        evaluator=FakeEvaluator(),  # type: ignore[arg-type]
        metrics=Metrics(registry),
        outbox=Outbox(tmp_path / "outbox.sqlite3"),
        checkpoints=CheckpointStore(tmp_path / "checkpoint.json"),
        clock=clock,
    )
    return service, registry


def _reading(ts: float, map_value: float, bed: str = "b1") -> tuple[str, bytes]:
    return f"icu/w1/{bed}/vitals", json.dumps({"ts": ts, "values": {"map": map_value}}).encode()


def _published(service: Service) -> list[tuple[str, bytes]]:
    return [(m.topic, m.payload) for m in service._best_effort]


NOW = 1_795_000_000.0


def test_alert_is_in_the_outbox_before_any_publish(tmp_path: Path) -> None:
    clock = Clock(NOW)
    service, registry = _service(tmp_path, clock)
    service.process(*_reading(NOW - 5, 45.0), received=NOW)
    [entry] = service.outbox.pending()
    assert entry.topic == "icu/w1/b1/alerts"
    assert json.loads(entry.payload)["rule"] == "map.below_floor"
    labels = {"rule": "map.below_floor", "priority": "high", "event": "raised"}
    assert registry.get_sample_value("streamproc_alert_events_total", labels) == 1.0
    reopened = Outbox(tmp_path / "outbox.sqlite3")  # a crash now would not lose it
    assert len(reopened) == 1
    reopened.close()


def test_status_is_coalesced_to_one_per_interval_per_bed(tmp_path: Path) -> None:
    """
    readings  b1: |||||||||| (10 in 0.5 s)   b2: |
    statuses  b1: S ........ then S after 1 s  b2: S
    """
    clock = Clock(NOW)
    service, _ = _service(tmp_path, clock)
    for n in range(10):
        clock.now = NOW + n * 0.05
        service.process(*_reading(NOW - 10 + n, 70.0), received=clock.now)
        service._publish_due_statuses(force=False)
    service.process(*_reading(NOW - 10, 70.0, bed="b2"), received=clock.now)
    service._publish_due_statuses(force=False)
    topics = [topic for topic, _ in _published(service)]
    assert topics == ["icu/w1/b1/status", "icu/w1/b2/status"]
    clock.now = NOW + 1.0
    service._publish_due_statuses(force=False)
    assert [t for t, _ in _published(service)][2:] == ["icu/w1/b1/status"]
    service._publish_due_statuses(force=False)  # nothing changed since: nothing published
    assert len(_published(service)) == 3


def test_rejection_is_published_counted_and_next_message_processed(tmp_path: Path) -> None:
    clock = Clock(NOW)
    service, registry = _service(tmp_path, clock)
    service.process("icu/w1/b1/vitals", b"{not json", received=NOW)
    service.process(*_reading(NOW - 1, 70.0), received=NOW)
    service.process(*_reading(NOW - 2, 70.0), received=NOW)  # older: the fake says late
    [(topic, payload), *_] = _published(service)
    assert topic == "streamproc/unit/rejected"
    assert json.loads(payload)["reason"] == "malformed_json"
    reasons = [json.loads(p)["reason"] for t, p in _published(service) if t.endswith("rejected")]
    assert reasons == ["malformed_json", "late"]
    for reason in ("malformed_json", "late"):
        labels = {"outcome": "rejected", "reason": reason}
        assert registry.get_sample_value("streamproc_messages_received_total", labels) == 1.0
    accepted = {"outcome": "accepted", "reason": ""}
    assert registry.get_sample_value("streamproc_messages_received_total", accepted) == 1.0


def test_gauges_and_silent_beds(tmp_path: Path) -> None:
    clock = Clock(NOW)
    service, registry = _service(tmp_path, clock)
    service.process(*_reading(NOW - 1, 70.0, bed="b1"), received=NOW)
    service.process(*_reading(NOW - 1, 70.0, bed="b2"), received=NOW - 120)
    service.refresh_gauges()
    assert registry.get_sample_value("streamproc_active_beds") == 2.0
    assert registry.get_sample_value("streamproc_silent_beds") == 1.0
    assert registry.get_sample_value("streamproc_active_alerts", {"priority": "high"}) == 0.0


def test_checkpoint_holds_the_evaluator_snapshot(tmp_path: Path) -> None:
    service, _ = _service(tmp_path, Clock(NOW))
    service.process(*_reading(NOW - 5, 70.0), received=NOW)
    service.save_checkpoint()
    expected: Mapping[str, Any] = {"latest": [["w1", "b1", NOW - 5]]}
    assert CheckpointStore(tmp_path / "checkpoint.json").load() == expected
