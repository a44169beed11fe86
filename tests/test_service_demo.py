"""``streamproc demo`` as a user runs it: a child process that starts its own Mosquitto."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streamproc.demo import render_ward
from streamproc.models import BedStatusPayload, StatusAlert, StatusValue


@pytest.mark.broker
@pytest.mark.slow
def test_demo_prints_alerts_and_stops_after_duration() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMPROC_")}
    done = subprocess.run(
        [sys.executable, "-m", "streamproc", "demo", "--duration", "20", "--no-tty"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    alert_lines = [line for line in done.stdout.splitlines() if " raised " in line]
    assert alert_lines, done.stdout
    assert any("map.below_floor" in line for line in alert_lines), done.stdout
    assert "pt-" not in done.stdout  # the simulated patients' ids are never shown
    assert "demo stopped:" in done.stdout


def test_ward_view_shows_values_targets_and_alerts() -> None:
    status = BedStatusPayload(
        ward="w1", bed="b02", patient="opaque", protocol="tartare2s-ttp", context="configured",
        at="2026-11-25T12:00:00.000Z", targets={
            "map.below_floor": {"map_min": 50.0}, "crt.abnormal": {"crt_below": 3.0}
        },
        latest={"map": StatusValue(value=44.6, ts="2026-11-25T12:00:00.000Z")},
        active_alerts=[StatusAlert(
            alert_id="abc", rule="map.below_floor", priority="high", kind="physiological",
            state="active", onset="2026-11-25T11:59:00.000Z", message="MAP below the floor",
        )],
    )  # fmt: skip
    view = render_ward([status], header="demo", colour=False)
    assert "w1/b02" in view
    assert "44.6" in view
    assert "map_min 50, crt_below 3" in view
    assert "HIGH" in view
    assert "map.below_floor" in view
    assert "opaque" not in view
