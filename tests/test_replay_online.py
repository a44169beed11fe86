"""Online equals offline: a recording published by ``python -m devices replay`` through a real
Mosquitto into ``streamproc run`` (a child process) gives the physiological alert events of
``streamproc replay`` on the same recording: same ids, rules, onsets, raises, latches, clears.

The publisher runs far faster than real time, so tick-driven events (signal.lost, overdue
assessments, escalation) may differ (design §5): they are left out, and so are the later
events of an alert that escalated offline (its latching then depends on the tick).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
from service_harness import ServiceProcess, watching

from streamproc.broker import LocalBroker
from streamproc.cli import main

pytestmark = [pytest.mark.broker, pytest.mark.asyncio]

TICK_RULES = ("signal.lost", "device.offline", "assessment.overdue")


def recording(tmp_path: Path, data_dir: Path) -> list[str]:
    """Bed b1: 180 s of profound hypotension, then a normal trace after a flush and zeroing:
    map.below_floor raised, updated, latched."""
    parts = [("03700181_abp", "08:00:00"), ("3975656_0015_abp", "08:03:00")]
    paths = []
    for name, start in parts:
        folder = tmp_path / name
        folder.mkdir()
        for suffix in (".hea", ".dat"):
            shutil.copy(data_dir / f"wfdb/{name}{suffix}", folder)
        (folder / f"{name}.replay.toml").write_text(
            f'ward = "w1"\nbed = "b1"\nstart = "2026-11-25T{start}Z"\n'
        )
        paths.append(str(folder / name))
    return paths


def physiological(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        a for a in alerts if a["kind"] == "physiological" and not a["rule"].startswith(TICK_RULES)
    ]


def comparable(alerts: list[dict[str, Any]], escalated: set[str]) -> list[tuple[Any, ...]]:
    """Per alert, its events in order; for an alert that escalated offline, its raise only."""
    out = []
    for a in physiological(alerts):
        if a["alert_id"] in escalated and a["event"] != "raised":
            continue
        out.append(
            (a["alert_id"], a["bed"], a["rule"], a["onset"], a["event"], a["at"], a["observed"])
        )
    return sorted(out, key=lambda row: (row[1], row[0], row[5], row[4]))


async def test_devices_replay_into_the_live_service_equals_offline(
    tmp_path: Path, data_dir: Path, broker: LocalBroker
) -> None:
    files = recording(tmp_path, data_dir)
    offline_file = tmp_path / "offline.jsonl"
    assert (
        main(["replay", *files, "--ward", "w1", "--charted", "no", "--out", str(offline_file)]) == 0
    )
    offline = [json.loads(line) for line in offline_file.read_text().splitlines()]
    escalated = {a["alert_id"] for a in offline if a["event"] == "escalated"}
    expected = comparable(offline, escalated)
    assert {row[4] for row in expected} >= {"raised", "latched", "updated"}

    service = ServiceProcess(
        broker_url=broker.url, state_dir=tmp_path / "state", instance="replay-test"
    )
    await service.start()
    try:
        async with watching(broker.url, "icu/+/+/alerts") as watcher:
            publish = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "devices", "replay", *files, "--ward", "w1",
                "--speed", "0", "--broker", broker.url,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            async with asyncio.timeout(60):
                _, stderr = await publish.communicate()
            assert publish.returncode == 0, stderr.decode()
            raised_ids = {row[0] for row in expected if row[4] == "raised"}

            def caught_up(w: Any) -> bool:
                live = comparable(w.json("/alerts"), escalated)
                return len(live) >= len(expected) and raised_ids <= {r[0] for r in live}

            await watcher.wait_for(caught_up, limit=30, what="the offline alert events, live")
            live = comparable(watcher.json("/alerts"), escalated)
    finally:
        assert service.terminate() == 0
    assert [r[:6] for r in live] == [r[:6] for r in expected]
    assert live == expected
