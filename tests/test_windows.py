"""Window state against brute force, and snapshot → restore round trips."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from streamproc.windows import (
    CLEAR,
    RAISE,
    ArtefactWindow,
    DedupWindow,
    RollingWindow,
    SustainedCondition,
)

_STEPS = st.lists(
    st.tuples(st.floats(0.01, 20.0), st.floats(10.0, 250.0)), min_size=1, max_size=200
)


@settings(max_examples=80, deadline=None)
@given(_STEPS)
def test_rolling_window_matches_brute_force(steps: list[tuple[float, float]]) -> None:
    window = RollingWindow(60.0)
    seen: list[tuple[float, float]] = []
    ts = 0.0
    for wait, value in steps:
        ts += wait
        window.add(ts, value)
        seen.append((ts, value))
        inside = [v for t, v in seen if t > ts - 60.0]
        assert len(window) == len(inside)
        assert window.minimum() == min(inside)
        assert abs(window.mean() - sum(inside) / len(inside)) < 1e-6
        window = RollingWindow.restore(json.loads(json.dumps(window.snapshot())))


def test_sustained_condition_timeline() -> None:
    # bad  ■ ■ ■ · □ □ □      (■ bad, · neither, □ good), onset 2 s, clear 2 s
    # t    0 1 2 3 4 5 6
    #          ↑ raise (2 s)    ↑ clear (4 → 6 = 2 s)
    cond = SustainedCondition()
    moves = []
    for t, bad, good in [
        (0, 1, 0),
        (1, 1, 0),
        (2, 1, 0),
        (3, 0, 0),
        (4, 0, 1),
        (5, 0, 1),
        (6, 0, 1),
    ]:
        moves.append(
            cond.update(float(t), bool(bad), bool(good), onset_s=2, clear_s=2, max_gap_s=5)
        )
    assert moves == [None, None, RAISE, None, None, None, CLEAR]
    assert cond.start == 0.0


def test_dedup_window() -> None:
    window = DedupWindow(8)
    for seq in (1, 2, 5):
        assert not window.seen(seq)
        window.record(seq)
    assert window.seen(2)
    assert not window.seen(3)
    window.record(20)  # 5 is now 15 behind: outside the 8-wide window, forgotten
    assert not window.seen(5)
    assert window.seen(20)
    restored = DedupWindow.restore(json.loads(json.dumps(window.snapshot())))
    assert restored.seen(20)
    assert not restored.seen(19)


def test_artefact_window_counts_the_last_minute() -> None:
    window = ArtefactWindow(60.0)
    for t in range(30):
        window.add_clean(float(t))
    for t in range(30, 61):
        window.add(float(t), artefact=True)
    assert window.counts(60.0) == (31, 29)  # seconds 1 … 60
    assert window.counts(200.0) == (0, 0)
    assert window.recently_seen(100.0)
    assert not window.recently_seen(120.0)
