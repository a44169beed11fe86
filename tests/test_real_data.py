"""A real recording through the rules: MIMIC record 037, sustained severe hypotension.

The ABP waveform becomes 1-s MAP numerics here (a trailing 8-s mean, emitted every second,
as design §3.2 describes), which are fed as readings from the start of the record.
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

import numpy as np
import pytest

from streamproc.evaluator import Evaluator
from streamproc.events import Reading
from streamproc.models import AlertEventPayload
from streamproc.timestamps import format_ts

wfdb = pytest.importorskip("wfdb")

RECORD = "03700181"
TRAILING_S = 8  # design §3.2: MAP is the mean ABP over a trailing 8-s window, every 1 s


def _map_numerics(data_dir: Path) -> tuple[float, list[tuple[float, float]]]:
    """``(start, [(t, map)])``: 1-s MAP numerics, t in seconds after the record's start."""
    record = wfdb.rdrecord(str(data_dir / RECORD), channel_names=["ABP"])
    abp = np.asarray(record.p_signal[:, 0], dtype=float)
    fs = int(record.fs)
    start = record.base_datetime.replace(tzinfo=UTC).timestamp()
    sums = np.concatenate(([0.0], np.cumsum(abp)))
    numerics = []
    for second in range(1, len(abp) // fs + 1):
        end = second * fs
        begin = max(0, end - TRAILING_S * fs)
        numerics.append((float(second), float((sums[end] - sums[begin]) / (end - begin))))
    return start, numerics


def _replay(data_dir: Path, protocol: str) -> tuple[float, list[AlertEventPayload]]:
    start, numerics = _map_numerics(data_dir)
    evaluator = Evaluator(default_protocol=protocol)
    alerts: list[AlertEventPayload] = []
    for t, value in numerics:
        alerts += evaluator.advance(start + t)
        alerts += evaluator.feed(Reading("mimic", "b037", start + t, {"map": value}))
    return start, alerts


def test_the_recording_is_hypotensive_throughout(data_dir: Path) -> None:
    _, numerics = _map_numerics(data_dir)
    assert len(numerics) == 600
    assert max(value for _, value in numerics) < 50.0


def test_ttp_raises_the_floor_alert_within_61_s(data_dir: Path) -> None:
    start, alerts = _replay(data_dir, "tartare2s-ttp")
    floor = [a for a in alerts if a.rule == "map.below_floor" and a.event == "raised"]
    assert len(floor) == 1
    assert (floor[0].priority, floor[0].kind) == ("high", "physiological")
    assert floor[0].at <= format_ts(start + 61.0)
    assert floor[0].observed["map_mean_60s"] < 50.0
    # the TTP standard band starts at the floor: no separate below-target alert
    assert [a for a in alerts if a.rule == "map.below_target"] == []


def test_standard_care_raises_below_target_as_well(data_dir: Path) -> None:
    start, alerts = _replay(data_dir, "tartare2s-sc")
    raised = {a.rule: a for a in alerts if a.event == "raised"}
    assert raised["map.below_floor"].at <= format_ts(start + 61.0)
    below = raised["map.below_target"]
    assert (below.priority, below.target["map_min"]) == ("medium", 65.0)
    assert below.at == format_ts(start + 1.0 + 300.0)  # 5 min after the first numeric
