"""Offline replay of a recorded bus (JSON Lines) and the benchmark command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from bedside import T0

from streamproc.bench import render, run_bench
from streamproc.cli import main
from streamproc.evaluator import Evaluator
from streamproc.ingest import ingest
from streamproc.replay import ReplaySummary, example_path, read_jsonl, replay_messages


def _line(topic: str, payload: object) -> str:
    return json.dumps({"topic": topic, "payload": payload})


def _floor_recording(seconds: int = 70, *, gap_after: int | None = None) -> list[str]:
    lines = [_line("icu/w1/b07/context", {"protocol": "tartare2s-ttp", "patient": "p-1"})]
    for t in range(seconds):
        if gap_after is not None and gap_after < t <= gap_after + 40:
            continue
        lines.append(_line("icu/w1/b07/vitals", {"ts": T0 + t, "values": {"map": 45.0}}))
    return lines


def test_replay_raises_the_floor_alert_at_event_time() -> None:
    summary = ReplaySummary()
    alerts = list(
        replay_messages(read_jsonl(_floor_recording(), source="t"), Evaluator(), summary=summary)
    )
    assert [(a.rule, a.event, a.patient) for a in alerts] == [("map.below_floor", "raised", "p-1")]
    assert summary.messages == 71
    assert summary.alerts == {"map.below_floor": 1}


def test_replay_ticks_with_event_time_through_a_gap() -> None:
    # MAP every second to 20, nothing 21 … 60, MAP again from 61: the one-second ticks of
    # event time raise signal.lost at 50 (30 s after the last MAP), cleared by the MAP at 61
    lines = _floor_recording(70, gap_after=20)
    alerts = list(replay_messages(read_jsonl(lines, source="t"), Evaluator()))
    lost = [(a.event, a.at) for a in alerts if a.rule == "signal.lost"]
    from streamproc.timestamps import format_ts

    assert lost == [("raised", format_ts(T0 + 50)), ("cleared", format_ts(T0 + 61))]


def test_replay_equals_the_live_ingest_path() -> None:
    """Without ticks, replay is exactly ingest() message by message."""
    lines = _floor_recording()
    replayed = list(replay_messages(read_jsonl(lines, source="t"), Evaluator(), ticks=False))
    live = Evaluator()
    direct = []
    for topic, payload in read_jsonl(lines, source="t"):
        direct += ingest(live, topic, payload, received=None).alerts
    assert replayed == direct


def test_raw_string_payloads_and_unreadable_lines_are_counted() -> None:
    lines = [
        _line("icu/w1/b07/vitals", '{"ts": 0, "values": {"map": '),
        "not json at all",
        _line("icu/w1/b07/context", None),
        _line("icu/w1/b07/vitals", {"ts": T0, "values": {"map": 1000.0}}),
    ]
    summary = ReplaySummary()
    assert (
        list(
            replay_messages(
                read_jsonl(lines, source="t", summary=summary), Evaluator(), summary=summary
            )
        )
        == []
    )
    assert summary.unreadable_lines == 1
    assert summary.messages == 3
    assert summary.rejected == {"malformed_json": 1, "implausible": 1}
    assert "unreadable lines (skipped): 1" in summary.render()


def test_replay_command_on_the_example_is_deterministic(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["replay", str(example_path()), "--out", str(first)]) == 0
    report = capsys.readouterr().err
    assert main(["replay", "--example", "--out", str(second)]) == 0
    assert first.read_bytes() == second.read_bytes()
    events = [json.loads(line) for line in first.read_text().splitlines()]
    floor = [e for e in events if e["rule"] == "map.below_floor"]
    assert [e["event"] for e in floor][:1] == ["raised"]
    assert {"latched", "acknowledged", "cleared"} <= {e["event"] for e in floor}
    assert all(e["topic"] == f"icu/{e['ward']}/{e['bed']}/alerts" for e in events)
    assert all(e["secondary"] is True for e in events)
    assert "messages read:" in report
    assert "map.below_floor: 1" in report
    assert "malformed_json: 1" in report
    assert "duplicate: 1" in report


def test_replay_reads_stdin_and_uses_the_protocol_option() -> None:
    lines = [
        _line("icu/w1/b09/vitals", {"ts": T0 + t, "values": {"map": 60.0}}) for t in range(302)
    ]
    result = subprocess.run(
        [sys.executable, "-m", "streamproc", "replay", "-", "--protocol", "tartare2s-sc"],
        input="\n".join(lines),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["rule"], e["event"], e["protocol"]) for e in events] == [
        ("map.below_target", "raised", "tartare2s-sc")
    ]
    assert "messages read: 302" in result.stderr


def test_replay_command_without_input_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay"]) == 2
    assert "--example" in capsys.readouterr().err


def test_bench_runs_a_tiny_ward() -> None:
    results = run_bench(beds=3, seconds=5, protocol="tartare2s-ttp")
    assert [r.name for r in results] == [
        "evaluator alone",
        "decode + evaluate",
        "decode alone (baseline)",
    ]
    assert all(r.readings >= 15 and r.per_second > 0 and r.p99_us >= r.p50_us for r in results)
    text = render(results, beds=3, seconds=5, protocol="tartare2s-ttp")
    assert "readings/s" in text
    assert "p99 µs" in text


def test_alert_line_is_the_payload_plus_topic() -> None:
    from streamproc.replay import alert_line

    alerts = list(replay_messages(read_jsonl(_floor_recording(), source="t"), Evaluator()))
    line = json.loads(alert_line(alerts[0]))
    topic = line.pop("topic")
    assert topic == "icu/w1/b07/alerts"
    assert line == json.loads(alerts[0].model_dump_json())
