"""``python -m devices`` on the command line, and the offline path through ``streamproc replay``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devices.scenario import scenario_names

START = "1800000000"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_help_lists_the_commands() -> None:
    result = _run("devices", "--help")
    assert result.returncode == 0
    for command in ("simulate", "scenarios", "check", "loadtest"):
        assert command in result.stdout
    simulate = _run("devices", "simulate", "--help")
    assert "--speed" in simulate.stdout
    assert "fault kinds" in simulate.stdout


def test_scenarios_lists_every_scenario_with_its_expectations() -> None:
    result = _run("devices", "scenarios")
    assert result.returncode == 0
    for name in scenario_names():
        assert name in result.stdout
    assert "expects map.below_floor (high, physiological)" in result.stdout


def test_simulate_jsonl_then_streamproc_replay_then_check(tmp_path: Path) -> None:
    """The documented offline loop: write a scenario, replay it, check the alerts."""
    messages, alerts = tmp_path / "ward.jsonl", tmp_path / "alerts.jsonl"
    scenario = ("--scenario", "refractory_hypotension", "--start", START)
    written = _run("devices", "simulate", *scenario, "--jsonl", str(messages))
    assert written.returncode == 0, written.stderr
    assert "python -m devices check" in written.stdout
    replayed = _run("streamproc", "replay", str(messages), "--out", str(alerts))
    assert replayed.returncode == 0, replayed.stderr
    checked = _run("devices", "check", *scenario, str(alerts))
    assert checked.returncode == 0, checked.stdout
    assert "ok   b001 refractory_hypotension: as expected" in checked.stdout
    # the same alerts are wrong for a stable patient: the check can fail
    wrong = _run("devices", "check", "--scenario", "stable_ttp", "--start", START, str(alerts))
    assert wrong.returncode == 1
    assert "unexpected map.below_floor" in wrong.stdout


def test_bad_options_say_what_to_do() -> None:
    result = _run("devices", "simulate", "--scenario", "nope", "--jsonl", "/dev/null")
    assert result.returncode == 2
    assert "choose one of" in result.stderr
    fault = _run("devices", "simulate", "--fault", "skew:seconds", "--jsonl", "/dev/null")
    assert fault.returncode == 2
    assert "KIND[:key=value" in fault.stderr


def test_loadtest_without_a_broker_says_so() -> None:
    result = _run(
        "devices", "loadtest", "--beds", "2", "--duration", "1", "--broker", "mqtt://127.0.0.1:1"
    )
    assert result.returncode == 2
    assert "Connection refused" in result.stderr
    assert "Traceback" not in result.stderr
