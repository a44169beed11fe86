"""Rule boundaries, each with its timeline (t in seconds after T0, one MAP reading per second)."""

from __future__ import annotations

import pytest
from bedside import T0, ack, context, feed_all, reading, seconds, series, summary

from streamproc.evaluator import Evaluator


@pytest.fixture
def ttp() -> Evaluator:
    return Evaluator(default_protocol="tartare2s-ttp")


@pytest.fixture
def sc() -> Evaluator:
    return Evaluator(default_protocol="tartare2s-sc")


# -- map.below_floor: onset delay ------------------------------------------------------------


def test_floor_raises_when_onset_delay_is_exactly_met(ttp: Evaluator) -> None:
    # MAP  45 45 45 ... 45 45
    # t    0  1  2  ... 59 60
    #      |<---- 60 s --->|
    #      onset           raised (t − onset = 60 s ≥ onset_s)
    alerts = feed_all(ttp, series(0, 60, map=45.0))
    assert summary(alerts) == [("map.below_floor", "raised", 60.0)]
    raised = alerts[0]
    assert (raised.priority, raised.kind, raised.state) == ("high", "physiological", "active")
    assert seconds(raised.onset) == 0.0
    assert raised.target == {"map_min": 50.0}
    assert raised.observed == {"map_mean_60s": 45.0, "map_min_60s": 45.0}
    assert raised.message == "MAP below the safety floor of 50 mmHg for 60 s"


def test_floor_one_sample_short_raises_nothing(ttp: Evaluator) -> None:
    # MAP  45 45 ... 45 | (no reading at 60)
    # t    0  1  ... 59 |
    #      |<- 59 s ->|  onset_s not reached
    assert feed_all(ttp, series(0, 59, map=45.0)) == []


def test_floor_a_reading_at_50_restarts_the_onset(ttp: Evaluator) -> None:
    # MAP  45 ... 45 50 45 ... 45 45
    # t    0  ... 29 30 31 ... 90 91
    #                 ^ not below 50: the count restarts at 31 → raised at 91
    events = [*series(0, 29, map=45.0), reading(30, map=50.0), *series(31, 91, map=45.0)]
    alerts = feed_all(ttp, events)
    assert summary(alerts) == [("map.below_floor", "raised", 91.0)]
    assert seconds(alerts[0].onset) == 31.0


def test_floor_gap_longer_than_max_gap_restarts_the_onset(ttp: Evaluator) -> None:
    # MAP  45 ... 45 ·········· 45 ... 45
    # t    0  ... 20  (31 s gap) 51 ... 111
    #      a gap > max_gap_s (30 s) is no evidence of "sustained": onset restarts at 51
    events = series(0, 20, map=45.0) + series(51, 111, map=45.0)
    alerts = feed_all(ttp, events)
    assert summary(alerts) == [("map.below_floor", "raised", 111.0)]


# -- hysteresis and clear delay --------------------------------------------------------------


def _raised_floor(evaluator: Evaluator) -> str:
    alerts = feed_all(evaluator, series(0, 60, map=45.0))
    assert summary(alerts) == [("map.below_floor", "raised", 60.0)]
    return alerts[0].alert_id


def test_floor_hysteresis_between_50_and_52_does_not_clear(ttp: Evaluator) -> None:
    # MAP  45 … 45 | 51 51 … 51
    # t    0  … 60 | 61 62 … 200
    #              raised; 51 is not below 50 but below the clear level 52: stays active
    _raised_floor(ttp)
    assert summary(feed_all(ttp, series(61, 200, map=51.0))) == []
    status = ttp.status("w1", "b07")
    assert status is not None
    assert [a.state for a in status.active_alerts] == ["active"]


def test_floor_clear_delay_exactly_met_latches(ttp: Evaluator) -> None:
    # MAP  45 … 45 | 52 52 … 52 52
    # t    0  … 60 | 61 62 … 90 91
    #              clear run starts at 61; 91 − 61 = 30 s = clear_s → condition gone.
    #              High priority, physiological, unacknowledged: it latches.
    _raised_floor(ttp)
    assert feed_all(ttp, series(61, 90, map=52.0)) == []  # one sample short
    alerts = feed_all(ttp, [reading(91, map=52.0)])
    assert summary(alerts) == [("map.below_floor", "latched", 91.0)]
    assert alerts[0].state == "latched"


def test_floor_clear_run_restarts_when_map_dips(ttp: Evaluator) -> None:
    # MAP  45 … 45 | 52 … 52 51 | 52 … 52
    # t    0  … 60 | 61 … 80 81 | 82 … 112
    #                        ^ below 52: the clear run restarts at 82 → latched at 112
    _raised_floor(ttp)
    events = [*series(61, 80, map=52.0), reading(81, map=51.0), *series(82, 112, map=52.0)]
    assert summary(feed_all(ttp, events)) == [("map.below_floor", "latched", 112.0)]


# -- latch, acknowledgement -------------------------------------------------------------------


def test_latched_alert_stays_until_acknowledged(ttp: Evaluator) -> None:
    # MAP  45 … 45 | 60 … 60 |          ack
    # t    0  … 60 | 61 … 91 | 92 … 300  ↑
    #          raised      latched   (stays latched)   acknowledged, cleared
    alert_id = _raised_floor(ttp)
    feed_all(ttp, series(61, 300, map=60.0))
    status = ttp.status("w1", "b07")
    assert status is not None
    assert [(a.alert_id, a.state) for a in status.active_alerts] == [(alert_id, "latched")]
    alerts = ttp.feed(ack(alert_id))
    assert [(a.event, a.state) for a in alerts] == [
        ("acknowledged", "acknowledged"),
        ("cleared", "cleared"),
    ]
    assert all(a.alert_id == alert_id for a in alerts)
    status = ttp.status("w1", "b07")
    assert status is not None
    assert status.active_alerts == []


def test_acknowledged_alert_clears_without_latching(ttp: Evaluator) -> None:
    # MAP  45 … 45 ack 45 | 60 … 60
    # t    0  … 60  ↑  61 | 62 … 92
    #          raised acknowledged → cleared at 92 (no latch: already acknowledged)
    alert_id = _raised_floor(ttp)
    assert [a.event for a in ttp.feed(ack(alert_id))] == ["acknowledged"]
    feed_all(ttp, [reading(61, map=45.0)])
    assert summary(feed_all(ttp, series(62, 92, map=60.0))) == [
        ("map.below_floor", "cleared", 92.0)
    ]


def test_condition_returning_while_latched_reactivates_the_same_alert(ttp: Evaluator) -> None:
    # MAP  45 … 45 | 60 … 60 | 45 … 45
    # t    0  … 60 | 61 … 91 | 92 … 152
    #          raised     latched     condition again for 60 s → same alert, active again
    alert_id = _raised_floor(ttp)
    feed_all(ttp, series(61, 91, map=60.0))
    alerts = feed_all(ttp, series(92, 152, map=45.0))
    assert [(a.event, a.state, a.alert_id) for a in alerts] == [("updated", "active", alert_id)]


def test_ack_of_unknown_alert_is_counted_not_fatal(ttp: Evaluator) -> None:
    _raised_floor(ttp)
    assert ttp.feed(ack("0000000000000000")) == []
    assert ttp.ignored_acks == 1


# -- escalation -------------------------------------------------------------------------------


def test_unacknowledged_medium_alert_escalates_after_ten_minutes(ttp: Evaluator) -> None:
    # CRT 3.5 at t=0 → crt.abnormal (medium) raised at 0
    # tick  599 → nothing;  tick 600 → escalated to high (10 min, unacknowledged)
    alerts = ttp.feed(reading(0, crt=3.5))
    crt = next(a for a in alerts if a.rule == "crt.abnormal")
    assert crt.priority == "medium"
    assert [a for a in ttp.advance(T0 + 599.0) if a.rule == "crt.abnormal"] == []
    escalated = [a for a in ttp.advance(T0 + 600.0) if a.rule == "crt.abnormal"]
    assert [(a.event, a.priority, a.alert_id) for a in escalated] == [
        ("escalated", "high", crt.alert_id)
    ]
    assert [a for a in ttp.advance(T0 + 900.0) if a.rule == "crt.abnormal"] == []


def test_acknowledged_medium_alert_does_not_escalate(ttp: Evaluator) -> None:
    crt = next(a for a in ttp.feed(reading(0, crt=3.5)) if a.rule == "crt.abnormal")
    ttp.feed(ack(crt.alert_id))
    escalated = [a.rule for a in ttp.advance(T0 + 1200.0) if a.event == "escalated"]
    assert escalated == ["perfusion.inadequate"]  # not acknowledged: it does escalate


# -- MAP bands and modifiers ------------------------------------------------------------------


def test_standard_ttp_band_has_no_below_target_rule(ttp: Evaluator) -> None:
    # TTP standard band 50–65: its lower bound is the floor, so MAP 55 for 10 min is fine
    assert feed_all(ttp, series(0, 600, map=55.0)) == []


def test_switching_the_hypertension_modifier(ttp: Evaluator) -> None:
    # context: chronic hypertension → band 65–70
    # MAP  60 60 … 60 60 | (modifier off: band 50–65) 60 … 60
    # t    0  1  … 299 300 |                        301 … 361
    #                   raised (300 s)              clear run from 301, 60 s → cleared at 361
    ttp.feed(context(protocol="tartare2s-ttp", chronic_hypertension=True))
    alerts = feed_all(ttp, series(0, 299, map=60.0))
    assert alerts == []
    alerts = feed_all(ttp, [reading(300, map=60.0)])
    assert summary(alerts) == [("map.below_target", "raised", 300.0)]
    assert alerts[0].target == {"map_min": 65.0, "map_max": 70.0, "band": "chronic_hypertension"}
    assert alerts[0].priority == "medium"
    ttp.feed(context(protocol="tartare2s-ttp", chronic_hypertension=False))
    assert feed_all(ttp, series(301, 360, map=60.0)) == []
    assert summary(feed_all(ttp, [reading(361, map=60.0)])) == [
        ("map.below_target", "cleared", 361.0)
    ]


def test_oliguria_trial_expires_after_two_hours_of_event_time(ttp: Evaluator) -> None:
    # map_trial_until set 3 h ahead, but the trial lasts at most 2 h from its first reading:
    # MAP 70 (inside 50–65? no: above) … the trial band is 75–80, so 70 is below target.
    # t   0 ……… 300 ………………………… 7199 | 7200 ……… 7260
    #     trial  raised below_target   | trial over: band 50–65, 70 is not below → cleared
    #     starts                       |                           after clear_s = 60 s
    ttp.feed(context(protocol="tartare2s-ttp", map_trial_until=T0 + 3 * 3600))
    alerts = feed_all(ttp, series(0, 300, map=70.0))
    assert summary(alerts) == [("map.below_target", "raised", 300.0)]
    assert alerts[0].target["band"] == "map_trial"
    assert alerts[0].target["map_min"] == 75.0
    assert feed_all(ttp, series(301, 7259, map=70.0)) == []
    assert summary(feed_all(ttp, [reading(7260, map=70.0)])) == [
        ("map.below_target", "cleared", 7260.0)
    ]
    status = ttp.status("w1", "b07")
    assert status is not None
    assert status.targets["map.below_target"]["band"] == "standard"
    band = ttp.band_in_force("w1", "b07", T0 + 7199)
    assert band is not None
    assert (band.low, band.high) == (75.0, 80.0)
    assert ttp.band_in_force("w1", "b07", T0 + 7200) == ttp.default_protocol.bands.standard


def test_oliguria_trial_ends_at_map_trial_until_when_that_is_sooner(sc: Evaluator) -> None:
    # SC: trial band 85–90 until t=600, then the standard band 65–75.
    # MAP 80: below 85 during the trial → raised at 300; in band after 600 → cleared at 660
    sc.feed(context(protocol="tartare2s-sc", map_trial_until=T0 + 600))
    alerts = feed_all(sc, series(0, 700, map=80.0))
    assert [(a.rule, a.event) for a in alerts if a.rule.startswith("map.")] == [
        ("map.below_target", "raised"),
        ("map.below_target", "cleared"),
    ]
    cleared = next(a for a in alerts if a.event == "cleared")
    assert seconds(cleared.at) == 660.0


def test_above_target_needs_perfusion_targets_met(ttp: Evaluator) -> None:
    # MAP 70 (above 50–65) for 15 min with CRT 3.5 (perfusion inadequate): nothing about MAP.
    # Then CRT 2.0 (perfusion met) at t=901: above_target counts from 901 → raised at 1801
    ttp.feed(reading(0, crt=3.5))
    alerts = feed_all(ttp, series(1, 900, map=70.0))
    assert [a for a in alerts if a.rule == "map.above_target"] == []
    ttp.feed(reading(900.5, crt=2.0))
    alerts = feed_all(ttp, series(901, 1801, map=70.0))
    above = [a for a in alerts if a.rule == "map.above_target"]
    assert [(a.event, seconds(a.at), a.priority, a.kind) for a in above] == [
        ("raised", 1801.0, "low", "advisory")
    ]


# -- latest-measurement targets ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("signal", "abnormal", "normal", "rule"),
    [
        ("crt", 3.0, 2.9, "crt.abnormal"),
        ("lactate", 2.0, 1.9, "lactate.high"),
        ("mottling", 1.0, 0.0, "mottling.present"),
        ("urine_output", 0.49, 0.5, "urine.low"),
    ],
)
def test_latest_measurement_boundaries(
    ttp: Evaluator, signal: str, abnormal: float, normal: float, rule: str
) -> None:
    # value  normal | abnormal (the boundary value) | normal
    # t      0      | 3600                          | 7200
    #        —        raised at once                  cleared at once
    assert [a for a in ttp.feed(reading(0, **{signal: normal})) if a.rule == rule] == []
    raised = [a for a in ttp.feed(reading(3600, **{signal: abnormal})) if a.rule == rule]
    assert [(a.event, a.priority) for a in raised] == [("raised", "medium")]
    cleared = [a for a in ttp.feed(reading(7200, **{signal: normal})) if a.rule == rule]
    assert [a.event for a in cleared] == ["cleared"]


def test_oliguria_below_03_suggests_the_map_trial(ttp: Evaluator) -> None:
    alerts = ttp.feed(reading(0, urine_output=0.29))
    hint = [a for a in alerts if a.rule == "urine.map_trial"]
    assert [(a.priority, a.kind) for a in hint] == [("low", "advisory")]
    assert hint[0].target["trial_map_min"] == 75.0


def test_no_trial_hint_while_the_trial_runs(ttp: Evaluator) -> None:
    ttp.feed(context(protocol="tartare2s-ttp", map_trial_until=T0 + 3600))
    ttp.feed(reading(0, map=77.0))
    alerts = ttp.feed(reading(1, urine_output=0.2))
    assert [a.rule for a in alerts if a.rule == "urine.map_trial"] == []


def test_perfusion_inadequate_lists_the_failing_components(ttp: Evaluator) -> None:
    # t=0 CRT 3.5 → crt.abnormal + perfusion.inadequate [crt]
    # t=1 lactate 3 → lactate.high; perfusion updated [crt, lactate]
    # t=2 CRT 2, t=3 lactate 1 → updated [lactate], then cleared
    first = ttp.feed(reading(0, crt=3.5))
    assert [(a.rule, a.event) for a in first] == [
        ("crt.abnormal", "raised"),
        ("perfusion.inadequate", "raised"),
    ]
    assert first[1].observed == {"failing": ["crt.abnormal"]}
    second = ttp.feed(reading(1, lactate=3.0))
    assert [(a.rule, a.event, a.observed.get("failing")) for a in second] == [
        ("lactate.high", "raised", None),
        ("perfusion.inadequate", "updated", ["crt.abnormal", "lactate.high"]),
    ]
    ttp.feed(reading(2, crt=2.0))
    last = ttp.feed(reading(3, lactate=1.0))
    assert [(a.rule, a.event) for a in last] == [
        ("lactate.high", "cleared"),
        ("perfusion.inadequate", "cleared"),
    ]


# -- skin temperature -------------------------------------------------------------------------


def _skin_series(start: int, stop: int, step: int = 5, **values: float) -> list:  # type: ignore[type-arg]
    return [reading(float(t), **values) for t in range(start, stop + 1, step)]


def test_core_skin_gradient_of_7_sustained_ten_minutes(ttp: Evaluator) -> None:
    # core 37.0, skin 30.0 → gradient 7.0 (≥ 7) every 5 s
    # t   0 5 … 595 | 600
    #     onset     | raised (600 s)       — with 595 as the last sample: nothing
    events = _skin_series(0, 595, core_temp=37.0, skin_temp=30.0)
    assert [a for a in feed_all(ttp, events) if a.rule == "skin.cold"] == []
    alerts = list(ttp.feed(reading(600, core_temp=37.0, skin_temp=30.0)))
    cold = [a for a in alerts if a.rule == "skin.cold"]
    assert [(a.event, a.observed["mode"]) for a in cold] == [("raised", "gradient")]
    assert cold[0].observed["core_skin_gradient"] == 7.0


def test_skin_gradient_hysteresis_and_clear_delay(ttp: Evaluator) -> None:
    # raised at 600 with gradient 7; then gradient 6.6 (< 7 but not < 6.5): stays;
    # gradient 6.4 from 700: clear run 700 … 820 (120 s) → cleared at 820
    feed_all(ttp, _skin_series(0, 600, core_temp=37.0, skin_temp=30.0))
    assert feed_all(ttp, _skin_series(605, 695, core_temp=36.6, skin_temp=30.0)) == []
    alerts = feed_all(ttp, _skin_series(700, 820, core_temp=36.4, skin_temp=30.0))
    assert [(a.rule, a.event, seconds(a.at)) for a in alerts if a.rule == "skin.cold"] == [
        ("skin.cold", "cleared", 820.0)
    ]


def test_forearm_fingertip_gradient_of_4(ttp: Evaluator) -> None:
    events = _skin_series(0, 600, skin_temp_ref=34.0, skin_temp=30.0)
    cold = [a for a in feed_all(ttp, events) if a.rule == "skin.cold"]
    assert [(a.event, a.observed["forearm_fingertip_gradient"]) for a in cold] == [("raised", 4.0)]


def test_absolute_fallback_without_reference_probe(ttp: Evaluator) -> None:
    # no core or forearm probe: skin 29.9 (< 30) for 600 s → raised; skin 30.0 → nothing
    cold = [a for a in feed_all(ttp, _skin_series(0, 600, skin_temp=29.9)) if a.rule == "skin.cold"]
    assert [(a.event, a.observed["mode"]) for a in cold] == [("raised", "absolute")]
    other = Evaluator()
    assert list(feed_all(other, _skin_series(0, 600, skin_temp=30.0))) == []


# -- technical rules --------------------------------------------------------------------------


def test_signal_lost_compares_the_tick_with_the_arrival_time(ttp: Evaluator) -> None:
    # MAP at ts = T0 but arrival = T0 + 1000 (a recording replayed late): the clock counts
    # from the arrival.  tick 1029.9 → nothing; tick 1030 → signal.lost; MAP → cleared
    ttp.feed(reading(0, map=70.0, arrival=T0 + 1000.0))
    assert ttp.advance(T0 + 1029.9) == []
    lost = ttp.advance(T0 + 1030.0)
    assert [(a.rule, a.kind, a.priority) for a in lost] == [("signal.lost", "technical", "medium")]
    assert seconds(lost[0].onset) == 1030.0
    assert ttp.advance(T0 + 1031.0) == []  # raised once
    cleared = ttp.feed(reading(1, map=70.0, arrival=T0 + 1040.0))
    assert [(a.rule, a.event) for a in cleared] == [("signal.lost", "cleared")]


def test_artefacts_dominating_the_last_minute(ttp: Evaluator) -> None:
    # t   0 … 29 clean MAP | 30 … 65 implausible (artefacts) | 66 … 140 clean
    #     window (0, 60]: at 59 it is 30 artefacts of 60 (not more than half);
    #     at 60: 31 artefacts of 60 → raised; cleared once clean readings dominate again
    from streamproc.events import ArtefactReading

    feed_all(ttp, series(0, 29, map=70.0))
    events = [ArtefactReading("w1", "b07", T0 + t, ("map",)) for t in range(30, 66)]
    alerts = feed_all(ttp, events)
    assert [(a.rule, a.event, seconds(a.at)) for a in alerts] == [
        ("signal.artefact", "raised", 60.0)
    ]
    assert alerts[0].observed == {"artefacts": 31, "readings": 60, "signals": ["map"]}
    alerts = feed_all(ttp, series(66, 140, map=70.0))
    assert [(a.rule, a.event) for a in alerts if a.rule == "signal.artefact"] == [
        ("signal.artefact", "cleared")
    ]


def test_device_offline(ttp: Evaluator) -> None:
    from streamproc.events import Reading

    ttp.feed(Reading("w1", "b07", T0, {"map": 70.0}, device="mon-1", seq=1))
    assert [a.rule for a in ttp.advance(T0 + 59.0) if a.rule == "device.offline"] == []
    offline = [a for a in ttp.advance(T0 + 60.0) if a.rule == "device.offline"]
    assert [(a.event, a.observed) for a in offline] == [("raised", {"devices": ["mon-1"]})]
    back = ttp.feed(Reading("w1", "b07", T0 + 61, {"map": 70.0}, device="mon-1", seq=2))
    assert [(a.rule, a.event) for a in back if a.rule == "device.offline"] == [
        ("device.offline", "cleared")
    ]


def test_overdue_assessments_hourly_then_every_two_hours(ttp: Evaluator) -> None:
    # protocol_started at T0; CRT charted at t=0.
    # first 24 h: due one hour later → overdue at 3600 (not at 3599)
    # lactate is every 2 h throughout → overdue at 7200
    # after 24 h: a CRT at 90000 is next due at 90000 + 7200
    ttp.feed(context(protocol="tartare2s-ttp", protocol_started=T0))
    ttp.feed(reading(0, crt=2.0, lactate=1.0, mottling=0.0, urine_output=1.0))
    assert ttp.advance(T0 + 3599) == []
    overdue = {a.rule for a in ttp.advance(T0 + 3600)}
    assert overdue == {
        "assessment.overdue.crt",
        "assessment.overdue.mottling",
        "assessment.overdue.urine_output",
    }
    assert {a.rule for a in ttp.advance(T0 + 7200) if a.event == "raised"} == {
        "assessment.overdue.lactate"
    }
    cleared = ttp.feed(reading(7300, crt=2.0))
    assert [(a.rule, a.event) for a in cleared] == [("assessment.overdue.crt", "cleared")]
    ttp.feed(reading(90000, crt=2.0))
    assert [a for a in ttp.advance(T0 + 90000 + 7199) if a.rule == "assessment.overdue.crt"] == []
    late = [a for a in ttp.advance(T0 + 90000 + 7200) if a.rule == "assessment.overdue.crt"]
    assert [a.event for a in late] == ["raised"]


def test_updated_only_when_observed_values_move_materially(ttp: Evaluator) -> None:
    # MAP 45 … 45 (raised at 60, mean 45) | 44 … 44: mean and min move < 10 % → no update
    #                                     | 38 …: the minimum drops ≥ 10 % → updated
    _raised_floor(ttp)
    assert feed_all(ttp, series(61, 120, map=44.0)) == []
    updated = feed_all(ttp, [reading(121, map=38.0)])
    assert [(a.event, a.observed["map_min_60s"]) for a in updated] == [("updated", 38.0)]
    assert feed_all(ttp, [reading(122, map=38.5)]) == []
