"""The replay benchmarks run (on tiny inputs here); their figures are printed, never asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamproc.bench_replay import synthetic_abp, waveform_rates
from streamproc.cli import main
from streamproc.waveform import WaveformState


def test_synthetic_abp_is_a_clean_map_source() -> None:
    out = WaveformState().push(1_795_608_000.0, 125.0, synthetic_abp(30))
    assert len(out) == 30 - 5
    assert all(o.artefact is None and o.map is not None and 50 < o.map < 75 for o in out)


def test_bench_waveform_prints_a_line_per_chunk_size() -> None:
    lines = waveform_rates(60)
    assert len(lines) == 5
    assert all("M samples/s" in line for line in lines[1:])


def test_bench_replay_runs_on_a_few_stays(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench-replay", str(data_dir / "challenge2012"), "--report", str(tmp_path)]) == 0
    assert "4 beds" in capsys.readouterr().out
    assert (tmp_path / "summary.md").is_file()
