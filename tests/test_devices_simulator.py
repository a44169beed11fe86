"""The device simulator offline: determinism, wire validity, physiology time scales, faults."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from devices.bedside import BedPlan, bed_messages
from devices.faults import Message, parse_fault
from devices.physiology import EventEffect, Patient, physiology
from devices.scenario import FaultSpec, load_scenario, scenario_names, scenarios_for_beds
from devices.simulate import Timeline, ward_messages, ward_plans, write_jsonl
from streamproc.codec import decode
from streamproc.errors import ConfigError
from streamproc.events import ContextUpdate, Reading, Rejection, WaveformChunk
from streamproc.timestamps import format_ts

START = 1_800_000_000.0  # a fixed epoch, so that payloads can be compared byte for byte


def _plan(name: str, *, seed: int = 7, minutes: float | None = None, **kw: object) -> BedPlan:
    scenario = load_scenario(name)
    duration = scenario.duration_s if minutes is None else minutes * 60.0
    return BedPlan(
        scenario=scenario,
        ward="w1",
        bed="b001",
        seed=seed,
        start_ts=START,
        duration_s=duration,
        **kw,  # type: ignore[arg-type]
    )


def _values(messages: list[Message], signal: str) -> list[tuple[float, float]]:
    """(offset, value) of one signal in a bed's vitals messages."""
    out = []
    for m in messages:
        if m.topic.endswith("/vitals"):
            values = json.loads(m.payload)["values"]
            if signal in values:
                out.append((m.offset, values[signal]))
    return out


def test_same_seed_and_scenario_give_byte_identical_payloads(tmp_path: Path) -> None:
    def run(seed: int, name: str) -> bytes:
        path = tmp_path / f"{seed}-{name}.jsonl"
        plans = ward_plans(
            scenario="mix", beds=8, seed=seed, ward="w1", start_ts=START, duration=600.0
        )
        write_jsonl(path, plans)
        return path.read_bytes()

    first = run(11, "a")
    assert first == run(11, "b")
    assert first != run(12, "c")


def test_the_waveform_does_not_change_the_numerics() -> None:
    """The waveform has its own random stream: switching it on leaves every reading alone."""
    plain = list(bed_messages(_plan("refractory_hypotension", minutes=5)))
    with_wave = list(bed_messages(_plan("refractory_hypotension", minutes=5, waveform=True)))

    def strip(messages: list[Message]) -> list[object]:
        # seq numbers differ (the waveform chunks take their own); values and times must not
        out = []
        for m in messages:
            if m.topic.endswith("/vitals"):
                body = json.loads(m.payload)
                out.append((body["ts"], body["values"]))
        return out

    assert strip(plain) == strip(with_wave)
    assert any(m.topic.endswith("/waveform/abp") for m in with_wave)


@pytest.mark.parametrize("name", scenario_names())
def test_every_message_of_every_scenario_is_valid_wire_contract(name: str) -> None:
    """Decoded by streamproc's own codec: readings, chunks and context; rejections are only
    the implausible values that the scenario's artefacts put on the line on purpose."""
    plan = _plan(name, minutes=min(load_scenario(name).duration_min, 45.0))
    kinds: Counter[str] = Counter()
    for message in bed_messages(plan):
        event = decode(message.topic, message.payload)
        if isinstance(event, Rejection):
            assert event.reason == "implausible", event.detail
            assert any(f.kind in {"flush", "zeroing", "disconnect"} for f in plan.faults)
        kinds[type(event).__name__] += 1
    assert kinds["ContextUpdate"] == 1
    assert kinds["Reading"] > 0


def test_context_is_retained_first_with_the_trial_deadline() -> None:
    plan = _plan("oliguria_map_trial", minutes=2)
    first = next(iter(bed_messages(plan)))
    assert first.retain
    assert first.topic == "icu/w1/b001/context"
    event = decode(first.topic, first.payload)
    assert isinstance(event, ContextUpdate)
    assert event.context is not None
    assert event.context.map_trial_until == START + 120 * 60.0
    assert event.context.protocol_started == START
    assert event.context.patient is not None
    assert event.context.patient.startswith("pt-")


def test_waveform_chunks_are_125_hz_one_second_around_the_map() -> None:
    chunks = [
        decode(m.topic, m.payload)
        for m in bed_messages(_plan("flush_artefact", minutes=3))
        if m.topic.endswith("/waveform/abp")
    ]
    assert len(chunks) == 179  # a chunk goes out once its second is over
    chunk = chunks[60]
    assert isinstance(chunk, WaveformChunk)
    assert chunk.fs == 125.0
    assert len(chunk.samples) == 125
    samples = np.asarray(chunk.samples)
    assert 50.0 < samples.mean() < 70.0  # MAP ~60
    assert 30.0 < samples.max() - samples.min() < 60.0  # pulse pressure ~45


def test_flush_saturates_the_line_then_returns() -> None:
    """flush_artefact: a 4-s flush at 10 min puts ~300 mmHg on the numerics and the trace."""
    messages = list(bed_messages(_plan("flush_artefact", minutes=11)))
    maps = dict(_values(messages, "map"))
    flush = [t for t, v in maps.items() if v > 250]
    assert flush == [600.0, 601.0, 602.0, 603.0]
    assert 45 < maps[604.0] < 75
    chunks = {m.offset: json.loads(m.payload) for m in messages if "waveform" in m.topic}
    flushed = chunks[602.0]  # sent at 602 s, the samples of 601–602 s
    assert flushed["t0"] == format_ts(START + 601.0)
    assert min(flushed["samples"]) > 295


def test_timeline_ends_now_and_never_runs_ahead_of_the_clock() -> None:
    """ts(e) = start + e is published at wall0 + e/speed: never later than the wall clock."""
    duration, speed = 7200.0, 600.0
    timeline = Timeline.ending_now(duration=duration, speed=speed)
    wall_epoch0 = timeline.start_ts + duration - duration / speed
    for offset in np.linspace(0.0, duration, 50):
        published_at = wall_epoch0 + offset / speed
        assert timeline.start_ts + offset <= published_at + 1e-6
    assert math.isclose(timeline.start_ts + duration, wall_epoch0 + duration / speed)


def test_slow_motion_starts_now() -> None:
    timeline = Timeline.ending_now(duration=60.0, speed=0.5)
    assert timeline.start_ts == pytest.approx(Timeline.ending_now(duration=0.0, speed=1).start_ts)


# --- physiology time scales --------------------------------------------------------------


def _patient(**overrides: float) -> Patient:
    params = physiology().patient.model_copy(update={"map_drift_sd": 0.0, **overrides})
    return Patient(params, np.random.default_rng(0))


def test_fingertip_cools_with_a_half_time_of_minutes() -> None:
    """A step into vasoconstriction: the fingertip loses half its way to the new equilibrium
    in the configured half-time (minutes, not seconds)."""
    patient = _patient()
    half_time = physiology().patient.skin_cooling_half_time_s
    patient.apply(EventEffect(perfusion=0.4, tau_s=1e-3))
    patient.advance(1.0)  # perfusion is now at its target; the skin has barely moved
    before = patient.skin
    equilibrium = patient.core - patient._skin_gradient(patient.effective_perfusion)
    assert before - equilibrium > 5.0
    for _ in range(int(half_time)):
        patient.advance(1.0)
    assert patient.skin - equilibrium == pytest.approx((before - equilibrium) / 2, rel=0.02)
    assert 120.0 <= half_time <= 900.0


def test_lactate_clears_over_hours() -> None:
    patient = _patient(lactate=4.0, lactate_basal=1.0)
    for _ in range(int(physiology().patient.lactate_clear_half_time_s)):
        patient.advance(1.0)
    assert patient.lactate == pytest.approx(2.5, abs=0.05)  # half-way from 4.0 to 1.0


def test_low_map_takes_perfusion_with_it() -> None:
    patient = _patient(map=42.0)
    assert patient.effective_perfusion < 0.5
    assert patient.crt() > 3.0


# --- faults ------------------------------------------------------------------------------


def _readings_with(fault: str, minutes: float = 10.0) -> list[Message]:
    spec, beds = parse_fault(fault)
    assert beds is None
    return list(bed_messages(_plan("stable_ttp", minutes=minutes, extra_faults=[spec])))


def test_duplicates_repeat_device_and_seq() -> None:
    messages = _readings_with("duplicate:rate=0.1")
    payloads = Counter(m.payload for m in messages if m.topic.endswith("/vitals"))
    assert 30 < sum(1 for n in payloads.values() if n == 2) < 110


def test_reordered_messages_arrive_after_a_later_one() -> None:
    messages = [m for m in _readings_with("reorder:rate=0.05") if m.topic.endswith("/vitals")]
    times = [json.loads(m.payload)["ts"] for m in messages]  # ISO strings sort as times
    maps = [t for m, t in zip(messages, times, strict=True) if b'"map"' in m.payload]
    inversions = sum(1 for a, b in itertools.pairwise(maps) if b < a)
    assert 10 < inversions < 60


def test_malformed_payloads_are_rejected_for_their_reasons() -> None:
    reasons = Counter(
        ev.reason
        for m in _readings_with("malformed:rate=0.2")
        if isinstance(ev := decode(m.topic, m.payload), Rejection)
    )
    assert set(reasons) == {"malformed_json", "schema", "non_finite"}
    assert 80 < sum(reasons.values()) < 160


def test_skewed_clock_shifts_every_timestamp() -> None:
    plain = _values(list(bed_messages(_plan("stable_ttp", minutes=1))), "map")
    skewed = [decode(m.topic, m.payload) for m in _readings_with("skew:seconds=12", minutes=1)]
    times = [ev.ts for ev in skewed if isinstance(ev, Reading) and "map" in ev.values]
    assert [t - START for t in times] == [offset + 12.0 for offset, _ in plain]


def test_dropout_silences_the_monitor_but_not_the_chart() -> None:
    messages = _readings_with("dropout:at_min=2,duration_s=120", minutes=5)
    monitor = [m.offset for m in messages if m.monitor and not m.retain]
    assert not [t for t in monitor if 120.0 <= t < 240.0]
    assert 239.0 < min(t for t in monitor if t >= 120.0) <= 240.0


def test_probe_off_drifts_to_room_temperature() -> None:
    messages = _readings_with("probe_off:at_min=1", minutes=8)
    skin = dict(_values(messages, "skin_temp"))
    assert skin[50.0] > 33.0
    assert skin[470.0] < 25.0  # ambient 24 °C after a few time constants


def test_fault_options_name_their_beds() -> None:
    spec, beds = parse_fault("skew:seconds=-3.5@b002,b004")
    assert spec == FaultSpec(kind="skew", seconds=-3.5)
    assert beds == frozenset({"b002", "b004"})
    for bad in ("nonsense", "skew:seconds", "duplicate:rate=2", "skew:seconds=abc"):
        with pytest.raises(ConfigError):
            parse_fault(bad)


# --- scenarios ---------------------------------------------------------------------------


def test_mix_spreads_every_scenario_over_the_beds() -> None:
    beds = scenarios_for_beds("mix", len(scenario_names()) * 2)
    assert Counter(s.name for s in beds) == dict.fromkeys(scenario_names(), 2)
    with pytest.raises(ConfigError, match="choose one of"):
        scenarios_for_beds("nope", 1)


def test_ward_messages_are_in_event_time_order() -> None:
    plans = ward_plans(scenario="mix", beds=4, seed=1, ward="w9", start_ts=START, duration=120.0)
    offsets = [m.offset for m in ward_messages(plans)]
    assert offsets == sorted(offsets)
    assert len({p.bed for p in plans}) == 4


def test_fluids_and_recovery_move_map_and_perfusion_the_right_way() -> None:
    patient = _patient(map=55.0, perfusion=0.4)
    defaults = physiology().events
    patient.apply(defaults["fluids"])
    for _ in range(3600):
        patient.advance(1.0)
    assert patient.map_level == pytest.approx(55.0 + defaults["fluids"].map_delta, abs=0.1)
    assert patient.perfusion == pytest.approx(0.55, abs=0.01)
    patient.apply(defaults["recovery"])
    for _ in range(7200):
        patient.advance(1.0)
    assert patient.perfusion == pytest.approx(1.0, abs=0.01)
    assert patient.effective_perfusion > 0.95
