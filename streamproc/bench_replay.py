"""Benchmarks of the replay part: ``streamproc bench-waveform`` and ``streamproc bench-replay``.

* ``bench-waveform``: ABP waveform → MAP (:class:`streamproc.waveform.WaveformState`) on a
  synthetic, seeded hour of 125-Hz arterial pressure, in chunks of 1, 10 and 60 s, with
  per-chunk latency percentiles (throughput: the best of 3 passes). Same-run baseline:
  ``numpy.mean`` of each chunk, the least any MAP derivation must do. A last line feeds
  1-s ``WaveformChunk`` events (tuples of floats, as the codec makes them) through
  :meth:`Evaluator.feed`.
* ``bench-replay PATH``: ``streamproc replay PATH --report DIR`` timed end to end, e.g. on
  the whole PhysioNet/CinC Challenge 2012 set A read straight from ``set-a.tar.gz``.

Benchmarks print figures; they never assert them.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Final

import numpy as np
import numpy.typing as npt

from streamproc.evaluator import Evaluator
from streamproc.events import WaveformChunk
from streamproc.percentiles import percentile
from streamproc.waveform import WaveformState

__all__ = ["configure_parser", "synthetic_abp", "waveform_rates"]

#: Shape of the synthetic trace: test data, not clinical defaults.
_FS: Final = 125.0
_HEART_HZ: Final = 1.3
_START: Final = 1_795_608_000.0  # 2026-11-25T12:00:00Z
_CHUNKS_S: Final = (1, 10, 60)
#: Throughput is the best of this many passes (the machine is shared; noise only slows).
_REPEATS: Final = 3


def synthetic_abp(seconds: int, *, seed: int = 7) -> npt.NDArray[np.float64]:
    """A pulsatile arterial pressure around 70/40 mmHg with noise and a slow drift."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * _FS)) / _FS
    beat = np.maximum(np.sin(2 * np.pi * _HEART_HZ * t), 0.0) ** 2
    drift = 5.0 * np.sin(2 * np.pi * t / 600.0)
    trace: npt.NDArray[np.float64] = 45.0 + 40.0 * beat + drift + rng.normal(0, 1.0, t.size)
    return trace


def _timed(
    chunks: Sequence[npt.NDArray[np.float64]],
    make_step: Callable[[], Callable[[int, npt.NDArray[np.float64]], None]],
) -> tuple[float, list[float]]:
    """Best wall time of ``_REPEATS`` untimed passes, then per-chunk latencies (µs)."""
    best = float("inf")
    for _ in range(_REPEATS):
        step = make_step()
        gc.collect()
        started = time.perf_counter()
        for i, chunk in enumerate(chunks):
            step(i, chunk)
        best = min(best, time.perf_counter() - started)
    step = make_step()
    latencies = []
    for i, chunk in enumerate(chunks):
        t0 = time.perf_counter_ns()
        step(i, chunk)
        latencies.append((time.perf_counter_ns() - t0) / 1000)
    return best, latencies


def _derive(*, chunk_s: float) -> Callable[[int, npt.NDArray[np.float64]], None]:
    state = WaveformState()

    def step(i: int, chunk: npt.NDArray[np.float64]) -> None:
        state.push(_START + i * chunk_s, _FS, chunk)

    return step


def _baseline(_i: int, chunk: npt.NDArray[np.float64]) -> None:
    np.mean(chunk)


def waveform_rates(seconds: int) -> list[str]:
    """One line per chunk size: samples/s of the derivation and of the baseline, latencies."""
    samples = synthetic_abp(seconds)
    lines = [
        (
            f"ABP waveform → MAP: {samples.size:,} samples ({seconds} s at {_FS:g} Hz), "
            "trailing 8-s window, one output per second"
        )
    ]
    for chunk_s in _CHUNKS_S:
        n = int(chunk_s * _FS)
        chunks = [samples[i : i + n] for i in range(0, samples.size, n)]
        wall, lat = _timed(chunks, partial(_derive, chunk_s=chunk_s))
        base, _ = _timed(chunks, lambda: _baseline)
        rate, baseline = samples.size / wall, samples.size / base
        lines.append(
            f"  {chunk_s:>3} s chunks: {rate / 1e6:6.2f} M samples/s "
            f"(baseline numpy.mean {baseline / 1e6:6.1f} M/s, ratio {rate / baseline:.2f}); "
            f"per chunk p50 {percentile(lat, 50):.1f} µs, p99 {percentile(lat, 99):.1f} µs"
        )
    lines.append(_through_evaluator(samples))
    return lines


def _through_evaluator(samples: npt.NDArray[np.float64]) -> str:
    n = int(_FS)
    events = [
        WaveformChunk("w1", "b1", _START + i / _FS, _FS, tuple(samples[i : i + n].tolist()))
        for i in range(0, samples.size, n)
    ]
    evaluator = Evaluator()
    gc.collect()
    started = time.perf_counter()
    for event in events:
        evaluator.feed(event)
    wall = time.perf_counter() - started
    return (
        f"  1-s WaveformChunk events through Evaluator.feed (derivation + MAP rules): "
        f"{samples.size / wall / 1e6:.2f} M samples/s ({len(events) / wall:,.0f} chunks/s)"
    )


def _run_waveform(args: argparse.Namespace) -> int:
    print("\n".join(waveform_rates(args.seconds)))
    return 0


def _run_replay(args: argparse.Namespace) -> int:
    from streamproc.cli import main

    with tempfile.TemporaryDirectory() as scratch:
        report = Path(args.report or scratch)
        argv = ["replay", *args.paths, "--report", str(report), "--out", str(report / "all.jsonl")]
        for protocol in args.protocol or ():
            argv += ["--protocol", protocol]
        started = time.perf_counter()
        code = main(argv)
        wall = time.perf_counter() - started
        summary = json.loads((report / "summary.json").read_text("utf-8"))
    beds = len(summary["beds"])
    hours = sum(b["hours"] for b in summary["beds"])
    raised = {p: t["alerts_raised"] for p, t in summary["totals"].items()}
    print(
        f"replay of {', '.join(args.paths)} with a report: {wall:.1f} s wall clock for "
        f"{beds:,} beds, {hours:,.0f} bed-hours ({hours / wall:,.0f} bed-hours/s); "
        f"alerts raised: {raised}"
    )
    return code


def configure_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    waveform = subparsers.add_parser(
        "bench-waveform",
        help="benchmark ABP waveform → MAP (samples/s, per-chunk latency)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    waveform.add_argument(
        "--seconds", type=int, default=3600, help="length of the synthetic trace (default 3600)"
    )
    waveform.set_defaults(handler=_run_waveform)
    replay = subparsers.add_parser(
        "bench-replay",
        help="time `streamproc replay … --report` end to end (e.g. Challenge 2012 set A)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    replay.add_argument("paths", nargs="+", metavar="RECORDING", help="e.g. set-a.tar.gz")
    replay.add_argument("--protocol", action="append", metavar="NAME", help="as for replay")
    replay.add_argument("--report", metavar="DIR", help="keep the report here (default: discard)")
    replay.set_defaults(handler=_run_replay)
