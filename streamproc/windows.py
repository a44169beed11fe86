"""Window and condition state on event time: small classes with ``snapshot()``/``restore()``.

Every update is O(1) amortised: running sums and monotonic deques, never a pass over a
whole window per reading. Snapshots are plain JSON-able data that restore the exact
floating-point state (the running sum is stored, not recomputed), so a restored window
continues bit for bit like one that never stopped.

Event time may step backwards by a little across *different* signals of one bed (each
signal is in order on its own); the trackers clamp such a step to "no time passed".
"""

from __future__ import annotations

import math
from collections import deque
from functools import cache
from math import floor
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
    """Artefact and clean readings in the last ``span`` whole seconds up to the newest one.

    A ring of one-second buckets with running totals: a reading costs one bucket increment,
    and moving on by k seconds empties min(k, span) buckets, so every update is O(1)
    amortised and the counts are read without a pass over the ring. A reading older than
    the newest second (another signal, a little behind) still counts, in its own second.
    """

    __slots__ = (
        "artefacts",
        "clean",
        "head",
        "last_artefact",
        "size",
        "span",
        "total_artefacts",
        "total_clean",
    )

    def __init__(self, span: float) -> None:
        self.span = span
        size = self.size = int(span)  # bucket i: the second s ≡ i (mod size) in the window
        self.clean = [0] * size
        self.artefacts = [0] * size
        self.total_clean = self.total_artefacts = 0
        self.head: int | None = None  # the newest second seen
        self.last_artefact: float | None = None

    def _bucket(self, ts: float) -> int | None:
        """The bucket of ``ts``'s second, after moving the window on; None if too old."""
        second = floor(ts)
        head = self.head
        size = len(self.clean)
        if head is None:  # the first reading: every bucket is empty
            self.head = second
        elif second > head:
            for old in range(max(head + 1, second - size + 1), second + 1):  # expired buckets
                index = old % size
                self.total_clean -= self.clean[index]
                self.total_artefacts -= self.artefacts[index]
                self.clean[index], self.artefacts[index] = 0, 0
            self.head = second
        elif second <= head - size:
            return None
        return second % size

    def add(self, ts: float, *, artefact: bool) -> None:
        index = self._bucket(ts)
        if index is None:
            return
        if artefact:
            self.artefacts[index] += 1
            self.total_artefacts += 1
            self.last_artefact = ts
        else:
            self.clean[index] += 1
            self.total_clean += 1

    def add_clean(self, ts: float) -> None:
        """A clean reading at ``ts`` (the hot path: the newest second, or the next one)."""
        second = floor(ts)  # not int(ts // 1): float floor division costs an fmod
        head = self.head
        if head is not None:
            if second == head:
                self.clean[second % self.size] += 1
                self.total_clean += 1
                return
            if second == head + 1:  # one second on: the oldest bucket leaves the window
                clean, index = self.clean, second % self.size
                self.total_clean += 1 - clean[index]
                clean[index] = 1
                if self.total_artefacts:  # else every artefact bucket is 0: leave them cold
                    self.total_artefacts -= self.artefacts[index]
                    self.artefacts[index] = 0
                self.head = second
                return
        self.add(ts, artefact=False)

    def recently_seen(self, ts: float) -> bool:
        """Whether any artefact lies within ``span`` before ``ts`` (cheap pre-check)."""
        return self.last_artefact is not None and ts - self.last_artefact < self.span

    def counts(self) -> tuple[int, int]:
        """``(artefacts, clean)`` in the last ``span`` whole seconds up to the newest one."""
        return self.total_artefacts, self.total_clean

    def snapshot(self) -> dict[str, Any]:
        return {
            "span": self.span,
            "clean": list(self.clean),
            "artefacts": list(self.artefacts),
            "totals": [self.total_artefacts, self.total_clean],
            "head": self.head,
            "last_artefact": self.last_artefact,
        }

    @classmethod
    def restore(cls, data: dict[str, Any]) -> ArtefactWindow:
        if "totals" not in data:
            return cls._restore_stamped(data)
        window = cls(data["span"])
        window.clean = list(data["clean"])
        window.artefacts, window.last_artefact = list(data["artefacts"]), data["last_artefact"]
        window.total_artefacts, window.total_clean = data["totals"]
        window.head = data["head"]
        return window

    @classmethod
    def _restore_stamped(cls, data: dict[str, Any]) -> ArtefactWindow:
        """A snapshot of the earlier layout (a second stamp per bucket, no totals)."""
        window = cls(data["span"])
        window.last_artefact = data["last_artefact"]
        stamps: list[int] = data["seconds"]
        window.head = max(stamps) if max(stamps) >= 0 else None
        if window.head is None:
            return window
        for index, second in enumerate(stamps):
            if window.head - len(stamps) < second <= window.head:
                window.clean[index], window.artefacts[index] = (
                    data["clean"][index],
                    data["artefacts"][index],
                )
        window.total_clean, window.total_artefacts = sum(window.clean), sum(window.artefacts)
        return window


class DedupWindow:
    """Which sequence numbers of one device were seen: the newest, and a bitmask behind it.

    Bounded memory (one integer of ``width`` bits per device). A number more than ``width``
    below the newest is taken as a device restart (sequence reset), not as a duplicate: an
    old redelivered message is still caught by the evaluator's ``late`` check on its time.
    A number already seen but carrying a time newer than any of the device's (``restarted``)
    is a restart too: a monitor reboots and counts from 1 again, with new readings.
    """

    __slots__ = ("full", "mask", "newest", "newest_ts", "width")

    def __init__(self, width: int) -> None:
        self.width = width
        self.full = _all_ones(width)
        self.newest = -1
        self.mask = 0  # bit i set ⇔ newest − i was seen
        self.newest_ts = -math.inf  # the newest event time recorded

    def seen(self, seq: int) -> bool:
        """Whether ``seq`` was already accepted (does not record it)."""
        behind = self.newest - seq
        return 0 <= behind < self.width and bool(self.mask >> behind & 1)

    def restarted(self, ts: float) -> bool:
        """Whether a seen number at event time ``ts`` is the device counting afresh."""
        return ts > self.newest_ts

    def record(self, seq: int, ts: float) -> None:
        self.newest_ts = max(self.newest_ts, ts)
        behind = self.newest - seq
        if behind <= -self.width:  # far ahead: nothing seen is within the window any more
            self.newest, self.mask = seq, 1
        elif behind < 0:
            self.mask = ((self.mask << -behind) | 1) & self.full
            self.newest = seq
        elif behind < self.width and not self.mask >> behind & 1:
            self.mask |= 1 << behind
        else:  # far behind, or seen again with a newer time: the device restarted its numbering
            self.newest, self.mask = seq, 1

    def snapshot(self) -> list[Any]:
        newest_ts = None if self.newest_ts == -math.inf else self.newest_ts  # plain JSON
        return [self.width, self.newest, format(self.mask, "x"), newest_ts]

    @classmethod
    def restore(cls, data: list[Any]) -> DedupWindow:
        window = cls(data[0])
        window.newest, window.mask = data[1], int(data[2], 16)
        if len(data) > 3 and data[3] is not None:  # absent in older snapshots
            window.newest_ts = data[3]
        return window


@cache
def _all_ones(width: int) -> int:
    """One shared ``width``-bit mask for every device's window: a 1,024-bit integer per
    device would be one more cold object for each reading of a large ward to load."""
    return (1 << width) - 1
