"""Latency percentiles, computed one way for every benchmark and load test (nearest rank)."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["percentile"]


def percentile(samples: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by nearest rank; NaN when there are no samples.

    Nearest rank reports a value that was measured (no interpolation between two samples),
    so a p99.9 over a thousand samples is the worst one, as a reader of a latency table
    expects.
    """
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = math.ceil(q / 100 * len(ordered))  # 1-based: the smallest rank covering q %
    return ordered[max(0, min(len(ordered), rank) - 1)]
