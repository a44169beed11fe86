"""``streamproc run`` configured the way ``deploy/`` configures it, against the shipped broker.

The service is a child process started from its console script with ``STREAMPROC_*``
environment variables only (as the systemd unit and the container run it): ``mqtts://``,
the CA, the ``streamproc`` account's password from a file, optionally a client
certificate. Devices and consumers log in with their own accounts over TLS.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import aiomqtt
import pytest
from deploy_support import (
    FAMILIES,
    WAIT,
    DeployBroker,
    Pki,
    Prometheus,
    Streamproc,
    client,
    dashboard_expressions,
    family_of,
    queried_series,
    rule_expressions,
    scrape,
)
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.broker
T = TypeVar("T")

PATIENT = "pt-4711-confidential"
CONTEXT = {"patient": PATIENT, "protocol": "tartare2s-ttp", "chronic_hypertension": False}


def hypotension(now: float) -> list[bytes]:
    """MAP 40 mmHg once a second for 75 s of event time, ending 5 s ago."""
    start = now - 80
    return [
        json.dumps(
            {"ts": start + i, "device": "mon-07", "seq": i + 1, "values": {"map": 40.0}}
            | ({"values": {"map": 40.0, "mystery_index": 1.0}} if i == 0 else {})
        ).encode()
        for i in range(76)
    ]


async def raise_an_alert(ward: DeployBroker) -> dict[str, Any]:
    """A device drives bed icu1/b07 below the MAP floor; the ward consumer gets the alert."""
    async with client(ward, "nurse-icu1") as consumer, client(ward, "icu1/b07") as device:
        await consumer.subscribe("icu/+/+/alerts", qos=1)
        await device.publish("icu/icu1/b07/context", json.dumps(CONTEXT), qos=1, retain=True)
        # a malformed context that carries the patient id: rejected, and never logged
        bad = json.dumps({**CONTEXT, "weight_kg": "heavy"})
        await device.publish("icu/icu1/b07/context", bad, qos=1)
        await device.publish("icu/icu1/b07/vitals", b'{"ts": "now", "values": {"map": 50}}')
        for payload in hypotension(time.time()):
            await device.publish("icu/icu1/b07/vitals", payload, qos=1)
        return await alert_of_rule(consumer, "map.below_floor")


async def alert_of_rule(consumer: aiomqtt.Client, rule: str) -> dict[str, Any]:
    """The first alert event of ``rule`` the consumer receives (others may come first)."""
    async with asyncio.timeout(WAIT):
        async for message in consumer.messages:
            alert: dict[str, Any] = json.loads(message.payload)  # type: ignore[arg-type]
            if alert["rule"] == rule:
                return alert
    raise AssertionError("the subscription ended")


@dataclass(frozen=True, slots=True)
class Traffic:
    """One run of the service on the shipped ward broker, after real traffic."""

    service: Streamproc
    alert: dict[str, Any]
    metrics: str


@pytest.fixture(scope="module")
def traffic(tmp_path_factory: pytest.TempPathFactory, deploy_pki: Pki) -> Iterator[Traffic]:
    workdir = tmp_path_factory.mktemp("service")
    with (
        DeployBroker(workdir=workdir / "ward", pki=deploy_pki) as ward,
        Streamproc(broker=ward, workdir=workdir / "streamproc") as service,
    ):
        alert = asyncio.run(raise_an_alert(ward))
        yield Traffic(service, alert, scrape(service.metrics_port, "/metrics"))


def test_streamproc_raises_an_alert_end_to_end_over_tls(traffic: Traffic) -> None:
    alert = traffic.alert
    assert (alert["rule"], alert["event"], alert["priority"]) == (
        "map.below_floor",
        "raised",
        "high",
    )
    assert alert["secondary"] is True
    assert alert["patient"] == PATIENT  # on the wire, to the consumers the ACL lets read it


def test_neither_a_patient_id_nor_the_password_is_logged(traffic: Traffic) -> None:
    log = traffic.service.log_text()
    assert "DEBUG" in log  # the service logged at its most verbose level
    assert PATIENT not in log, "a patient id was written to the log in clear"
    assert traffic.service.password not in log


def test_streamproc_logs_in_with_a_client_certificate(tmp_path: Path, deploy_pki: Pki) -> None:
    """On a broker that requires client certificates (a client without one is refused:
    test_deploy_broker), streamproc with STREAMPROC_CLIENT_CERT and STREAMPROC_CLIENT_KEY
    becomes ready, i.e. connected and subscribed."""
    mutual = DeployBroker(workdir=tmp_path / "mtls", pki=deploy_pki, require_certificate=True)
    with mutual as broker:
        with Streamproc(broker=broker, workdir=tmp_path / "with", client_cert=True) as service:
            metrics = scrape(service.metrics_port, "/metrics")
        assert "\nstreamproc_broker_connected 1.0\n" in metrics


def test_streamproc_refuses_a_password_on_the_command_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(Streamproc.executable()), "run", "--password", "secret"],
        capture_output=True,
        text=True,
        timeout=WAIT,
        check=False,
    )
    assert result.returncode == 2
    assert "--password" in result.stderr


def test_promtool_accepts_the_scraped_metrics(traffic: Traffic) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed: deploy/bootstrap.sh --with-prometheus")
    lint = subprocess.run(
        [promtool, "check", "metrics"],
        input=traffic.metrics,
        capture_output=True,
        text=True,
        check=False,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr


def test_metrics_hold_every_series_the_dashboard_and_rules_query(traffic: Traffic) -> None:
    families = {
        family.name: family.type for family in text_string_to_metric_families(traffic.metrics)
    }
    for family, kind in FAMILIES.items():
        assert families.get(family) == kind, f"{family} ({kind}) is not in /metrics"
    for expression in dashboard_expressions() + rule_expressions():
        for series in queried_series(expression):
            assert family_of(series, families), f"{series} is queried but not in /metrics"
    samples = {
        sample.name
        for family in text_string_to_metric_families(traffic.metrics)
        for sample in family.samples
    }
    for needed in (
        "streamproc_messages_received_total",
        "streamproc_alert_events_total",
        "streamproc_unknown_signals_total",
        "streamproc_processing_latency_seconds_bucket",
    ):
        assert needed in samples, f"no {needed} sample after real traffic"


@pytest.mark.slow
def test_a_real_prometheus_scrapes_streamproc_with_the_shipped_config(
    traffic: Traffic, tmp_path: Path
) -> None:
    if shutil.which("prometheus") is None:
        pytest.skip("prometheus is not installed: deploy/bootstrap.sh --with-prometheus")
    with Prometheus(
        workdir=tmp_path / "prometheus", target_port=traffic.service.metrics_port
    ) as server:
        series = until(lambda: server.api("query?query=streamproc_broker_connected")["result"])
        assert [(s["metric"]["ward"], s["value"][1]) for s in series] == [("icu1", "1")]
        # every shipped alerting rule loads and evaluates against the real series
        rules = until(lambda: evaluated_rules(server))
        assert {rule["name"] for rule in rules} >= {"StreamprocBrokerDisconnected"}


def evaluated_rules(server: Prometheus) -> list[dict[str, Any]]:
    """The loaded rules once each has been evaluated without error, else an empty list."""
    rules = [rule for group in server.api("rules")["groups"] for rule in group["rules"]]
    return rules if rules and all(rule["health"] == "ok" for rule in rules) else []


def until(probe: Callable[[], T], *, timeout: float = 20.0) -> T:
    """Call ``probe`` until it returns something truthy (at most ``timeout`` seconds)."""
    deadline = time.monotonic() + timeout
    while not (value := probe()):
        assert time.monotonic() < deadline, f"nothing from {probe} within {timeout} s"
        time.sleep(0.2)
    return value
