"""Restarts and outages: SIGKILL of the service, a stopped broker, metrics and readiness.

SIGKILL during a breach (the service is a child process):

    MAP 45 at t = 0 … 61   ▲ raised (t = 60)      ✗ SIGKILL
    MAP 45 at t = 62 … 80  (published while the service is down: wait in its session)
    restart                ▶ processes t = 62 … 80 from the session; no second "raised"
"""

from __future__ import annotations

import asyncio
import json
from importlib import resources
from pathlib import Path

import pytest
from service_harness import (
    ServiceProcess,
    Watcher,
    http_get,
    metric_value,
    now,
    publisher,
    running_service,
    until,
    watching,
)

from streamproc.broker import LocalBroker
from streamproc.metrics import METRIC_NAMES
from streamproc.settings import load_settings
from streamproc.timestamps import format_ts

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

BASE = "icu/w1/b03"
CONTEXT = json.dumps({"patient": "opaque-3", "protocol": "tartare2s-ttp"}).encode()


def _vitals(ts: float, seq: int, map_value: float) -> bytes:
    return json.dumps(
        {"ts": ts, "device": "mon-03", "seq": seq, "values": {"map": map_value}}
    ).encode()


def _said(watcher: Watcher, since: int, state: bytes) -> bool:
    return any(
        (topic, payload) == ("streamproc/restart/state", state)
        for topic, payload, _ in watcher.messages[since:]
    )


def _floor(events: list[dict[str, object]]) -> list[dict[str, object]]:
    return [e for e in events if e["rule"] == "map.below_floor"]


async def test_sigkill_during_a_breach(broker: LocalBroker, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = ServiceProcess(broker_url=broker.url, state_dir=state, instance="restart")
    second = ServiceProcess(broker_url=broker.url, state_dir=state, instance="restart")
    t0 = now() - 300
    try:
        await first.start()
        async with (
            watching(broker.url, f"{BASE}/alerts", f"{BASE}/status", "streamproc/+/state") as seen,
            publisher(broker.url) as device,
        ):
            await device.publish(f"{BASE}/context", CONTEXT, qos=1, retain=True)
            for n in range(62):
                await device.publish(f"{BASE}/vitals", _vitals(t0 + n, n, 45.0), qos=1)
            await seen.wait_for(lambda w: _floor(w.json("/alerts")), what="raised")
            checkpoint = state / "checkpoint.json"
            raised_at = now()
            await until(
                lambda: checkpoint.exists() and checkpoint.stat().st_mtime > raised_at,
                what="a checkpoint after the alert",
            )
            mark = len(seen.messages)
            first.kill()
            await seen.wait_for(lambda w: _said(w, mark, b"offline"), what="the Last Will")
            for n in range(62, 81):  # published while the service is down
                await device.publish(f"{BASE}/vitals", _vitals(t0 + n, n, 45.0), qos=1)
            await second.start()

            def caught_up(w: object) -> bool:
                statuses = seen.json("/status")
                return bool(statuses) and statuses[-1]["latest"]["map"]["ts"] == format_ts(t0 + 80)

            await seen.wait_for(caught_up, what="the readings sent while down, processed")
            await asyncio.sleep(0.5)  # a second "raised" would arrive by now
            events = _floor(seen.json("/alerts"))
            assert [e["event"] for e in events] == ["raised"]
            assert len({e["alert_id"] for e in events}) == 1
            statuses = seen.json("/status")
            [active] = [a for a in statuses[-1]["active_alerts"] if a["rule"] == "map.below_floor"]
            assert active["alert_id"] == events[0]["alert_id"]
            mark = len(seen.messages)
            assert second.terminate() == 0  # SIGTERM: a clean stop
            await seen.wait_for(lambda w: _said(w, mark, b"offline"), what="offline on SIGTERM")
    finally:
        first.stop_quietly()
        second.stop_quietly()


def _fast_protocol(path: Path) -> Path:
    """The TTP preset with ``signal.lost`` after 1 s instead of 30 s (for a 5-s outage)."""
    text = resources.files("streamproc.presets").joinpath("tartare2s-ttp.toml").read_text()
    text = text.replace('name = "tartare2s-ttp"', 'name = "ttp-fast-lost"', 1)
    marker = "after_s = 30.0        # [D4] no MAP for 30 s"
    assert marker in text
    path.write_text(text.replace(marker, "after_s = 1.0  # test: lost after 1 s"), "utf-8")
    return path


async def test_broker_outage_alert_after_reconnect_and_readiness(
    broker: LocalBroker, tmp_path: Path
) -> None:
    settings = load_settings(
        broker=broker.url,
        instance="outage",
        state_dir=tmp_path / "state",
        metrics_port=0,
        reconnect_max=1.0,
        protocol="ttp-fast-lost",
        protocol_files=[_fast_protocol(tmp_path / "fast.toml")],
    )
    async with running_service(settings) as service:
        assert service.health is not None
        port = service.health.port
        status, text = await http_get(port, "/metrics")
        assert status == 200
        for name in METRIC_NAMES:
            assert f"# TYPE {name.removesuffix('_total')}" in text, name
        assert (await http_get(port, "/readyz"))[0] == 200
        async with watching(broker.url, f"{BASE}/alerts", identifier="outage-watch"):
            pass  # a persistent session of the consumer, to receive alerts sent later
        async with publisher(broker.url) as device:
            await device.publish(f"{BASE}/vitals", _vitals(now() - 1, 1, 70.0), qos=1)
        await until(lambda: service.evaluator.beds() != [], what="the reading processed")
        broker.stop()
        await until(lambda: not service.ready, what="not ready once the broker is gone")
        assert (await http_get(port, "/readyz"))[0] == 503
        await until(lambda: len(service.outbox) > 0, what="signal.lost raised while down")
        await asyncio.sleep(5 - 1)  # the broker stays down for 5 s
        broker.start()
        async with watching(broker.url, identifier="outage-watch") as seen:
            await seen.wait_for(
                lambda w: any(e["rule"] == "signal.lost" for e in w.json("/alerts")),
                what="the alert raised during the outage",
            )
        await until(lambda: service.ready, what="ready after the reconnect")
        assert (await http_get(port, "/readyz"))[0] == 200
        await until(lambda: len(service.outbox) == 0, what="the outbox drained")
        _, text = await http_get(port, "/metrics")
        assert metric_value(text, "streamproc_reconnects_total") == 1.0
        assert metric_value(text, "streamproc_broker_connected") == 1.0
        assert metric_value(text, "streamproc_outbox_depth") == 0.0
        assert metric_value(
            text, "streamproc_alert_events_total",
            event="raised", priority="medium", rule="signal.lost",
        ) == 1.0  # fmt: skip


async def test_backlog_from_the_session_is_processed_without_loss(
    broker: LocalBroker, tmp_path: Path
) -> None:
    """Hundreds of readings wait in the session and arrive in bursts: none is lost."""
    settings = load_settings(
        broker=broker.url,
        instance="backlog",
        state_dir=tmp_path / "state",
        metrics_port=0,
    )
    async with running_service(settings):
        pass  # leaves the persistent session subscribed
    t0 = now() - 700
    async with publisher(broker.url) as device:
        for n in range(600):
            bed = f"icu/w1/b{n % 3}"
            await device.publish(f"{bed}/vitals", _vitals(t0 + n, n, 70.0), qos=1)
    async with running_service(settings) as service:
        registry = service.metrics.registry
        labels = {"outcome": "accepted", "reason": ""}

        def accepted() -> float:
            return registry.get_sample_value("streamproc_messages_received_total", labels) or 0

        await until(lambda: accepted() >= 600, what="all 600 readings processed")
        await asyncio.sleep(0.2)
        assert accepted() == 600
        assert service.inbox.qsize() == 0
