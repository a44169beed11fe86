"""Window and condition state on event time: small classes with ``snapshot()``/``restore()``.

Every update is O(1) amortised: running sums and monotonic deques, never a pass over a
whole window per reading. Snapshots are plain JSON-able data that restore the exact
floating-point state (the running sum is stored, not recomputed), so a restored window
continues bit for bit like one that never stopped.

Event time may step backwards by a little across *different* signals of one bed (each
signal is in order on its own); the trackers clamp such a step to "no time passed".
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final

__all__ = [
    "CLEAR",
    "RAISE",
    "ArtefactWindow",
    "DedupWindow",
    "RollingWindow",
    "SustainedCondition",
]

RAISE: Final = "raise"
CLEAR: Final = "clear"

_IDLE, _PENDING, _ACTIVE, _CLEARING = "idle", "pending", "active", "clearing"


class SustainedCondition:
    """A condition that must hold for ``onset_s`` to raise and be gone for ``clear_s`` to clear.

    ``update(ts, bad, good)`` takes one evaluation at event time ``ts``: ``bad`` is the
    alert condition, ``good`` the clear condition (with hysteresis, ``good`` implies
    ``not bad`` but not the reverse: a reading between the two keeps the alert as it is).

        idle ──bad──▶ pending ──bad for onset_s──▶ active ──good──▶ clearing
          ▲             │not bad                     ▲  ▲            │ good for clear_s
          └─────────────┘                            │  └──not good──┘
          └──────────────────────────────────────────┴───────────────┘ (CLEAR)

    A gap of more than ``max_gap_s`` between evaluations restarts a pending onset (and a
    running clear count): "sustained" needs evidence all along.
    """

    __slots__ = ("clear_start", "last", "phase", "start")

    def __init__(self) -> None:
        self.phase = _IDLE
        self.start = 0.0  # onset: when the condition began (pending/active)
        self.clear_start = 0.0
        self.last: float | None = None

    @property
    def active(self) -> bool:
        """Raised and not yet cleared."""
        return self.phase in (_ACTIVE, _CLEARING)

    def update(
        self, ts: float, bad: bool, good: bool, *, onset_s: float, clear_s: float, max_gap_s: float
    ) -> str | None:
        """Advance to ``ts``; returns :data:`RAISE`, :data:`CLEAR` or ``None``."""
        last = self.last
        if last is not None and ts < last:
            ts = last
        gap = last is not None and ts - last > max_gap_s
        self.last = ts
        phase = self.phase
        if phase in (_IDLE, _PENDING):
            return self._onset(ts, bad, gap, onset_s)
        if not good:
            self.phase = _ACTIVE
            return None
        if phase == _ACTIVE or gap:
            self.phase, self.clear_start = _CLEARING, ts
        if ts - self.clear_start >= clear_s:
            self.phase = _IDLE
            return CLEAR
        return None

    def _onset(self, ts: float, bad: bool, gap: bool, onset_s: float) -> str | None:
        if not bad:
            self.phase = _IDLE
            return None
        if self.phase == _IDLE or gap:
            self.phase, self.start = _PENDING, ts
        if ts - self.start >= onset_s:
            self.phase = _ACTIVE
            return RAISE
        return None

    def snapshot(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "start": self.start,
            "clear": self.clear_start,
            "last": self.last,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> SustainedCondition:
        state = cls()
        state.phase, state.start = data["phase"], data["start"]
        state.clear_start, state.last = data["clear"], data["last"]
        return state


class RollingWindow:
    """Mean and minimum of the values of the last ``span`` seconds of event time.

    A deque of ``(ts, value)`` with a running sum, and a monotonic deque for the minimum:
    each value enters and leaves each deque once.
    """

    __slots__ = ("items", "mins", "span", "total")

    def __init__(self, span: float) -> None:
        self.span = span
        self.items: deque[tuple[float, float]] = deque()
        self.mins: deque[tuple[float, float]] = deque()
        self.total = 0.0

    def add(self, ts: float, value: float) -> None:
        item = (ts, value)
        items, mins = self.items, self.mins
        items.append(item)
        self.total += value
        while mins and mins[-1][1] >= value:
            mins.pop()
        mins.append(item)
        horizon = ts - self.span
        if items[0][0] <= horizon:  # the minimum is never older than the oldest item
            while items[0][0] <= horizon:
                self.total -= items.popleft()[1]
            while mins[0][0] <= horizon:
                mins.popleft()

    def mean(self) -> float:
        return self.total / len(self.items)

    def minimum(self) -> float:
        return self.mins[0][1]

    def __len__(self) -> int:
        return len(self.items)

    def snapshot(self) -> dict[str, Any]:
        return {
            "span": self.span,
            "items": [list(i) for i in self.items],
            "mins": [list(i) for i in self.mins],
            "total": self.total,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> RollingWindow:
        window = cls(data["span"])
        window.items.extend((t, v) for t, v in data["items"])
        window.mins.extend((t, v) for t, v in data["mins"])
        window.total = data["total"]
        return window


class ArtefactWindow:
    """Artefact and clean readings per whole second of event time, over the last ``span`` s.

    A ring of one-second buckets: a clean reading costs one bucket increment; the share of
    artefacts is summed over the ring only when it is asked for.
    """

    __slots__ = ("artefacts", "clean", "last_artefact", "seconds", "span")

    def __init__(self, span: float) -> None:
        self.span = span
        size = int(span)
        self.seconds = [-1] * size
        self.clean = [0] * size
        self.artefacts = [0] * size
        self.last_artefact: float | None = None

    def _bucket(self, ts: float) -> int:
        second = int(ts // 1)
        index = second % len(self.seconds)
        if self.seconds[index] != second:
            self.seconds[index] = second
            self.clean[index] = self.artefacts[index] = 0
        return index

    def add(self, ts: float, *, artefact: bool) -> None:
        if not artefact:
            self.add_clean(ts)
            return
        index = self._bucket(ts)
        self.artefacts[index] += 1
        self.last_artefact = ts

    def add_clean(self, ts: float) -> None:
        """A clean reading at ``ts`` (the hot path: one bucket increment)."""
        second = int(ts // 1)
        seconds = self.seconds
        index = second % len(seconds)
        if seconds[index] == second:
            self.clean[index] += 1
        else:
            seconds[index] = second
            self.clean[index], self.artefacts[index] = 1, 0

    def recently_seen(self, ts: float) -> bool:
        """Whether any artefact lies within ``span`` before ``ts`` (cheap pre-check)."""
        return self.last_artefact is not None and ts - self.last_artefact < self.span

    def counts(self, ts: float) -> tuple[int, int]:
        """``(artefacts, clean)`` in the ``span`` whole seconds up to and including ``ts``."""
        newest = int(ts // 1)
        oldest = newest - len(self.seconds)
        artefacts = clean = 0
        for second, art, ok in zip(self.seconds, self.artefacts, self.clean, strict=True):
            if oldest < second <= newest:
                artefacts += art
                clean += ok
        return artefacts, clean

    def snapshot(self) -> dict[str, Any]:
        return {
            "span": self.span,
            "seconds": list(self.seconds),
            "clean": list(self.clean),
            "artefacts": list(self.artefacts),
            "last_artefact": self.last_artefact,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> ArtefactWindow:
        window = cls(data["span"])
        window.seconds, window.clean = list(data["seconds"]), list(data["clean"])
        window.artefacts, window.last_artefact = list(data["artefacts"]), data["last_artefact"]
        return window


class DedupWindow:
    """Which sequence numbers of one device were seen: the newest, and a bitmask behind it.

    Bounded memory (one integer of ``width`` bits per device). A number more than ``width``
    below the newest is taken as a device restart (sequence reset), not as a duplicate: an
    old redelivered message is still caught by the evaluator's ``late`` check on its time.
    """

    __slots__ = ("full", "mask", "newest", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.full = (1 << width) - 1
        self.newest = -1
        self.mask = 0  # bit i set ⇔ newest − i was seen

    def seen(self, seq: int) -> bool:
        """Whether ``seq`` was already accepted (does not record it)."""
        behind = self.newest - seq
        return 0 <= behind < self.width and bool(self.mask >> behind & 1)

    def record(self, seq: int) -> None:
        behind = self.newest - seq
        if behind < 0:
            self.mask = ((self.mask << -behind) | 1) & self.full
            self.newest = seq
        elif behind < self.width:
            self.mask |= 1 << behind
        else:  # far behind: the device restarted its numbering
            self.newest, self.mask = seq, 1

    def snapshot(self) -> list[Any]:
        return [self.width, self.newest, format(self.mask, "x")]

    @classmethod
    def restore(cls, data: list[Any]) -> DedupWindow:
        window = cls(data[0])
        window.newest, window.mask = data[1], int(data[2], 16)
        return window
