"""End to end: simulated monitors → a real Mosquitto → ``streamproc run`` → a ward consumer.

One broker and one service for the module: the acceptance test runs every scenario (one
bed each) compressed in time, and a short load test runs on another ward.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiomqtt
import pytest

from devices.expectations import check_alerts
from devices.loadtest import LoadConfig, run_loadtest
from devices.publisher import connect
from devices.simulate import Timeline, publish_ward, run_length, ward_plans
from streamproc.broker import LocalBroker
from streamproc.timestamps import to_epoch

pytestmark = pytest.mark.broker

#: A compressed ward: 4 h of the longest scenario in a few seconds of wall time.
SPEED = 2400.0
WAIT_S = 90.0  # bound on every wait below


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """A Mosquitto and a ``streamproc run`` subprocess subscribed to it."""
    workdir = tmp_path_factory.mktemp("live")
    with LocalBroker(workdir=workdir / "broker") as broker:
        command = [sys.executable, "-m", "streamproc", "--log-level", "WARNING", "run"]
        options = ["--broker", broker.url, "--metrics-port", "0"]
        options += ["--state-dir", str(workdir / "state"), "--instance", "sp-test"]
        log = (workdir / "streamproc.log").open("wb")
        process = subprocess.Popen([*command, *options], stdout=log, stderr=subprocess.STDOUT)
        try:
            asyncio.run(_wait_online(broker.url))
            yield broker
        finally:
            process.terminate()
            process.wait(timeout=20)
            log.close()


async def _wait_online(url: str) -> None:
    async with asyncio.timeout(30), connect(url, identifier="test-wait-online") as client:
        await client.subscribe("streamproc/sp-test/state", qos=1)
        async for message in client.messages:
            if message.payload == b"online":
                return


class _Consumer:
    """A ward consumer: alert events by bed, and the newest status ``at`` by bed."""

    def __init__(self) -> None:
        self.alerts: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.status_at: dict[str, float] = {}
        self.rejections: Counter[str] = Counter()

    async def collect(self, client: aiomqtt.Client) -> None:
        async for message in client.messages:
            if not isinstance(message.payload, bytes) or not message.payload:
                continue
            body = json.loads(message.payload)
            if str(message.topic).endswith("/rejected"):
                self.rejections[body["reason"]] += 1
            elif str(message.topic).endswith("/alerts"):
                self.alerts[body["bed"]].append(body)
            else:
                self.status_at[body["bed"]] = to_epoch(datetime.fromisoformat(body["at"]))

    async def wait_until_processed(self, last_ts: dict[str, float]) -> None:
        """Until every bed's retained status has reached its last reading (polled: the
        status is coalesced to about once a second per bed anyway)."""
        while any(self.status_at.get(bed, 0.0) < ts for bed, ts in last_ts.items()):  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # alert events of the last readings


async def _run_ward(url: str) -> tuple[_Consumer, list[Any], float]:
    probe = ward_plans(scenario="mix", beds=8, seed=5, ward="w1", start_ts=0.0, duration=None)
    timeline = Timeline.ending_now(duration=run_length(probe), speed=SPEED)
    plans = ward_plans(
        scenario="mix", beds=8, seed=5, ward="w1", start_ts=timeline.start_ts, duration=None
    )
    last_ts = {p.bed: p.start_ts + p.duration_s - 2.0 for p in plans}
    consumer = _Consumer()
    async with asyncio.timeout(WAIT_S), connect(url, identifier="test-ward") as client:
        await client.subscribe("icu/w1/+/alerts", qos=1)
        await client.subscribe("icu/w1/+/status", qos=1)
        await client.subscribe("streamproc/sp-test/rejected", qos=1)
        async with asyncio.TaskGroup() as group:
            collector = group.create_task(consumer.collect(client))
            await publish_ward(broker=url, plans=plans, timeline=timeline)
            await consumer.wait_until_processed(last_ts)
            collector.cancel()
    return consumer, plans, timeline.start_ts


def test_every_scenario_end_to_end_through_mosquitto_and_streamproc_run(
    service: LocalBroker,
) -> None:
    consumer, plans, start = asyncio.run(_run_ward(service.url))
    alerts = consumer.alerts
    # compressed time never runs ahead of the receiver's clock: no `future`; and only the
    # flush and disconnection artefacts are rejected (implausible), nothing else
    assert set(consumer.rejections) == {"implausible"}, consumer.rejections
    failures = []
    for plan in plans:
        # compressed time: rules on the receiver's clock (signal.lost...) cannot fire
        verdict = check_alerts(
            plan.scenario, alerts[plan.bed], start_ts=start, with_arrival_clock=False
        )
        if not verdict.ok:
            failures.append(f"{plan.scenario.name}: {verdict.describe(start)}")
    assert not failures, failures
    flush_bed = next(p.bed for p in plans if p.scenario.name == "flush_artefact")
    assert not [a for a in alerts[flush_bed] if a["rule"].startswith("map.")]
    refractory = next(p.bed for p in plans if p.scenario.name == "refractory_hypotension")
    assert "map.below_floor" in {a["rule"] for a in alerts[refractory]}


def test_short_load_test_loses_no_alert(service: LocalBroker, tmp_path: Path) -> None:
    cfg = LoadConfig(
        broker=service.url,
        beds=20,
        rate=1500.0,
        duration=3.0,
        ward="load",
        breach_fraction=0.5,
        malformed_rate=0.01,
        duplicate_rate=0.01,
        drain=2.0,
        progress=False,
    )
    started = time.monotonic()
    report = asyncio.run(asyncio.wait_for(run_loadtest(cfg), WAIT_S))
    assert time.monotonic() - started < WAIT_S
    alerts = report["alerts"]
    assert alerts["expected"] >= 10
    assert alerts["lost"] == []
    assert alerts["unexpected"] == []
    assert report["latency_ms"]["samples"] >= alerts["expected"]
    readings = report["readings"]
    assert readings["achieved_per_s"] >= 0.8 * readings["offered_per_s"]
    # every bad message is rejected with its reason, and counted
    assert report["rejections"] == report["rejections_expected"]
    assert set(report["rejections"]) == {"malformed_json", "duplicate"}
    (tmp_path / "load.json").write_text(json.dumps(report), encoding="utf-8")
