"""ABP waveform → MAP numerics and arterial-line artefacts (design §3.2), per bed.

Samples are cut into blocks of ``emit_every_s`` (1 s) on the event-time grid
(block ``k`` holds the samples with ``k ≤ t / emit_every_s < k + 1``). Each block is
reduced to a few numbers with numpy (``reduceat``): count, sum, max, min, flush and zero
sample counts. When a block is complete, one :class:`DerivedMap` is emitted at the block's
end, computed over the trailing window (8 blocks): the mean, or an artefact marker::

    blocks   … | k-7 | k-6 | … | k-1 |  k  |            one output at (k + 1) · 1 s
                 └──────── window of 8 s ───────┘        = mean of all samples, or artefact

A block is complete once a chunk reaches past its end, so the outputs depend only on
the samples and their times: the same chunks always give the same outputs (replay == live).
Thresholds come from ``presets/waveform/abp.toml``.
"""

from __future__ import annotations

import math
import tomllib
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from streamproc.errors import ConfigError, RejectedReading
from streamproc.events import ArtefactReading, Reading, WaveformChunk

__all__ = [
    "ARTEFACT_KINDS",
    "ArtefactKind",
    "DerivedMap",
    "WaveformSettings",
    "WaveformState",
    "derive_events",
    "waveform_settings",
]

ArtefactKind = Literal["flush", "zeroing", "damped", "implausible_mean"]
ARTEFACT_KINDS: Final[tuple[ArtefactKind, ...]] = (
    "flush",
    "zeroing",
    "damped",
    "implausible_mean",
)

# Slack, in samples, when placing sample times on the block grid: epoch seconds near 1.7e9
# carry float errors of ~1e-5 samples at 125 Hz; a sample is never closer than 1 to a border.
_GRID_EPS: Final = 1e-3

# One block's reduction: index, count, sum, max, min, flush samples, zero samples.
_Block = tuple[int, int, float, float, float, int, int]


@dataclass(frozen=True, slots=True)
class WaveformSettings:
    window_s: float
    emit_every_s: float
    min_coverage: float
    flush_mmHg: float  # noqa: N815 - unit in the name, as in the preset
    zero_mmHg: float  # noqa: N815
    min_samples: int
    pulse_pressure_min_mmHg: float  # noqa: N815
    mean_min_mmHg: float  # noqa: N815
    mean_max_mmHg: float  # noqa: N815

    @property
    def window_blocks(self) -> int:
        return max(1, round(self.window_s / self.emit_every_s))

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> WaveformSettings:
        try:
            settings = cls(**raw["map"], **raw["artefact"])
        except (KeyError, TypeError) as exc:
            raise ConfigError(f"waveform preset: {exc}; see presets/waveform/abp.toml") from exc
        if settings.emit_every_s <= 0 or settings.window_s < settings.emit_every_s:
            raise ConfigError("waveform preset: need 0 < emit_every_s ≤ window_s")
        return settings


@cache
def waveform_settings() -> WaveformSettings:
    """The shipped defaults (``presets/waveform/abp.toml``)."""
    text = resources.files("streamproc.presets").joinpath("waveform", "abp.toml").read_text("utf-8")
    return WaveformSettings.from_mapping(tomllib.loads(text))


@dataclass(frozen=True, slots=True)
class DerivedMap:
    """One output per block: ``map`` (mmHg) when usable, else the ``artefact`` kind."""

    ts: float
    map: float | None
    artefact: ArtefactKind | None = None


class WaveformState:
    """One bed's ABP window: feed chunks with :meth:`push`, checkpoint with :meth:`snapshot`."""

    __slots__ = ("_history", "_next_t", "_pending", "settings")

    def __init__(self, *, settings: WaveformSettings | None = None) -> None:
        self.settings = settings or waveform_settings()
        self._history: deque[_Block] = deque(maxlen=self.settings.window_blocks)
        self._pending: _Block | None = None
        self._next_t: float | None = None  # time of the next expected sample

    def push(self, t0: float, fs: float, samples: npt.ArrayLike) -> list[DerivedMap]:
        """Add consecutive samples (mmHg) starting at ``t0``; returns the completed outputs."""
        x = np.asarray(samples, dtype=np.float64)
        if x.size == 0:
            return []
        self._check_order(t0, fs)
        blocks = self._reduce(x, t0, fs)
        self._next_t = t0 + x.size / fs
        next_block = math.floor((self._next_t + _GRID_EPS / fs) / self.settings.emit_every_s)
        return self._complete(blocks, next_block, fs)

    def _check_order(self, t0: float, fs: float) -> None:
        if self._next_t is not None and t0 < self._next_t - 0.5 / fs:
            raise RejectedReading(
                "late", f"waveform chunk at t0={t0:.3f} overlaps samples up to {self._next_t:.3f}"
            )

    def _reduce(self, x: npt.NDArray[np.float64], t0: float, fs: float) -> list[_Block]:
        ks, starts = self._block_starts(x.size, t0, fs)
        cfg = self.settings
        highs = np.maximum.reduceat(x, starts)
        lows = np.minimum.reduceat(x, starts)
        # Counting flush / zero samples costs a pass each: only when a block holds any.
        flush = _count_where(x >= cfg.flush_mmHg, starts) if highs.max() >= cfg.flush_mmHg else None
        zero = _count_where(x < cfg.zero_mmHg, starts) if lows.min() < cfg.zero_mmHg else None
        none = [0] * len(ks)
        stats = zip(
            ks,
            [b - a for a, b in zip(starts, [*starts[1:], x.size], strict=True)],
            np.add.reduceat(x, starts).tolist(),
            highs.tolist(),
            lows.tolist(),
            none if flush is None else flush,
            none if zero is None else zero,
            strict=True,
        )
        blocks: list[_Block] = list(stats)
        pending = self._pending
        if pending is not None and blocks[0][0] == pending[0]:
            blocks[0] = _merge(pending, blocks[0])
        elif pending is not None:
            blocks.insert(0, pending)
        self._pending = None
        return blocks

    def _block_starts(self, n: int, t0: float, fs: float) -> tuple[list[int], list[int]]:
        """Block indices and the index of each block's first sample (pure Python: few blocks)."""
        step = self.settings.emit_every_s
        slack = _GRID_EPS / fs
        first = math.floor((t0 + slack) / step)
        last = math.floor((t0 + (n - 1) / fs + slack) / step)
        ks, starts = [first], [0]
        for k in range(first + 1, last + 1):
            start = math.ceil((k * step - t0) * fs - _GRID_EPS)
            if starts[-1] < start < n:
                ks.append(k)
                starts.append(start)
        return ks, starts

    def _complete(self, blocks: list[_Block], next_block: int, fs: float) -> list[DerivedMap]:
        if blocks and blocks[-1][0] >= next_block:
            self._pending = blocks.pop()
        out: list[DerivedMap] = []
        for block in blocks:
            self._history.append(block)
            derived = self._window_output(block[0], fs)
            if derived is not None:
                out.append(derived)
        return out

    def _window_output(self, k: int, fs: float) -> DerivedMap | None:
        cfg = self.settings
        oldest = k - cfg.window_blocks
        window = [b for b in self._history if b[0] > oldest]
        n = sum(b[1] for b in window)
        ts = (k + 1) * cfg.emit_every_s
        mean = sum(b[2] for b in window) / n
        artefact = self._artefact(window, mean)
        if artefact is not None:
            return DerivedMap(ts, None, artefact)
        if n < cfg.min_coverage * cfg.window_s * fs:
            return None
        return DerivedMap(ts, mean)

    def _artefact(self, window: Sequence[_Block], mean: float) -> ArtefactKind | None:
        cfg = self.settings
        if sum(b[5] for b in window) >= cfg.min_samples:
            return "flush"
        if sum(b[6] for b in window) >= cfg.min_samples:
            return "zeroing"
        if max(b[3] for b in window) - min(b[4] for b in window) < cfg.pulse_pressure_min_mmHg:
            return "damped"
        if not cfg.mean_min_mmHg <= mean <= cfg.mean_max_mmHg:
            return "implausible_mean"
        return None

    def snapshot(self) -> dict[str, Any]:
        """Plain JSON-able state; :meth:`restore` gives a state that emits the same outputs."""
        return {
            "next_t": self._next_t,
            "pending": None if self._pending is None else list(self._pending),
            "history": [list(b) for b in self._history],
        }

    @classmethod
    def restore(
        cls, data: Mapping[str, Any], *, settings: WaveformSettings | None = None
    ) -> WaveformState:
        state = cls(settings=settings)
        state._next_t = data["next_t"]
        state._pending = None if data["pending"] is None else _block(data["pending"])
        state._history.extend(_block(b) for b in data["history"])
        return state


def _count_where(mask: npt.NDArray[np.bool_], starts: list[int]) -> list[int]:
    counts: list[int] = np.add.reduceat(mask, starts).tolist()
    return counts


def _merge(a: _Block, b: _Block) -> _Block:
    return (
        a[0],
        a[1] + b[1],
        a[2] + b[2],
        max(a[3], b[3]),
        min(a[4], b[4]),
        a[5] + b[5],
        a[6] + b[6],
    )


def _block(raw: Iterable[Any]) -> _Block:
    k, n, total, high, low, flush, zero = raw
    return (int(k), int(n), float(total), float(high), float(low), int(flush), int(zero))


def derive_events(state: WaveformState, chunk: WaveformChunk) -> list[Reading | ArtefactReading]:
    """The core events a chunk yields: MAP readings, or MAP artefacts for ``signal.artefact``.

    Derived readings carry the chunk's device and arrival but no ``seq``: they are not
    messages, so they take no part in ``(device, seq)`` de-duplication.
    """
    events: list[Reading | ArtefactReading] = []
    for derived in state.push(chunk.t0, chunk.fs, chunk.samples):
        if derived.map is None:
            events.append(
                ArtefactReading(chunk.ward, chunk.bed, derived.ts, ("map",), chunk.arrival)
            )
        else:
            values = {"map": derived.map}
            events.append(
                Reading(
                    chunk.ward, chunk.bed, derived.ts, values, chunk.device, None, chunk.arrival
                )
            )
    return events
