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

import pytest
import yaml
from deploy_support import (
    DASHBOARD,
    DEPLOY,
    FAMILIES,
    PROMETHEUS,
    dashboard_expressions,
    family_of,
    queried_series,
    rule_expressions,
)


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool is not installed: deploy/bootstrap.sh --with-prometheus")
    return subprocess.run(
        [found, *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
    )


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
