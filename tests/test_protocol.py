"""Protocol files: the presets carry every default of design §4; bad files name the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamproc.cli import main
from streamproc.errors import ProtocolError
from streamproc.events import BedContext
from streamproc.protocol import load_protocol, preset_names

PRESETS = Path(__file__).parents[1] / "streamproc" / "presets"


def test_preset_names() -> None:
    assert {"tartare2s-ttp", "tartare2s-sc"} <= set(preset_names())
    assert "signals" not in preset_names()


def test_ttp_defaults_of_design_section_4() -> None:
    p = load_protocol("tartare2s-ttp")
    rules = p.rules
    floor = rules.map_below_floor
    assert (floor.low, floor.onset_s, floor.low + floor.clear_margin, floor.clear_s) == (
        50.0,
        60.0,
        52.0,
        30.0,
    )
    assert (floor.priority, floor.latching) == ("high", True)
    assert (p.bands.standard.low, p.bands.standard.high) == (50.0, 65.0)
    assert (p.bands.chronic_hypertension.low, p.bands.chronic_hypertension.high) == (65.0, 70.0)
    assert (p.bands.map_trial.low, p.bands.map_trial.high) == (75.0, 80.0)
    assert p.trial.max_duration_s == 7200.0
    assert rules.map_below_target is not None
    assert rules.map_below_target.onset_s == 300.0
    assert rules.map_above_target is not None
    assert rules.map_above_target.onset_s == 900.0
    assert rules.crt_abnormal is not None
    assert rules.crt_abnormal.at_or_above == 3.0
    cold = rules.skin_cold
    assert cold is not None
    assert (cold.core_skin_gradient, cold.forearm_fingertip_gradient) == (7.0, 4.0)
    assert (cold.fallback_skin_below, cold.onset_s) == (30.0, 600.0)
    assert rules.lactate_high is not None
    assert rules.lactate_high.at_or_above == 2.0
    assert rules.mottling_present is not None
    assert rules.mottling_present.at_or_above == 1.0
    assert rules.urine_low is not None
    assert rules.urine_low.below == 0.5
    assert rules.urine_map_trial is not None
    assert rules.urine_map_trial.below == 0.3
    assert rules.urine_map_trial.kind == "advisory"
    assert rules.svo2_low is not None
    assert (rules.svo2_low.low, rules.svo2_low.onset_s) == (
        65.0,
        600.0,
    )
    overdue = rules.assessment_overdue
    assert overdue is not None
    assert (overdue.early_period_s, overdue.early_interval_s, overdue.late_interval_s) == (
        86400.0,
        3600.0,
        7200.0,
    )
    assert overdue.fixed_interval_s == {"lactate": 7200.0}
    assert (p.escalation.after_s, p.escalation.from_priority, p.escalation.to_priority) == (
        600.0,
        "medium",
        "high",
    )
    assert rules.signal_lost.after_s == 30.0
    assert rules.signal_artefact.window_s == 60.0


def test_sc_defaults() -> None:
    p = load_protocol("tartare2s-sc")
    assert (p.bands.standard.low, p.bands.standard.high) == (65.0, 75.0)
    assert (p.bands.chronic_hypertension.low, p.bands.chronic_hypertension.high) == (75.0, 80.0)
    assert (p.bands.map_trial.low, p.bands.map_trial.high) == (85.0, 90.0)
    assert p.floor == 50.0
    low, high = p.rules.cvp_below_target, p.rules.cvp_above_target
    assert low is not None
    assert high is not None
    assert (low.low, high.high) == (8.0, 12.0)
    assert p.rules.crt_abnormal is None


@pytest.mark.parametrize("name", ["tartare2s-ttp.toml", "tartare2s-sc.toml"])
def test_every_number_in_a_preset_cites_its_source(name: str) -> None:
    import re

    for line in (PRESETS / name).read_text("utf-8").splitlines():
        code = line.split("#", 1)[0]
        if re.search(r"=\s*-?\d", code) or re.search(r"\{.*\d.*\}", code):
            assert "#" in line
            assert re.search(r"\[(T2|D4|AO|JW|LB|IEC|SP)\]", line), line


def test_band_in_force_for_a_context() -> None:
    p = load_protocol("tartare2s-ttp")
    t = 1_000_000.0
    assert p.floor == 50.0
    assert p.band_at(None, t, None).low == 50.0
    assert p.band_at(BedContext(chronic_hypertension=True), t, None).low == 65.0
    trial = BedContext(chronic_hypertension=True, map_trial_until=t + 3 * 3600)
    assert p.band_at(trial, t + 10, t).low == 75.0
    assert p.band_at(trial, t + 7199, t).low == 75.0
    assert p.band_at(trial, t + 7200, t).low == 65.0  # 2 h: over by itself
    assert p.band_at(trial, t - 1, t).low == 65.0


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "custom.toml"
    path.write_text(text, "utf-8")
    return path


def test_bad_file_names_the_field(tmp_path: Path) -> None:
    text = (PRESETS / "tartare2s-ttp.toml").read_text("utf-8")
    broken = text.replace("onset_s = 60.0 ", 'onset_s = "a minute" ', 1)
    with pytest.raises(ProtocolError, match=r"rules\.map\.below_floor\.onset_s"):
        load_protocol(_write(tmp_path, broken))


def test_unknown_field_is_rejected(tmp_path: Path) -> None:
    text = (PRESETS / "tartare2s-ttp.toml").read_text("utf-8")
    broken = text.replace("[trial]\n", "[trial]\nmax_duration = 1\n", 1)
    with pytest.raises(ProtocolError, match=r"trial\.max_duration"):
        load_protocol(_write(tmp_path, broken))


def test_inverted_band_is_rejected(tmp_path: Path) -> None:
    text = (PRESETS / "tartare2s-ttp.toml").read_text("utf-8")
    broken = text.replace("high = 65.0", "high = 45.0", 1)
    with pytest.raises(ProtocolError, match=r"bands\.standard"):
        load_protocol(_write(tmp_path, broken))


def test_not_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ProtocolError, match="not valid TOML"):
        load_protocol(_write(tmp_path, "name = "))
    with pytest.raises(ProtocolError, match="neither a preset"):
        load_protocol(tmp_path / "missing.toml")


def test_protocols_command_lists_and_explains(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["protocols"]) == 0
    listing = capsys.readouterr().out
    assert "tartare2s-ttp" in listing
    assert "tartare2s-sc" in listing
    assert main(["protocols", "tartare2s-ttp"]) == 0
    text = capsys.readouterr().out
    assert (
        "map.below_floor (high priority, physiological): alerts when MAP stays below 50 mmHg"
        in text
    )
    assert "at or above 52 mmHg for 30 s" in text
    assert "Latches until acknowledged" in text
    assert "the latest capillary refill time is at or above 3 s" in text
    assert "source: TARTARE-2S protocol, Trials 2016, Table 2" in text


def test_check_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path, (PRESETS / "tartare2s-sc.toml").read_text("utf-8"))
    assert main(["check", str(good)]) == 0
    assert "valid protocol 'tartare2s-sc'" in capsys.readouterr().out
    bad = _write(tmp_path, "name = 'x'\n")
    assert main(["check", str(bad)]) == 2
    assert "title" in capsys.readouterr().err


def test_check_command_validates_a_service_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("STREAMPROC_BROKER", "STREAMPROC_PROTOCOL", "STREAMPROC_INSTANCE"):
        monkeypatch.delenv(name, raising=False)
    good = tmp_path / "streamproc.toml"
    good.write_text('broker = "mqtt://127.0.0.1:1884"\nprotocol = "tartare2s-sc"\n', "utf-8")
    assert main(["check", str(good)]) == 0
    out = capsys.readouterr().out
    assert "valid service configuration" in out
    assert "'tartare2s-sc'" in out
    bad = tmp_path / "bad.toml"
    bad.write_text('protocol = "no-such-protocol"\n', "utf-8")
    assert main(["check", str(bad)]) == 2
    assert "no-such-protocol" in capsys.readouterr().err
