"""Every scenario raises the alerts it states, and nothing physiological it does not.

Offline: a scenario's messages through :func:`streamproc.ingest.ingest` with ticks every
second of event time, as offline replay does (design §5: offline, arrival time is event
time, so the alerts on the receiver's clock are expected too).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

import pytest

from devices.bedside import BedPlan, bed_messages
from devices.expectations import check_alerts
from devices.faults import Message
from devices.scenario import load_scenario, scenario_names
from streamproc.evaluator import Evaluator
from streamproc.ingest import ingest

START = 1_800_000_000.0


def replay_offline(messages: Iterable[Message], *, start: float) -> list[dict[str, object]]:
    """Feed messages in order; tick once a second of event time (offline replay's clock)."""
    evaluator = Evaluator()
    alerts = []
    clock = start
    for message in messages:
        while clock <= start + message.offset:
            alerts += evaluator.advance(clock)
            clock += 1.0
        alerts += ingest(evaluator, message.topic, message.payload, received=None).alerts
    alerts += evaluator.advance(clock)
    return [json.loads(alert.model_dump_json()) for alert in alerts]


def _plan(name: str, seed: int) -> BedPlan:
    scenario = load_scenario(name)
    return BedPlan(
        scenario=scenario,
        ward="w1",
        bed="b001",
        seed=seed,
        start_ts=START,
        duration_s=scenario.duration_s,
    )


@pytest.mark.parametrize("name", scenario_names())
def test_scenario_raises_its_expected_alerts_offline(name: str) -> None:
    plan = _plan(name, seed=1)
    alerts = replay_offline(bed_messages(plan), start=START)
    verdict = check_alerts(plan.scenario, alerts, start_ts=START)
    assert verdict.ok, verdict.describe(START)


def test_flush_artefact_raises_no_map_alert_offline() -> None:
    plan = _plan("flush_artefact", seed=3)
    alerts = replay_offline(bed_messages(plan), start=START)
    assert not [a for a in alerts if str(a["rule"]).startswith("map.")]
    assert not [a for a in alerts if a["kind"] == "physiological"]


def test_a_scenario_without_its_event_does_not_raise_the_alert() -> None:
    """The expectations are earned by the physiology: without the hypotension event the
    refractory patient raises no floor alert (so the check can fail)."""
    scenario = load_scenario("refractory_hypotension")
    calm = scenario.model_copy(update={"events": []})
    plan = BedPlan(scenario=calm, ward="w1", bed="b001", seed=1, start_ts=START, duration_s=1800)
    alerts = replay_offline(bed_messages(plan), start=START)
    verdict = check_alerts(calm, alerts, start_ts=START)
    assert "map.below_floor" in {e.rule for e in verdict.missing}


def _waveform_only(
    name: str, minutes: float | None = None
) -> tuple[BedPlan, list[dict[str, object]]]:
    scenario = load_scenario(name)
    scenario = scenario.model_copy(update={"numerics": False, "waveform": True})
    duration = scenario.duration_s if minutes is None else minutes * 60.0
    plan = BedPlan(
        scenario=scenario, ward="w1", bed="b001", seed=2, start_ts=START, duration_s=duration
    )
    return plan, replay_offline(bed_messages(plan), start=START)


def test_flush_on_the_waveform_alone_raises_no_map_alert() -> None:
    """Without MAP numerics streamproc derives MAP from the trace: a flush is an artefact."""
    _, alerts = _waveform_only("flush_artefact")
    assert not [a for a in alerts if a["kind"] == "physiological"]


def test_the_waveform_carries_the_map() -> None:
    """The pulse's beat average is the MAP: hypotension on the trace alone raises the floor
    alert when the numerics would."""
    plan, alerts = _waveform_only("refractory_hypotension", minutes=20)
    raised = [a for a in alerts if a["event"] == "raised" and a["rule"] == "map.below_floor"]
    assert len(raised) == 1
    verdict = check_alerts(plan.scenario, raised, start_ts=START, duration_s=plan.duration_s)
    assert not [e for e in verdict.missing if e.rule == "map.below_floor"]
