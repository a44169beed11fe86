"""PhysioNet/CinC Challenge 2012 stays replayed under the protocols.

The expected alerts are derived here from the raw ``Time,Parameter,Value`` rows and the
protocol file's own numbers, independently of the reader: a lactate at or above the
threshold raises ``lactate.high`` at that time; a run of charted MAP below the floor
(or the standard-care band) that lasts the rule's onset raises the MAP alert at its start.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from streamproc.cli import main
from streamproc.protocol import load_protocol
from streamproc.readers.options import UNDATED_START
from streamproc.readers.presets import reader_preset

STAYS = ("132612", "132663", "132765", "132860")


def rows(stay: Path) -> list[tuple[float, str, float]]:
    out = []
    for line in stay.read_text().splitlines()[1:]:
        clock, parameter, value = line.split(",")
        hours, minutes = clock.split(":")
        out.append((UNDATED_START + int(hours) * 3600 + int(minutes) * 60, parameter, float(value)))
    return out


def charted_map(stay: Path) -> list[tuple[float, float]]:
    """Invasive MAP where charted, else NIMAP; 0 is a charting gap."""
    by_time: dict[float, dict[str, float]] = {}
    for ts, parameter, value in rows(stay):
        if parameter in {"MAP", "NIMAP"} and value > 0:
            by_time.setdefault(ts, {})[parameter] = value
    return [(ts, v.get("MAP", v.get("NIMAP", 0.0))) for ts, v in sorted(by_time.items())]


def expected_onsets(
    series: list[tuple[float, float]], limit: float, *, spec: Any, gap: float, escalate_after: float
) -> list[float]:
    """Onsets of the alerts a sustained "below ``limit``" rule raises over ``series``.

        below ─ held onset_s ─▶ raised ─ ≥ limit + clear_margin held clear_s ─▶ cleared
                                  └─ high (or escalated to high) and latching: stays, no new raise

    A gap longer than ``gap`` between values restarts either count. No one acknowledges
    in a replay, so a latched alert never clears and the rule never raises again.
    """
    onsets: list[float] = []
    start: float | None = None  # start of the running below- or clear-count
    raised_at: float | None = None
    last: float | None = None
    for ts, value in series:
        broken = last is not None and ts - last > gap
        last = ts
        if raised_at is None:
            start = None if value >= limit else (ts if start is None or broken else start)
            if start is not None and ts - start >= spec.onset_s:
                onsets.append(start)
                raised_at, start = ts, None
                if spec.priority == "high" and spec.latching:
                    break
            continue
        good = value >= limit + spec.clear_margin
        start = None if not good else (ts if start is None or broken else start)
        if start is not None and ts - start >= spec.clear_s:
            if ts >= raised_at + escalate_after:
                break  # escalated to high on a tick before it could clear: latched
            raised_at, start = None, None
    return onsets


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def replay(tmp_path: Path, stay: Path, protocol: str) -> list[dict[str, Any]]:
    out = tmp_path / f"{stay.stem}-{protocol}.jsonl"
    assert main(["replay", str(stay), "--protocol", protocol, "--out", str(out)]) == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def raised(alerts: list[dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    return [a for a in alerts if a["event"] == "raised" and a["rule"] == rule]


@pytest.mark.parametrize("stay", STAYS)
def test_lactate_alerts_follow_the_charted_lactate(
    tmp_path: Path, data_dir: Path, stay: str
) -> None:
    path = data_dir / f"challenge2012/{stay}.txt"
    spec = load_protocol("tartare2s-ttp").rules.lactate_high
    assert spec is not None
    assert spec.at_or_above is not None
    high = [ts for ts, p, v in rows(path) if p == "Lactate" and v >= spec.at_or_above]
    alerts = raised(replay(tmp_path, path, "tartare2s-ttp"), "lactate.high")
    if not high:
        assert alerts == []
    else:
        assert alerts, "a lactate at or above the threshold must raise lactate.high"
        assert alerts[0]["onset"] == iso(high[0])
        assert alerts[0]["observed"]["lactate"] >= spec.at_or_above


def test_the_chosen_stays_cover_the_cases(data_dir: Path) -> None:
    lactate = {
        s: max(
            (v for _, p, v in rows(data_dir / f"challenge2012/{s}.txt") if p == "Lactate"),
            default=0,
        )
        for s in STAYS
    }
    assert max(lactate.values()) > 2.0
    series = charted_map(data_dir / "challenge2012/132860.txt")
    assert any(v < 50 for _, v in series)
    assert sum(v < 65 for _, v in series) >= 2


@pytest.mark.parametrize("stay", STAYS)
@pytest.mark.parametrize(
    ("protocol", "rule"),
    [
        ("tartare2s-ttp", "map.below_floor"),
        ("tartare2s-sc", "map.below_floor"),
        ("tartare2s-sc", "map.below_target"),
    ],
)
def test_charted_map_runs_raise_the_map_alerts(
    tmp_path: Path, data_dir: Path, stay: str, protocol: str, rule: str
) -> None:
    path = data_dir / f"challenge2012/{stay}.txt"
    loaded = load_protocol(protocol)
    gap = reader_preset()["challenge2012"]["charted"]["sustained_max_gap_s"]
    spec = (
        loaded.rules.map_below_floor if rule == "map.below_floor" else loaded.rules.map_below_target
    )
    assert spec is not None
    limit = loaded.floor if rule == "map.below_floor" else loaded.bands.standard.low
    expected = expected_onsets(
        charted_map(path), limit, spec=spec, gap=gap, escalate_after=loaded.escalation.after_s
    )
    got = [a["onset"] for a in raised(replay(tmp_path, path, protocol), rule)]
    assert got == [iso(ts) for ts in expected]
