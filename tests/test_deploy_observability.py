"""Prometheus configuration, alerting rules and the Grafana dashboard in ``deploy/``.

``promtool`` (Debian's ``prometheus`` package; ``deploy/bootstrap.sh --with-prometheus``)
checks the configuration and the rules and runs the rules' unit tests. The dashboard and
the rules may only query the metric families streamproc exports.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_support import DEPLOY

PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "streamproc.json"

#: the metric families the service exports (the agreed interface)
FAMILIES = {
    "streamproc_messages_received": "counter",
    "streamproc_unknown_signals": "counter",
    "streamproc_alert_events": "counter",
    "streamproc_processing_latency_seconds": "histogram",
    "streamproc_reading_age_seconds": "histogram",
    "streamproc_queue_depth": "gauge",
    "streamproc_active_beds": "gauge",
    "streamproc_active_alerts": "gauge",
    "streamproc_broker_connected": "gauge",
    "streamproc_reconnects": "counter",
    "streamproc_outbox_depth": "gauge",
    "streamproc_silent_beds": "gauge",
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed: deploy/bootstrap.sh --with-prometheus")
    return subprocess.run(
        [found, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


def family_of(series: str, families: dict[str, str]) -> str | None:
    """The family a sample name belongs to (``x_bucket`` -> ``x`` for a histogram)."""
    for family, kind in families.items():
        if any(series == family + suffix for suffix in SUFFIXES[kind]):
            return family
    return None


def queried_series(expression: str) -> set[str]:
    return set(re.findall(r"\bstreamproc_[a-z_]+", expression))


def dashboard_expressions() -> list[str]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((PROMETHEUS / "streamproc-rules.yml").read_text(encoding="utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_promtool_accepts_the_configuration_and_the_rules() -> None:
    for args in (("check", "config", "prometheus.yml"), ("check", "rules", "streamproc-rules.yml")):
        result = promtool(*args)
        assert result.returncode == 0, result.stdout + result.stderr


def test_each_alerting_rule_fires_when_it_should_and_only_then() -> None:
    result = promtool("test", "rules", "streamproc-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    unit_tests = (PROMETHEUS / "streamproc-rules.test.yml").read_text(encoding="utf-8")
    rules = yaml.safe_load((PROMETHEUS / "streamproc-rules.yml").read_text(encoding="utf-8"))
    every_rule = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert set(re.findall(r"alertname: (\w+)", unit_tests)) == every_rule


def test_the_rules_cover_what_the_on_call_engineer_needs() -> None:
    expressions = " ".join(rule_expressions())
    for needed in (
        "streamproc_broker_connected",
        'streamproc_messages_received_total{outcome="rejected"}',
        "streamproc_processing_latency_seconds_bucket",
        "streamproc_silent_beds",
        "streamproc_outbox_depth",
    ):
        assert needed in expressions


def test_the_dashboard_is_valid_json_with_the_required_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    titles = " | ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for needed in ("throughput", "latency", "rejections by reason", "alerts by priority", "outbox"):
        assert needed in titles
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert all(panel["datasource"]["uid"] == "prometheus" for panel in dashboard["panels"])
    provisioned = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text(encoding="utf-8")
    )
    assert [source["uid"] for source in provisioned["datasources"]] == ["prometheus"]


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_only_the_agreed_metric_families_are_queried(source: str) -> None:
    expressions = dashboard_expressions() if source == "dashboard" else rule_expressions()
    for expression in expressions:
        for series in queried_series(expression):
            assert family_of(series, FAMILIES), f"{series} in {expression!r} is not exported"
