"""ABP waveform → MAP numerics and artefact markers (design §3.2), on real and drawn traces."""

from __future__ import annotations

import json
import warnings
from itertools import pairwise
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.errors import RejectedReading
from streamproc.events import ArtefactReading, Reading, WaveformChunk
from streamproc.waveform import DerivedMap, WaveformState, derive_events, waveform_settings

with warnings.catch_warnings():  # wfdb's import trips a pandas deprecation warning
    warnings.simplefilter("ignore", DeprecationWarning)
    import wfdb

FS = 125.0
T0 = 1_700_000_000.0  # on the 1-s grid


def abp(record: Path) -> npt.NDArray[np.float64]:
    rec = wfdb.rdrecord(str(record), channel_names=["ABP"])
    return np.asarray(rec.p_signal[:, 0], dtype=np.float64)


def run(samples: npt.NDArray[np.float64], *, chunk: int = 125, t0: float = T0) -> list[DerivedMap]:
    state = WaveformState()
    out: list[DerivedMap] = []
    for i in range(0, samples.size, chunk):
        out += state.push(t0 + i / FS, FS, samples[i : i + chunk])
    return out


def pulse(seconds: float, *, mean: float = 80.0, pp: float = 40.0) -> npt.NDArray[np.float64]:
    t = np.arange(int(seconds * FS)) / FS
    return mean + pp / 2 * np.sin(2 * np.pi * 1.25 * t)


def test_profound_real_hypotension_is_map_not_artefact(data_dir: Path) -> None:
    # MIMIC record 037: a clean pulsatile trace with a mean of 29–37 mmHg throughout
    out = run(abp(data_dir / "wfdb/03700181_abp"))
    assert out
    assert all(o.artefact is None for o in out)
    values = [o.map for o in out if o.map is not None]
    assert min(values) > 28
    assert max(values) < 38
    assert len(out) == 180 - 5  # one per second once the 8-s window is 75 % (6 s) full


def test_disconnected_line_yields_no_map_value(data_dir: Path) -> None:
    out = run(abp(data_dir / "wfdb/3234460_0018_abp"))
    assert len(out) > 700
    assert all(o.map is None for o in out)
    assert {o.artefact for o in out} <= {"zeroing", "damped", "implausible_mean"}


@pytest.mark.parametrize("segment", ["0012", "0013", "0015"])
def test_flush_and_zeroing_never_become_map(data_dir: Path, segment: str) -> None:
    samples = abp(data_dir / f"wfdb/3975656_{segment}_abp")
    out = run(samples)
    # every output whose window holds a flush (≥ 250) or zero (< 5) sample is an artefact
    for o in out:
        window = samples[max(0, int((o.ts - 8 - T0) * FS)) : int((o.ts - T0) * FS)]
        flagged = (window >= 250).sum() >= 2 or (window < 5).sum() >= 2
        if flagged:
            assert o.map is None, o
    assert all(60 < o.map < 120 for o in out if o.map is not None)


def test_flush_marks_exactly_the_windows_that_hold_it() -> None:
    # seconds    0 … 9 | 10 | 11 … 17 | 18 | 19 …
    # flush              ▲ two samples at 300 mmHg in second 10
    # outputs at end of:  10 … 17 (8 windows contain second 10) are artefacts, 18 is MAP again
    samples = pulse(30)
    samples[int(10.5 * FS) : int(10.5 * FS) + 2] = 300.0
    out = {o.ts - T0: o for o in run(samples)}
    flushed = sorted(ts for ts, o in out.items() if o.artefact == "flush")
    assert flushed == [float(s) for s in range(11, 19)]
    assert out[19.0].map == pytest.approx(80.0, abs=0.5)
    assert out[10.0].map is not None


def test_one_stray_sample_is_not_a_flush() -> None:
    samples = pulse(20)
    samples[int(12 * FS)] = 300.0
    assert all(o.artefact is None for o in run(samples))


def test_damped_line_is_an_artefact() -> None:
    out = run(pulse(20, mean=70.0, pp=4.0))
    assert out
    assert all(o.artefact == "damped" for o in out)


def test_a_gap_gives_no_value_until_the_window_fills_again() -> None:
    state = WaveformState()
    first = state.push(T0, FS, pulse(20))
    after_gap = state.push(T0 + 60, FS, pulse(10))
    assert first[-1].ts == T0 + 20
    # 75 % of 8 s: the first value after the gap comes 6 s in
    assert [o.ts - T0 for o in after_gap] == [66.0, 67.0, 68.0, 69.0, 70.0]


def test_outputs_do_not_depend_on_chunking() -> None:
    samples = pulse(40) + np.random.default_rng(1).normal(0, 2, int(40 * FS))
    whole = run(samples, chunk=samples.size)
    for chunk in (125, 50, 333):
        other = run(samples, chunk=chunk)
        assert [o.ts for o in other] == [o.ts for o in whole]
        assert [o.map for o in other] == pytest.approx([o.map for o in whole], abs=1e-9)


def test_snapshot_restore_gives_identical_outputs() -> None:
    samples = pulse(30)
    samples[int(20 * FS) : int(20 * FS) + 10] = 0.0
    state = WaveformState()
    state.push(T0, FS, samples[:1300])
    saved = json.loads(json.dumps(state.snapshot()))
    expected = state.push(T0 + 1300 / FS, FS, samples[1300:])
    restored = WaveformState.restore(saved)
    assert restored.push(T0 + 1300 / FS, FS, samples[1300:]) == expected


def test_overlapping_chunk_is_rejected_as_late() -> None:
    state = WaveformState()
    state.push(T0, FS, pulse(2))
    with pytest.raises(RejectedReading) as err:
        state.push(T0 + 1, FS, pulse(1))
    assert err.value.reason == "late"


def test_derive_events_makes_map_readings_and_map_artefacts() -> None:
    samples = pulse(12)
    samples[int(11 * FS) : int(11 * FS) + 3] = 0.0
    chunk = WaveformChunk("w1", "b1", T0, FS, tuple(samples.tolist()), device="mon", seq=4)
    events = derive_events(WaveformState(), chunk)
    readings = [e for e in events if isinstance(e, Reading)]
    artefacts = [e for e in events if isinstance(e, ArtefactReading)]
    assert readings
    assert artefacts
    assert all(r.seq is None and r.device == "mon" and set(r.values) == {"map"} for r in readings)
    assert all(a.signals == ("map",) for a in artefacts)
    assert max(r.ts for r in readings) < min(a.ts for a in artefacts)


def test_thresholds_come_from_the_preset() -> None:
    settings = waveform_settings()
    assert settings.window_blocks == 8
    assert settings.flush_mmHg == 250.0


def test_an_overlapping_chunk_is_rejected_late_by_ingest() -> None:
    from streamproc.evaluator import Evaluator
    from streamproc.ingest import ingest

    def chunk(t0: float, seq: int) -> bytes:
        body = {"t0": t0, "fs": FS, "seq": seq, "samples": pulse(1).round(2).tolist()}
        return json.dumps(body).encode()

    evaluator = Evaluator()
    topic = "icu/w1/b1/waveform/abp"
    assert ingest(evaluator, topic, chunk(T0, 1), received=None).rejection is None
    again = ingest(evaluator, topic, chunk(T0, 1), received=None)  # a QoS 1 redelivery
    assert again.rejection is not None
    assert again.rejection.reason == "late"
    assert ingest(evaluator, topic, chunk(T0 + 1, 2), received=None).rejection is None
    status = evaluator.status("w1", "b1")
    assert status is not None
    assert status.latest == {}  # 2 s of samples: the 8-s window is not 75 % full yet


@settings(max_examples=40, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=1, max_value=30 * 125 - 1), max_size=12, unique=True),
    flush_at=st.integers(min_value=0, max_value=30 * 125 - 3),
)
def test_any_chunking_gives_the_same_outputs(cuts: list[int], flush_at: int) -> None:
    samples = pulse(30)
    samples[flush_at : flush_at + 2] = 300.0
    whole = WaveformState().push(T0, FS, samples)
    state, out = WaveformState(), []
    for lo, hi in pairwise([0, *sorted(cuts), samples.size]):
        out += state.push(T0 + lo / FS, FS, samples[lo:hi])
    assert [(o.ts, o.artefact) for o in out] == [(o.ts, o.artefact) for o in whole]
    assert [o.map for o in out] == pytest.approx([o.map for o in whole], abs=1e-9)
