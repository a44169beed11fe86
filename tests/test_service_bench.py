"""``streamproc bench-service`` runs end to end on a small load (figures are not asserted)."""

from __future__ import annotations

import pytest

from streamproc.bench_service import report, run_bench
from streamproc.percentiles import percentile


def test_percentile_nearest_rank() -> None:
    samples = [float(n) for n in range(1, 101)]
    assert percentile(samples, 50) == 50.0
    assert percentile(samples, 99) == 99.0
    assert percentile(samples, 99.9) == 100.0
    assert percentile([], 50) != percentile([], 50)  # NaN when there is nothing to rank


@pytest.mark.broker
@pytest.mark.asyncio
async def test_small_bench_counts_every_reading() -> None:
    result = await run_bench(broker=None, readings=600, beds=10, rate=200.0, seconds=1.0)
    assert result.accepted == result.readings == 600  # no loss
    assert result.baseline_rate > 0
    assert result.service_rate > 0
    assert result.sent == 200
    assert result.latencies["written"]
    assert len(result.latencies["acknowledged"]) == len(result.latencies["written"])
    text = report(result)
    assert "no loss" in text
    assert "p99.9" in text
