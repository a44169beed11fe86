"""The live service end to end: a real Mosquitto, the real evaluator, real subscribers.

Readings carry past timestamps one second apart, so a 60-s onset delay needs no 60-s wait:

    MAP  45 45 45 … 45 45 | 60 60 … 60 60 |  ack
    t    0  1  2  … 59 60 | 61 …      91  |
                       ▲ raised (60 s below 50)
                                       ▲ latched (≥ 52 for 30 s; high priority latches)
                                              ▲ acknowledged, cleared
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from service_harness import http_get, metric_value, now, publisher, running_service, watching

from streamproc.alerts import alert_id
from streamproc.broker import LocalBroker
from streamproc.errors import REJECTION_REASONS
from streamproc.models import AlertEventPayload, BedStatusPayload
from streamproc.settings import Settings, load_settings
from streamproc.timestamps import format_ts

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

WARD, BED = "w1", "b07"
BASE = f"icu/{WARD}/{BED}"


def _settings(broker: LocalBroker, tmp_path: Path, **overrides: object) -> Settings:
    options: dict[str, object] = {
        "broker": broker.url,
        "instance": "e2e",
        "state_dir": tmp_path / "state",
        "metrics_port": 0,
        "status_interval": 0.2,
        "checkpoint_interval": 0.5,
        "reconnect_max": 1.0,
    }
    return load_settings(**(options | overrides))


def _vitals(ts: float, *, seq: int | None = None, **values: float) -> bytes:
    payload: dict[str, object] = {"ts": ts, "values": values}
    if seq is not None:
        payload |= {"device": "mon-07", "seq": seq}
    return json.dumps(payload).encode()


CONTEXT = json.dumps(
    {"patient": "opaque-42", "protocol": "tartare2s-ttp", "chronic_hypertension": False}
).encode()


def _floor_events(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if e["rule"] == "map.below_floor"]


async def test_breach_raise_status_latch_ack(broker: LocalBroker, tmp_path: Path) -> None:
    t0 = now() - 300
    async with (
        running_service(_settings(broker, tmp_path)),
        watching(broker.url, f"{BASE}/alerts", f"{BASE}/status") as seen,
        publisher(broker.url) as device,
    ):
        await device.publish(f"{BASE}/context", CONTEXT, qos=1, retain=True)
        for second in range(61):
            await device.publish(f"{BASE}/vitals", _vitals(t0 + second, map=45.0), qos=1)
        await seen.wait_for(lambda w: _floor_events(w.json("/alerts")), what="raised")
        [raised] = _floor_events(seen.json("/alerts"))
        AlertEventPayload.model_validate(raised)  # every field of the §3.4 payload
        assert raised["event"] == "raised"
        assert raised["state"] == "active"
        assert raised["priority"] == "high"
        assert raised["kind"] == "physiological"
        assert raised["patient"] == "opaque-42"
        assert raised["secondary"] is True
        assert raised["onset"] == format_ts(t0)
        assert raised["alert_id"] == alert_id(WARD, BED, "map.below_floor", t0)
        assert raised["target"]

        def status_lists_alert(w: object) -> bool:
            statuses = seen.json("/status")
            return bool(statuses) and any(
                a["alert_id"] == raised["alert_id"] for a in statuses[-1]["active_alerts"]
            )

        await seen.wait_for(status_lists_alert, what="status with the alert")
        BedStatusPayload.model_validate(seen.json("/status")[-1])
        async with watching(broker.url, f"{BASE}/status") as late_comer:  # retained for it
            await late_comer.wait_for(
                lambda w: any(retained for _, _, retained in w.messages), what="retained status"
            )
            retained_status = next(p for _, p, retained in late_comer.messages if retained)
            assert raised["alert_id"] in retained_status.decode()

        for second in range(61, 93):
            await device.publish(f"{BASE}/vitals", _vitals(t0 + second, map=60.0), qos=1)
        await seen.wait_for(
            lambda w: any(e["event"] == "latched" for e in _floor_events(w.json("/alerts"))),
            what="latched",
        )
        ack = {"alert_id": raised["alert_id"], "by": "nurse-1"}
        await device.publish(f"{BASE}/ack", json.dumps(ack).encode(), qos=1)
        await seen.wait_for(
            lambda w: any(e["event"] == "cleared" for e in _floor_events(w.json("/alerts"))),
            what="cleared",
        )
        floor = _floor_events(seen.json("/alerts"))
        # "updated" (observed values moving while MAP recovers) may come in between
        events = [(e["event"], e["state"]) for e in floor if e["event"] != "updated"]
        assert events == [
            ("raised", "active"),
            ("latched", "latched"),
            ("acknowledged", "acknowledged"),
            ("cleared", "cleared"),
        ]
        assert {e["alert_id"] for e in _floor_events(seen.json("/alerts"))} == {raised["alert_id"]}
        mark = len(seen.messages)
        await device.publish(f"{BASE}/context", b"", qos=1, retain=True)  # discharge the bed
        await seen.wait_for(
            lambda w: any(t.endswith("/status") and p == b"" for t, p, _ in w.messages[mark:]),
            what="the retained status cleared on discharge",
        )


def _json(payload: dict[str, object]) -> bytes:
    return json.dumps(payload).encode()


def _bad_messages(t: float) -> dict[str, tuple[str, bytes]]:
    """One message for each rejection reason (the first good reading comes before them)."""
    return {
        "malformed_json": (f"{BASE}/vitals", b"{not json"),
        "schema": (f"{BASE}/vitals", b'{"values": {"map": 60}}'),
        "implausible": (f"{BASE}/vitals", _vitals(t + 1, map=300.0)),
        "non_finite": (f"{BASE}/vitals", f'{{"ts": {t + 2}, "values": {{"map": NaN}}}}'.encode()),
        "unit": (
            f"{BASE}/vitals",
            _json({"ts": t + 3, "values": {"map": 60}, "units": {"map": "psi"}}),
        ),
        "late": (f"{BASE}/vitals", _vitals(t - 10, map=60.0)),
        "future": (f"{BASE}/vitals", _vitals(now() + 120, map=60.0)),
        # a redelivery of the first reading: its seq at its own time (seq 1 at a newer time
        # would be the monitor restarting its numbering, not a duplicate)
        "duplicate": (f"{BASE}/vitals", _vitals(t, seq=1, map=60.0)),
        "too_large": (f"{BASE}/vitals", b'{"pad": "' + b"x" * 4096 + b'"}'),
        "topic": (f"{BASE}/vitals", _json({"ts": t + 5, "samples": [80.0], "values": {"map": 60}})),
    }


async def test_every_rejection_reason_is_published_and_counted(
    broker: LocalBroker, tmp_path: Path
) -> None:
    t = now() - 60
    bad = _bad_messages(t)
    assert set(bad) == set(REJECTION_REASONS)
    settings = _settings(broker, tmp_path, max_payload=2048)
    async with (
        running_service(settings) as service,
        watching(broker.url, "streamproc/e2e/rejected", f"{BASE}/status") as seen,
        publisher(broker.url) as device,
    ):
        await device.publish(f"{BASE}/vitals", _vitals(t, seq=1, map=70.0), qos=1)
        for topic, payload in bad.values():
            await device.publish(topic, payload, qos=1)
        unknown = {"ts": t + 30, "device": "mon-07", "seq": 2, "values": {"map": 71.0, "etco2": 35}}
        await device.publish(f"{BASE}/vitals", _json(unknown), qos=1)
        await seen.wait_for(
            lambda w: len(w.json("/rejected")) >= len(bad), what="every rejection notice"
        )
        notices = seen.json("/rejected")
        assert [n["reason"] for n in notices] == list(bad)
        assert all(n["topic"] == f"{BASE}/vitals" and n["detail"] for n in notices)

        def good_reading_processed(w: object) -> bool:
            statuses = seen.json("/status")
            return bool(statuses) and statuses[-1]["latest"]["map"]["value"] == 71.0

        await seen.wait_for(good_reading_processed, what="the good reading after the bad ones")
        assert service.health is not None
        status, text = await http_get(service.health.port, "/metrics")
        assert status == 200
        for reason in REJECTION_REASONS:
            counted = metric_value(
                text, "streamproc_messages_received_total", outcome="rejected", reason=reason
            )
            assert counted == 1.0, reason
        accepted = metric_value(
            text, "streamproc_messages_received_total", outcome="accepted", reason=""
        )
        assert accepted == 2.0
        assert metric_value(text, "streamproc_unknown_signals_total", signal="etco2") == 1.0
