"""Hostile or broken input found in review: a clear rejection, never a crash or a lost alert."""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path

import pytest
from bedside import BED, T0, WARD

from streamproc.checkpoint import CheckpointStore
from streamproc.errors import ProtocolError
from streamproc.evaluator import Evaluator
from streamproc.events import BedContext, ContextUpdate, Reading
from streamproc.ingest import ingest
from streamproc.protocol import parse_protocol
from streamproc.service import _evaluator as service_evaluator
from streamproc.settings import Settings
from streamproc.timestamps import format_ts
from streamproc.windows import DedupWindow

VITALS = f"icu/{WARD}/{BED}/vitals"
CONTEXT = f"icu/{WARD}/{BED}/context"


def _send(evaluator: Evaluator, topic: str, payload: object, received: float | None = T0):
    return ingest(evaluator, topic, json.dumps(payload).encode(), received=received)


# -- H1: times no calendar can show, huge sequence numbers, bugs in the evaluator -------------


@pytest.mark.parametrize("ts", [-1e300, -1e18, -1e15, -2.3e9, 2.6e11, 1.7e12])
def test_a_time_outside_the_window_is_a_schema_rejection(ts: float) -> None:
    evaluator = Evaluator()
    _send(evaluator, VITALS, {"ts": T0, "values": {"map": 70.0}})
    outcome = _send(evaluator, VITALS, {"ts": ts, "values": {"map": 70.0}})
    assert outcome.rejection is not None
    assert outcome.rejection.reason == "schema"
    assert "ts" in outcome.rejection.detail
    assert evaluator.status(WARD, BED) is not None  # the bed still has a status


def test_epoch_milliseconds_are_named_in_the_detail() -> None:
    outcome = _send(Evaluator(), VITALS, {"ts": T0 * 1000, "values": {"map": 70.0}}, None)
    assert outcome.rejection is not None
    assert "milliseconds" in outcome.rejection.detail


@pytest.mark.parametrize("field", ["protocol_started", "map_trial_until"])
def test_a_context_time_outside_the_window_is_rejected(field: str) -> None:
    evaluator = Evaluator()
    outcome = _send(evaluator, CONTEXT, {field: -1e14})
    assert outcome.rejection is not None
    assert outcome.rejection.reason == "schema"
    assert evaluator.beds() == []


def test_a_waveform_t0_outside_the_window_is_rejected() -> None:
    topic = f"icu/{WARD}/{BED}/waveform/abp"
    outcome = _send(Evaluator(), topic, {"t0": -1e18, "fs": 125.0, "samples": [80.0]})
    assert outcome.rejection is not None
    assert outcome.rejection.reason == "schema"


def test_a_sequence_number_over_64_bits_is_rejected() -> None:
    payload = {"ts": T0, "device": "d", "seq": 2**63, "values": {"map": 70.0}}
    outcome = _send(Evaluator(), VITALS, payload)
    assert outcome.rejection is not None
    assert outcome.rejection.reason == "schema"


def test_a_huge_jump_in_sequence_numbers_costs_no_memory() -> None:
    evaluator = Evaluator()
    for offset, seq in ((-10, 0), (-9, 2**62)):
        payload = {"ts": T0 + offset, "device": "d", "seq": seq, "values": {"map": 70.0}}
        assert _send(evaluator, VITALS, payload).rejection is None
    window = DedupWindow(1024)
    window.record(0, T0)
    window.record(2**62, T0 + 1)
    assert window.mask == 1
    assert (window.seen(2**62), window.seen(0)) == (True, False)


def test_format_ts_never_raises() -> None:
    for epoch in (-1e18, 1e300, float("nan"), float("inf")):
        assert isinstance(format_ts(epoch), str)
    assert format_ts(T0) == "2026-11-25T12:00:00.000Z"


def test_status_and_advance_survive_times_that_bypass_the_codec() -> None:
    evaluator = Evaluator()
    evaluator.feed(ContextUpdate(WARD, BED, BedContext(protocol_started=-1e14)))
    evaluator.feed(Reading(WARD, BED, -1e15, {"map": 70.0}))
    assert evaluator.status(WARD, BED) is not None
    evaluator.advance(T0)


class _Broken(Evaluator):
    """An evaluator with a bug in one bed's evaluation."""

    def feed(self, event):  # type: ignore[no-untyped-def]
        if getattr(event, "bed", None) == "broken":
            raise IndexError("a bug")
        return super().feed(event)


def test_a_bug_in_the_evaluator_becomes_a_counted_rejection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    evaluator = _Broken()
    payload = {"ts": T0, "values": {"map": 40.0}}
    with caplog.at_level(logging.ERROR, logger="streamproc.evaluator"):
        for _ in range(2):
            outcome = _send(evaluator, f"icu/{WARD}/broken/vitals", payload)
            assert outcome.rejection is not None
            assert outcome.rejection.reason == "schema"
            assert "IndexError" in outcome.rejection.detail
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1  # once, then one line per message
    assert len(caplog.records) == 2
    assert _send(evaluator, VITALS, payload).rejection is None  # the next message goes on


def test_a_bug_in_one_beds_tick_does_not_stop_the_others(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    evaluator = Evaluator()
    for bed in ("a-broken", "b-fine"):
        evaluator.feed(Reading(WARD, bed, T0, {"map": 70.0}, device="mon", arrival=T0))
    tick = Evaluator._tick

    def broken_tick(self: Evaluator, bed, now, out) -> None:  # type: ignore[no-untyped-def]
        if bed.bed == "a-broken":
            raise ValueError("year 57871 is out of range")
        tick(self, bed, now, out)

    monkeypatch.setattr(Evaluator, "_tick", broken_tick)
    with caplog.at_level(logging.ERROR, logger="streamproc.evaluator"):
        alerts = evaluator.advance(T0 + 3600)
    assert {(a.bed, a.rule) for a in alerts} >= {("b-fine", "signal.lost")}
    assert any("a-broken" in r.getMessage() for r in caplog.records)


# -- H2: a monitor reboot restarts its sequence numbers ----------------------------------------


def test_a_monitor_reboot_is_not_a_duplicate() -> None:
    # seq 1..600 at t=1..600 (MAP 70); reboot; seq 1..300 at t=701..1000 (MAP 40)
    evaluator = Evaluator()

    def send(t: float, seq: int, map_: float):  # type: ignore[no-untyped-def]
        payload = {"ts": T0 + t, "device": "mon-07", "seq": seq, "values": {"map": map_}}
        return _send(evaluator, VITALS, payload, None)

    for i in range(1, 601):
        assert send(i, i, 70.0).rejection is None
    after = [send(700 + i, i, 40.0) for i in range(1, 301)]
    assert [o.rejection for o in after if o.rejection is not None] == []
    assert ("map.below_floor", "raised") in [(a.rule, a.event) for o in after for a in o.alerts]
    # a true redelivery carries its old time: still a duplicate
    redelivered = send(700 + 300, 300, 40.0)
    assert redelivered.rejection is not None
    assert redelivered.rejection.reason == "duplicate"
    redelivered = send(600, 600, 70.0)  # from before the reboot: late on its time
    assert redelivered.rejection is not None
    assert redelivered.rejection.reason == "late"


def test_the_dedup_window_remembers_the_newest_time_in_snapshots() -> None:
    window = DedupWindow(8)
    window.record(3, T0)
    restored = DedupWindow.restore(json.loads(json.dumps(window.snapshot())))
    assert (restored.seen(3), restored.restarted(T0), restored.restarted(T0 + 1)) == (
        True,
        False,
        True,
    )
    old = DedupWindow.restore([8, 3, "1"])  # a snapshot from before: restores
    assert old.seen(3)


# -- M2: one message with several signals ----------------------------------------------------


@pytest.mark.parametrize("order", [("crt", "lactate"), ("lactate", "crt")])
def test_the_order_of_signals_in_a_message_does_not_matter(order: tuple[str, str]) -> None:
    # t=0 crt 4.0 raises crt.abnormal and perfusion.inadequate; t=60 crt 2.0 + lactate 3.0:
    # crt clears, lactate raises, perfusion stays raised on lactate alone, whatever the order
    evaluator = Evaluator()
    _send(evaluator, VITALS, {"ts": T0, "values": {"crt": 4.0}}, None)
    both = {"crt": 2.0, "lactate": 3.0}
    outcome = _send(evaluator, VITALS, {"ts": T0 + 60, "values": {k: both[k] for k in order}}, None)
    events = [(a.rule, a.event, a.observed.get("failing")) for a in outcome.alerts]
    assert events == [
        ("crt.abnormal", "cleared", None),
        ("lactate.high", "raised", None),
        ("perfusion.inadequate", "updated", ["lactate.high"]),
    ]
    status = evaluator.status(WARD, BED)
    assert status is not None
    assert sorted(a.rule for a in status.active_alerts) == ["lactate.high", "perfusion.inadequate"]


# -- M3: escalation runs on the tick clock ----------------------------------------------------


def test_a_backlog_alert_escalates_after_the_delay_on_the_tick_clock() -> None:
    # a reading an hour old arrives at T0 (a backlog): lactate.high raised at T0 on the
    # tick clock; it escalates after_s later, not at the first tick
    evaluator = Evaluator()
    after = evaluator.default_protocol.escalation.after_s
    raised = _send(evaluator, VITALS, {"ts": T0 - 3600, "values": {"lactate": 3.1}}, T0)
    assert ("lactate.high", "medium") in [(a.rule, a.priority) for a in raised.alerts]

    def escalated(now: float) -> list[str]:
        return [a.rule for a in evaluator.advance(now) if a.event == "escalated"]

    assert "lactate.high" not in escalated(T0 + 1)
    assert "lactate.high" not in escalated(T0 + after - 1)
    assert "lactate.high" in escalated(T0 + after)


def test_offline_escalation_still_counts_from_event_time() -> None:
    evaluator = Evaluator()
    after = evaluator.default_protocol.escalation.after_s
    _send(evaluator, VITALS, {"ts": T0, "values": {"lactate": 3.1}}, None)
    early = [(a.rule, a.event) for a in evaluator.advance(T0 + after - 1)]
    assert ("lactate.high", "escalated") not in early
    due = [(a.rule, a.event) for a in evaluator.advance(T0 + after)]
    assert ("lactate.high", "escalated") in due


# -- M7: beds are bounded, and a rejected reading creates none -------------------------------


def test_a_future_reading_or_chunk_creates_no_bed() -> None:
    evaluator = Evaluator()
    _send(evaluator, VITALS, {"ts": T0 + 600, "values": {"map": 70.0}})
    chunk = {"t0": T0 + 600, "fs": 125.0, "samples": [80.0]}
    outcome = _send(evaluator, f"icu/{WARD}/{BED}/waveform/abp", chunk)
    assert outcome.rejection is not None
    assert outcome.rejection.reason == "future"
    assert evaluator.beds() == []


def test_beds_beyond_the_limit_are_rejected_until_one_is_discharged() -> None:
    evaluator = Evaluator(max_beds=2)
    reading = {"ts": T0, "values": {"map": 70.0}}
    for bed in ("b1", "b2"):
        assert _send(evaluator, f"icu/{WARD}/{bed}/vitals", reading).rejection is None
    third = _send(evaluator, f"icu/{WARD}/b3/vitals", reading)
    assert third.rejection is not None
    assert third.rejection.reason == "topic"
    assert "max_beds" in third.rejection.detail
    assert _send(evaluator, f"icu/{WARD}/b3/context", {"patient": "p"}).rejection is not None
    assert len(evaluator.beds()) == 2
    later = {"ts": T0 + 1, "values": {"map": 70.0}}
    assert _send(evaluator, f"icu/{WARD}/b1/vitals", later).rejection is None  # known beds go on
    ingest(evaluator, f"icu/{WARD}/b2/context", b"", received=T0)  # discharge b2
    assert _send(evaluator, f"icu/{WARD}/b3/vitals", later).rejection is None
    restored = Evaluator.restore(evaluator.snapshot(), max_beds=2)
    assert _send(restored, f"icu/{WARD}/b4/vitals", later).rejection is not None


# -- M5: skin.cold needs a fresh skin temperature -----------------------------------------------


def _skin_cold_events(skin_every: int | None) -> list[tuple[str, str]]:
    # skin 29 °C at t=0 (core − skin 8 °C ≥ 7), core 37 °C every 5 s for 1000 s; skin again
    # every `skin_every` s, or never (the probe fell off)
    evaluator = Evaluator()
    events = []
    _send(evaluator, VITALS, {"ts": T0, "values": {"skin_temp": 29.0}}, None)
    for t in range(5, 1000, 5):
        values = {"core_temp": 37.0}
        if skin_every is not None and t % skin_every == 0:
            values["skin_temp"] = 29.0
        outcome = _send(evaluator, VITALS, {"ts": T0 + t, "values": values}, None)
        events += [(a.rule, a.event) for a in outcome.alerts]
    return [e for e in events if e[0] == "skin.cold"]


def test_skin_cold_is_not_judged_on_a_stale_skin_temperature() -> None:
    assert _skin_cold_events(None) == []


def test_skin_cold_with_a_fresh_skin_temperature_still_raises() -> None:
    assert _skin_cold_events(10) == [("skin.cold", "raised")]


# -- M8: a restored checkpoint follows the configured default protocol -------------------------


def test_a_restored_checkpoint_follows_the_configured_default_protocol(tmp_path: Path) -> None:
    # b1 has no context (default protocol), b2 names tartare2s-ttp in its context; the
    # service restarts configured with tartare2s-sc as the default
    before = Evaluator(default_protocol="tartare2s-ttp")
    before.feed(Reading(WARD, "b1", T0, {"map": 70.0}))
    before.feed(ContextUpdate(WARD, "b2", BedContext(protocol="tartare2s-ttp")))
    store = CheckpointStore(tmp_path / "checkpoint.json")
    store.save(before.snapshot())
    settings = Settings(protocol="tartare2s-sc", state_dir=tmp_path)
    after = service_evaluator(settings, store)
    assert after.default_protocol.name == "tartare2s-sc"
    protocols = {}
    for bed in ("b1", "b2"):
        status = after.status(WARD, bed)
        assert status is not None
        protocols[bed] = status.protocol
    assert protocols == {"b1": "tartare2s-sc", "b2": "tartare2s-ttp"}
    after.feed(Reading(WARD, "b3", T0, {"map": 70.0}))
    status = after.status(WARD, "b3")
    assert status is not None
    assert status.protocol == "tartare2s-sc"


# -- M1: a waveform chunk's rate and span are bounded ----------------------------------------


@pytest.mark.parametrize(
    ("fs", "samples", "words"),
    [(2 / 1e7, 2, "fs"), (0.5, 2, "fs"), (5000.0, 2, "fs"), (1.0, 601, "spans")],
)
def test_a_waveform_chunk_with_an_absurd_rate_or_span_is_rejected(
    fs: float, samples: int, words: str
) -> None:
    evaluator = Evaluator()
    chunk = {"t0": T0 - 700, "fs": fs, "samples": [80.0] * samples}
    outcome = _send(evaluator, f"icu/{WARD}/{BED}/waveform/abp", chunk)
    assert outcome.rejection is not None
    assert outcome.rejection.reason == "schema"
    assert words in outcome.rejection.detail
    assert evaluator.waveform_chunks == 0


def test_a_waveform_chunk_at_the_limits_is_taken() -> None:
    evaluator = Evaluator()
    for t0, fs, n in ((T0 - 700, 1.0, 600), (T0 - 50, 2000.0, 2000)):
        chunk = {"t0": t0, "fs": fs, "samples": [80.0] * n}
        assert _send(evaluator, f"icu/{WARD}/{BED}/waveform/abp", chunk).rejection is None


# -- L3: an artefact window shorter than a second does not validate -----------------------------


def test_an_artefact_window_under_a_second_is_a_protocol_error() -> None:
    text = (
        resources.files("streamproc.presets")
        .joinpath("tartare2s-ttp.toml")
        .read_text("utf-8")
        .replace("window_s = 60.0 ", "window_s = 0.5 ")
    )
    with pytest.raises(ProtocolError, match=r"signal\.artefact\.window_s"):
        parse_protocol(text, where="halfsec.toml")


# -- L2: SvO2 exactly 65 % misses the target "> 65 %" ------------------------------------------


@pytest.mark.parametrize(("svo2", "raised"), [(65.0, True), (65.1, False), (64.9, True)])
def test_svo2_at_65_is_below_the_target(svo2: float, raised: bool) -> None:
    # svo2 every 60 s for 15 min (onset 10 min)
    evaluator = Evaluator()
    events = []
    for t in range(0, 901, 60):
        outcome = _send(evaluator, VITALS, {"ts": T0 + t, "values": {"svo2": svo2}}, None)
        events += [(a.rule, a.event) for a in outcome.alerts]
    assert (("svo2.low", "raised") in events) is raised
