"""Evaluator: order and rejection, context, acknowledgement, status, snapshots, ingest."""

from __future__ import annotations

import json

import pytest
from bedside import BED, T0, WARD, context, feed_all, reading, series

from streamproc.alerts import alert_id
from streamproc.errors import REJECTION_REASONS, ProtocolError, RejectedReading
from streamproc.evaluator import Evaluator
from streamproc.events import Reading, WaveformChunk
from streamproc.ingest import ingest
from streamproc.timestamps import format_ts

VITALS = f"icu/{WARD}/{BED}/vitals"


def _reason(evaluator: Evaluator, event: Reading) -> str:
    with pytest.raises(RejectedReading) as caught:
        evaluator.feed(event)
    return caught.value.reason


# -- late, future, duplicate ------------------------------------------------------------------


def test_late_reading_per_signal() -> None:
    # map    t=10 ✓   t=5 ✗ late   t=10 ✗ late (equal: already judged)   t=11 ✓
    # skin   t=5 ✓ (another signal has its own order)
    evaluator = Evaluator()
    evaluator.feed(reading(10, map=70.0))
    assert _reason(evaluator, reading(5, map=70.0)) == "late"
    assert _reason(evaluator, reading(10, map=71.0)) == "late"
    evaluator.feed(reading(5, skin_temp=33.0))
    evaluator.feed(reading(11, map=70.0))


def test_one_late_signal_rejects_the_whole_message() -> None:
    evaluator = Evaluator()
    evaluator.feed(reading(10, map=70.0))
    assert _reason(evaluator, reading(9, map=70.0, skin_temp=33.0)) == "late"
    status = evaluator.status(WARD, BED)
    assert status is not None
    assert "skin_temp" not in status.latest


def test_future_reading_only_when_arrival_is_known() -> None:
    # arrival 100, skew 5 s: ts 105 ✓ (exactly the skew), ts 105.001 ✗ future
    evaluator = Evaluator(future_skew=5.0)
    evaluator.feed(reading(105, map=70.0, arrival=T0 + 100))
    assert _reason(evaluator, reading(105.001 + 1, map=70.0, arrival=T0 + 101)) == "future"
    evaluator.feed(reading(10_000, map=70.0))  # offline: no arrival, never "future"


def test_duplicate_device_seq() -> None:
    evaluator = Evaluator()
    first = Reading(WARD, BED, T0, {"map": 70.0}, device="mon-1", seq=7)
    evaluator.feed(first)
    again = Reading(WARD, BED, T0, {"map": 70.0}, device="mon-1", seq=7)
    assert _reason(evaluator, again) == "duplicate"
    evaluator.feed(Reading(WARD, BED, T0 + 1, {"map": 70.0}, device="mon-2", seq=7))
    evaluator.feed(Reading(WARD, BED, T0 + 2, {"map": 70.0}, device="mon-1", seq=8))
    # an out-of-order sequence number inside the window, with a new time, is new
    evaluator.feed(Reading(WARD, BED, T0 + 3, {"skin_temp": 33.0}, device="mon-1", seq=5))
    # seq 5 again at a time not newer than the device's newest: a redelivery (the same
    # number at a newer time would be the device restarting its numbering, H2)
    assert _reason(evaluator, Reading(WARD, BED, T0 + 3, {"cvp": 8.0}, device="mon-1", seq=5)) == (
        "duplicate"
    )


def test_device_restarting_its_sequence_is_not_a_duplicate() -> None:
    evaluator = Evaluator()
    evaluator.feed(Reading(WARD, BED, T0, {"map": 70.0}, device="mon-1", seq=50_000))
    evaluator.feed(Reading(WARD, BED, T0 + 1, {"map": 70.0}, device="mon-1", seq=0))


# -- every rejection reason through ingest -----------------------------------------------------


def _vitals(**fields: object) -> bytes:
    return json.dumps({"ts": T0, "values": {"map": 70.0}, **fields}).encode()


CASES: dict[str, tuple[str, bytes]] = {
    "too_large": (VITALS, b"{" + b" " * 70_000 + b"}"),
    "topic": ("icu/w1/b07/unknown", _vitals()),
    "malformed_json": (VITALS, b"{not json"),
    "schema": (VITALS, json.dumps({"ts": "2026-11-25T12:00:00", "values": {"map": 1}}).encode()),
    "non_finite": (VITALS, b'{"ts": 0, "values": {"map": NaN}}'),
    "unit": (VITALS, _vitals(units={"map": "bar"})),
    "implausible": (VITALS, json.dumps({"ts": T0, "values": {"map": 300.0}}).encode()),
    "late": (VITALS, json.dumps({"ts": T0 - 10, "values": {"map": 70.0}}).encode()),
    "future": (VITALS, json.dumps({"ts": T0 + 60, "values": {"map": 70.0}}).encode()),
    "duplicate": (VITALS, _vitals(device="mon-1", seq=1)),
}


def test_the_cases_cover_every_rejection_reason() -> None:
    assert set(CASES) == set(REJECTION_REASONS)


@pytest.mark.parametrize("reason", sorted(CASES))
def test_every_rejection_reason_through_ingest(reason: str) -> None:
    evaluator = Evaluator()
    seed = ingest(evaluator, VITALS, _vitals(device="mon-1", seq=1), received=T0)
    assert seed.rejection is None
    topic, payload = CASES[reason]
    outcome = ingest(evaluator, topic, payload, received=T0)
    assert outcome.rejection is not None
    assert outcome.rejection.reason == reason
    assert outcome.rejection.detail
    assert outcome.alerts == []


def test_ingest_feeds_implausible_readings_as_artefacts() -> None:
    evaluator = Evaluator()
    alerts = []
    for t in range(60):
        payload = json.dumps({"ts": T0 + t, "values": {"map": 300.0}}).encode()
        outcome = ingest(evaluator, VITALS, payload, received=None)
        assert outcome.rejection is not None
        assert outcome.rejection.reason == "implausible"
        alerts += outcome.alerts
    assert [(a.rule, a.event) for a in alerts] == [("signal.artefact", "raised")]


def test_ingest_reports_unknown_signals() -> None:
    payload = json.dumps({"ts": T0, "values": {"map": 70.0, "etco2": 35}}).encode()
    outcome = ingest(Evaluator(), VITALS, payload, received=None)
    assert isinstance(outcome.event, Reading)
    assert outcome.event.unknown == ("etco2",)


# -- context, discharge, status ----------------------------------------------------------------


def test_bed_without_context_uses_the_default_protocol_and_says_so() -> None:
    evaluator = Evaluator(default_protocol="tartare2s-sc")
    evaluator.feed(reading(0, map=70.0))
    status = evaluator.status(WARD, BED)
    assert status is not None
    assert (status.context, status.protocol) == ("default", "tartare2s-sc")
    assert status.targets["map.below_target"]["map_min"] == 65.0
    assert status.latest["map"].value == 70.0
    evaluator.feed(context(protocol="tartare2s-ttp", patient="p-1"))
    status = evaluator.status(WARD, BED)
    assert status is not None
    assert (status.context, status.protocol, status.patient) == (
        "configured",
        "tartare2s-ttp",
        "p-1",
    )


def test_empty_context_discharges_the_bed() -> None:
    from streamproc.events import ContextUpdate

    evaluator = Evaluator()
    alerts = feed_all(evaluator, series(0, 60, map=45.0))
    assert [a.event for a in alerts] == ["raised"]
    cleared = evaluator.feed(ContextUpdate(WARD, BED, None))
    assert [(a.rule, a.event, a.state) for a in cleared] == [
        ("map.below_floor", "cleared", "cleared")
    ]
    assert evaluator.status(WARD, BED) is None
    assert evaluator.beds() == []


def test_unknown_protocol_in_context_is_a_schema_rejection() -> None:
    with pytest.raises(RejectedReading) as caught:
        Evaluator().feed(context(protocol="no-such-protocol"))
    assert caught.value.reason == "schema"
    assert "tartare2s-ttp" in caught.value.detail


def test_switching_protocol_clears_alerts_the_new_protocol_lacks() -> None:
    evaluator = Evaluator()
    evaluator.feed(reading(0, crt=3.5))
    cleared = evaluator.feed(context(protocol="tartare2s-sc"))
    assert sorted((a.rule, a.event) for a in cleared) == [
        ("crt.abnormal", "cleared"),
        ("perfusion.inadequate", "cleared"),
    ]


def test_unknown_default_protocol_fails_early() -> None:
    with pytest.raises(ProtocolError, match="tartare2s-ttp"):
        Evaluator(default_protocol="nope")


def test_alert_id_is_derived_from_ward_bed_rule_and_onset() -> None:
    alerts = feed_all(Evaluator(), series(0, 60, map=45.0))
    expected = alert_id(WARD, BED, "map.below_floor", T0)
    assert alerts[0].alert_id == expected
    assert len(expected) == 16
    assert int(expected, 16) >= 0
    assert alert_id(WARD, BED, "map.below_floor", T0 + 1) != expected
    assert alerts[0].onset == format_ts(T0)


def test_seq_counts_alert_events_per_bed() -> None:
    evaluator = Evaluator()
    first = evaluator.feed(reading(0, crt=3.5))
    other = evaluator.feed(Reading(WARD, "b08", T0, {"crt": 3.5}))
    assert [a.seq for a in first] == [1, 2]
    assert [a.seq for a in other] == [1, 2]


def test_active_alerts_by_priority() -> None:
    evaluator = Evaluator()
    feed_all(evaluator, series(0, 60, map=45.0))
    evaluator.feed(reading(61, crt=3.5))
    assert evaluator.active_alerts_by_priority() == {"high": 1, "medium": 2, "low": 0}


def test_waveform_chunks_are_only_counted_until_waveform_derivation_lands() -> None:
    evaluator = Evaluator()
    chunk = WaveformChunk(WARD, BED, T0, 125.0, (40.0,) * 125)
    assert evaluator.feed(chunk) == []
    assert evaluator.waveform_chunks == 1


def test_snapshot_is_plain_json_and_restores_state() -> None:
    evaluator = Evaluator()
    feed_all(evaluator, series(0, 60, map=45.0))
    data = json.loads(json.dumps(evaluator.snapshot()))
    restored = Evaluator.restore(data)
    assert restored.snapshot() == evaluator.snapshot()
    assert restored.status(WARD, BED) == evaluator.status(WARD, BED)
    # a restored evaluator neither re-raises nor forgets the ongoing alert
    assert feed_all(restored, series(61, 80, map=45.0)) == []
    assert restored.active_alerts_by_priority()["high"] == 1


def test_restore_rejects_another_snapshot_version() -> None:
    with pytest.raises(ProtocolError, match="version"):
        Evaluator.restore({"version": 99})
