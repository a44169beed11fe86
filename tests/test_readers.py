"""Recordings → wire messages: formats, mappings, sidecars and event-time order."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from streamproc.codec import decode
from streamproc.errors import ConfigError
from streamproc.events import ContextUpdate, Reading, WaveformChunk
from streamproc.readers import (
    RecordingOptions,
    detect_format,
    load_options,
    read_recording,
    read_recordings,
)
from streamproc.readers.options import UNDATED_START


def messages(path: Path, **options: object) -> list[tuple[str, dict[str, object]]]:
    stream = read_recordings([path], lambda p: load_options(p, overrides=options))
    return [(m.topic, json.loads(m.payload)) for m in stream]


def readings(path: Path, **options: object) -> list[Reading]:
    stream = read_recordings([path], lambda p: load_options(p, overrides=options))
    decoded = [decode(m.topic, m.payload) for m in stream]
    return [e for e in decoded if isinstance(e, Reading)]


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("wfdb/03700181_abp.hea", "wfdb"),
        ("wfdb/03700181_abp", "wfdb"),
        ("challenge2012/132612.txt", "challenge2012"),
        ("challenge2012", "challenge2012"),
    ],
)
def test_format_is_detected(data_dir: Path, name: str, fmt: str) -> None:
    assert detect_format(data_dir / name) == fmt


def test_unknown_format_says_what_to_do(tmp_path: Path) -> None:
    odd = tmp_path / "x.bin"
    odd.write_bytes(b"\0")
    with pytest.raises(ConfigError, match="--format"):
        detect_format(odd)


def test_wfdb_waveform_becomes_one_second_abp_chunks(data_dir: Path) -> None:
    stream = read_recordings(
        [data_dir / "wfdb/03700181_abp"],
        lambda p: RecordingOptions(ward="w1", bed="b7", context={"protocol": "tartare2s-ttp"}),
    )
    events = [decode(m.topic, m.payload) for m in stream]
    assert isinstance(events[0], ContextUpdate)
    chunks = [e for e in events if isinstance(e, WaveformChunk)]
    assert len(chunks) == 180
    assert all(len(c.samples) == 125 for c in chunks)
    assert chunks[0].bed == "b7"
    assert chunks[0].fs == 125.0
    # the header's own date and time: 15/08/1994 17:27:45, read as UTC
    assert chunks[0].t0 == datetime(1994, 8, 15, 17, 27, 45, tzinfo=UTC).timestamp()
    assert chunks[1].t0 - chunks[0].t0 == pytest.approx(1.0)


def test_wfdb_numerics_skip_zero_and_missing(data_dir: Path) -> None:
    found = readings(data_dir / "wfdb/s25047-2704-05-04-10-44n.hea", start="2026-11-25T10:00Z")
    maps = [r.values["map"] for r in found]
    # README: NBPMean has 21 readings, 10 below 65 and 6 below 50; 0 means not available
    assert len(maps) == 21
    assert sum(m < 65 for m in maps) == 10
    assert sum(m < 50 for m in maps) == 6
    assert found[0].ts == pytest.approx(1_795_600_800.0 + 120)  # re-based: sample 2 of 1/min


def test_challenge_stay_mapping(data_dir: Path) -> None:
    stay = data_dir / "challenge2012/132612.txt"
    rows = [line.split(",") for line in stay.read_text().splitlines()[1:]]
    found = readings(stay)
    by_time = {r.ts - UNDATED_START: r.values for r in found}
    for clock, param, value in rows:
        hours, minutes = clock.split(":")
        at = int(hours) * 3600 + int(minutes) * 60
        if param == "MAP" and float(value) > 0:
            assert by_time[at]["map"] == float(value)  # invasive wins over NIMAP at 01:16
        if param == "Lactate":
            assert by_time[at]["lactate"] == float(value)
        if param == "Temp" and float(value) > 0:
            assert by_time[at]["core_temp"] == float(value)
    assert by_time[76 * 60]["map"] == 70.0  # 01:16 has MAP 70 and NIMAP 75
    assert by_time[46 * 60]["map"] == 59.67  # 00:46 has NIMAP only


def test_challenge_urine_becomes_ml_per_kg_per_hour(data_dir: Path) -> None:
    # 132612: Weight 109 kg; Urine 220 mL at 01:46 (first: interval unknown), 180 at 02:46
    found = readings(data_dir / "challenge2012/132612.txt")
    urine = {
        r.ts - UNDATED_START: r.values["urine_output"] for r in found if "urine_output" in r.values
    }
    assert 106 * 60 not in urine
    assert urine[166 * 60] == pytest.approx(180 / 109 / 1.0)


def test_challenge_directory_is_a_ward_in_time_order(data_dir: Path) -> None:
    stream = list(read_recordings([data_dir / "challenge2012"], lambda p: RecordingOptions()))
    beds = {m.bed for m in stream}
    assert beds == {"132612", "132663", "132765", "132860"}
    assert [m.ts for m in stream] == sorted(m.ts for m in stream)
    with pytest.raises(ConfigError, match="drop --bed"):
        read_recording(data_dir / "challenge2012", RecordingOptions(bed="b1"))


def test_long_csv_with_column_and_signal_mapping_and_sidecar(tmp_path: Path) -> None:
    csv = tmp_path / "icu.csv"
    csv.write_text(
        "charttime,label,val\n"
        "2026-11-25T08:00:00Z,ABP mean,63\n"
        "2026-11-25T08:00:00Z,Lactate,2.4\n"
        "2026-11-25T07:59:00Z,ABP mean,61\n"
        "2026-11-25T08:01:00Z,HR,90\n"
    )
    (tmp_path / "icu.replay.toml").write_text(
        'ward = "icu-a"\nbed = "b07"\n'
        '[context]\nprotocol = "tartare2s-sc"\n'
        '[columns]\ntime = "charttime"\nsignal = "label"\nvalue = "val"\n'
        '[signals]\n"ABP mean" = "map"\n"Lactate" = "lactate"\n'
    )
    assert detect_format(csv, columns={"signal": "label"}) == "long-csv"
    got = messages(csv)
    assert got[0] == ("icu/icu-a/b07/context", {"protocol": "tartare2s-sc"})
    assert [p["values"] for _, p in got[1:]] == [{"map": 61.0}, {"map": 63.0, "lactate": 2.4}]
    # a command-line option beats the sidecar
    assert messages(csv, bed="b09")[1][0] == "icu/icu-a/b09/vitals"


def test_wide_csv_with_relative_times(tmp_path: Path) -> None:
    csv = tmp_path / "bed3.csv"
    csv.write_text("time,map,skin_temp,notes\n00:00:10,70,31.5,x\n00:00:00,72,,y\n")
    found = readings(csv, start="2026-11-25T08:00:00+01:00")
    assert [(r.ts, dict(r.values)) for r in found] == [
        (1_795_590_000.0, {"map": 72.0}),
        (1_795_590_010.0, {"map": 70.0, "skin_temp": 31.5}),
    ]
    assert found[0].bed == "bed3"


def test_wire_json_lines_pass_through_unchanged(tmp_path: Path) -> None:
    lines = tmp_path / "bus.jsonl"
    payload = {"ts": "2026-11-25T12:00:00Z", "values": {"map": 48.0}}
    lines.write_text(
        json.dumps({"topic": "icu/w1/b1/vitals", "payload": payload})
        + "\n"
        + json.dumps({"topic": "icu/w1/b1/vitals", "payload": "{not json"})
        + "\n"
    )
    got = list(read_recordings([lines], lambda p: RecordingOptions()))
    assert json.loads(got[0].payload) == payload
    assert got[1].payload == b"{not json"


def test_naive_start_is_refused() -> None:
    with pytest.raises(ConfigError, match="offset"):
        load_options(Path("x.csv"), overrides={"start": "2026-11-25T08:00:00"})


def test_devices_replay_never_imports_the_evaluator() -> None:
    import subprocess
    import sys

    code = "import sys, devices.cli; print('streamproc.evaluator' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
