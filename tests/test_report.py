"""``streamproc replay --report DIR [--plot]``: the summary's numbers, the Markdown, the PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamproc.cli import main
from streamproc.events import ArtefactReading, Reading
from streamproc.protocol import load_protocol
from streamproc.report import BedTrace, ProtocolRun, TraceRecorder, map_time, summarise

T0 = 1_764_057_600.0  # 2025-11-25T08:00:00Z


def trace_of(*points: tuple[float, float]) -> BedTrace:
    recorder = TraceRecorder()
    for offset, value in points:
        if np.isnan(value):
            recorder.observe(ArtefactReading("w1", "b1", T0 + offset, ("map",)))
        else:
            recorder.observe(Reading("w1", "b1", T0 + offset, {"map": value}))
    return recorder.beds["w1", "b1"]


def test_time_in_band_carries_each_reading_forward() -> None:
    #  t:     0      60     120    180    240   (s)
    #  MAP:   45     58     70     nan    60
    #  TTP:   floor  band   above  artef. (last reading: no time after it)
    trace = trace_of((0, 45.0), (60, 58.0), (120, 70.0), (180, float("nan")), (240, 60.0))
    ttp = map_time(trace, load_protocol("tartare2s-ttp"), hold=7200)
    assert ttp == {
        "below_floor": 60.0,
        "below_band": 0.0,
        "in_band": 60.0,
        "above_band": 60.0,
        "artefact": 60.0,
        "no_data": 0.0,
    }
    sc = map_time(trace, load_protocol("tartare2s-sc"), hold=7200)
    assert sc["below_band"] == 60.0  # 58 is above the floor, below 65
    assert sc["in_band"] == 60.0  # 70 is in 65–75


def test_a_reading_stands_for_at_most_the_hold_time() -> None:
    trace = trace_of((0, 60.0), (10_000, 60.0))
    zones = map_time(trace, load_protocol("tartare2s-ttp"), hold=3600)
    assert zones["in_band"] == 3600.0
    assert zones["no_data"] == 10_000 - 3600.0


def test_alert_spans_burden_and_counts(tmp_path: Path, data_dir: Path) -> None:
    report = tmp_path / "r"
    assert main(["replay", str(data_dir / "wfdb/03700181_abp"), "--report", str(report)]) == 0
    summary = json.loads((report / "summary.json").read_text())
    bed = summary["beds"][0]
    ttp = bed["protocols"]["tartare2s-ttp"]
    assert ttp["alerts"] == {"map.below_floor": {"high": 1}}
    assert ttp["alerts_by_kind"] == {"physiological": 1}
    assert ttp["alerts_per_bed_hour"] == pytest.approx(1 / bed["hours"])
    # the floor alert runs from its onset (6 s in) to the end of the recording (180 s)
    assert ttp["target_missed_s"]["map.below_floor"] == pytest.approx(174.0)
    assert ttp["map_time_s"]["below_floor"] == pytest.approx(174.0)
    lines = (report / "alerts.jsonl").read_text().splitlines()
    assert [json.loads(x)["rule"] for x in lines] == ["map.below_floor"]
    markdown = (report / "summary.md").read_text()
    assert "secondary alerting system" in markdown
    assert "| MAP below the floor | 2.9 min (100 %) |" in markdown
    assert "## Bed `replay/03700181_abp`" in markdown


def test_protocols_side_by_side_in_the_markdown(tmp_path: Path, data_dir: Path) -> None:
    report = tmp_path / "r"
    argv = ["replay", str(data_dir / "wfdb/mimicdb230_5min_abp"), "--report", str(report)]
    assert main([*argv, "--protocol", "tartare2s-ttp", "--protocol", "tartare2s-sc"]) == 0
    markdown = (report / "summary.md").read_text()
    assert "|  | `tartare2s-ttp` | `tartare2s-sc` |" in markdown
    assert "| MAP band / floor | 50–65 / 50 mmHg | 65–75 / 50 mmHg |" in markdown


def test_a_bed_without_alerts_has_no_burden() -> None:
    trace = trace_of((0, 45.0), (600, 45.0))
    run = ProtocolRun(load_protocol("tartare2s-ttp"))
    assert summarise(trace, run)["alerts_raised"] == 0
    assert summarise(trace, run)["alerts_per_bed_hour"] == 0.0


def _pixels_near(image: np.ndarray, rgb: tuple[float, float, float], tol: float = 0.04) -> int:
    return int((np.abs(image[..., :3] - np.array(rgb)).max(axis=-1) < tol).sum())


def test_plot_shows_band_floor_trace_and_alert(tmp_path: Path, data_dir: Path) -> None:
    image_module = pytest.importorskip("matplotlib.image")
    report = tmp_path / "r"
    argv = ["replay", str(data_dir / "wfdb/03700181_abp"), "--report", str(report), "--plot"]
    assert main(argv) == 0
    png = report / "plots/replay_03700181_abp.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = image_module.imread(png)
    band = (1 - 0.15 * (1 - np.array([0x2C, 0xA0, 0x2C]) / 255)).tolist()  # green at alpha 0.15
    assert _pixels_near(image, tuple(band)) > 5_000
    assert _pixels_near(image, (0xD6 / 255, 0x27 / 255, 0x28 / 255)) > 2_000  # the high alert bar
    assert _pixels_near(image, (0x1F / 255, 0x3B / 255, 0x73 / 255), tol=0.08) > 300  # MAP trace


def test_plot_needs_a_report(data_dir: Path) -> None:
    assert main(["replay", str(data_dir / "wfdb/03700181_abp"), "--plot"]) == 2
