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
        window.record(seq, 0.0)
    assert window.seen(2)
    assert not window.seen(3)
    window.record(20, 1.0)  # 5 is now 15 behind: outside the 8-wide window, forgotten
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
    assert window.counts() == (31, 29)  # seconds 1 … 60
    window.add_clean(200.0)  # a jump: everything before second 141 expires
    assert window.counts() == (0, 1)
    window.add(150.5, artefact=True)  # a little behind the newest second, still inside
    window.add(100.0, artefact=True)  # older than the window: not counted
    assert window.counts() == (1, 1)
    assert window.recently_seen(200.0)
    assert not window.recently_seen(300.0)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.floats(-3.0, 20.0), st.booleans()), min_size=1, max_size=150))
def test_artefact_window_matches_brute_force(steps: list[tuple[float, bool]]) -> None:
    window = ArtefactWindow(60.0)
    seen: list[tuple[int, bool]] = []
    ts = 1000.0
    for step, artefact in steps:
        ts = max(0.0, ts + step)  # mostly forwards, sometimes a little back
        window.add(ts, artefact=artefact)
        head = window.head
        assert head is not None
        if int(ts // 1) > head - 60:
            seen.append((int(ts // 1), artefact))
        inside = [a for second, a in seen if head - 60 < second <= head]
        assert window.counts() == (sum(inside), len(inside) - sum(inside))
        window = ArtefactWindow.restore(json.loads(json.dumps(window.snapshot())))


def test_artefact_window_restores_the_earlier_snapshot_layout() -> None:
    # the layout before running totals: a second stamp per bucket, -1 for never used
    old = {
        "span": 60.0,
        "seconds": [120, 121, *([-1] * 57), 59],
        "clean": [3, 1, *([0] * 57), 5],
        "artefacts": [1, 0, *([0] * 57), 2],
        "last_artefact": 120.5,
    }
    window = ArtefactWindow.restore(old)
    assert window.head == 121
    assert window.counts() == (1, 4)  # second 59 is outside (61, 121]
    window.add_clean(122.0)
    assert window.counts() == (1, 5)
