"""An alert the broker refuses (a PUBACK with a failure reason) is not a delivery.

A Mosquitto whose ACL lets the streamproc account read everything but write only
``streamproc/#`` (anonymous devices may write readings)
answers the alert's PUBLISH with PUBACK "Not authorized". The alert must stay in the
outbox, be counted as refused, and never be counted as delivered.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from service_harness import now, publisher, running_service, until

from streamproc.broker import LocalBroker
from streamproc.settings import load_settings

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

BASE = "icu/w1/b07"


async def test_a_refused_alert_stays_in_the_outbox(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text(
        "topic write icu/+/+/vitals\nuser streamproc\ntopic read #\ntopic write streamproc/#\n",
        encoding="utf-8",
    )
    with LocalBroker(workdir=tmp_path / "broker", extra_config=f"acl_file {acl}\n") as broker:
        settings = load_settings(
            broker=broker.url,
            username="streamproc",
            instance="refused",
            state_dir=tmp_path / "state",
            metrics_port=0,
        )
        async with running_service(settings) as service, publisher(broker.url) as device:
            t0 = now() - 120
            for second in range(61):
                body = {"ts": t0 + second, "values": {"map": 45.0}}
                await device.publish(f"{BASE}/vitals", json.dumps(body).encode(), qos=1)
            registry = service.metrics.registry
            await until(
                lambda: (registry.get_sample_value("streamproc_alerts_refused_total") or 0) >= 1,
                what="the broker's refusal",
            )
            assert len(service.outbox) >= 1
            delivered = registry.get_sample_value("streamproc_processing_latency_seconds_count")
            assert delivered == 0
