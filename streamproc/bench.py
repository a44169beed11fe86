"""``streamproc bench``: throughput and per-reading latency of the core on a synthetic ward.

A synthetic ward of ``--beds`` beds over ``--seconds`` seconds of event time: MAP at 1 Hz,
skin temperature every 5 s, CRT hourly and lactate every 2 h, staggered over the beds, one
reading per message; a few beds are hypotensive so that alerts are raised as well. Every
bed has its context message (protocol, ``protocol_started``), fed before the clock starts,
as in a running ward; all messages are built before the clock starts too. Three passes on
fresh evaluators, each ticking once per second of event time as the live service does:

* evaluator alone: ``Evaluator.feed`` on decoded events (plus the ticks);
* decode + evaluate: :func:`streamproc.ingest.ingest` on the raw bytes (plus the ticks);
* decode alone: :func:`streamproc.codec.decode`, the same-run baseline.

Throughput passes are timed in CPU time of this process (``process_time``: on a shared
machine the time other processes hold the core is not ours), untimed per reading,
``--repeat`` times on fresh state, and the fastest counts (as ``timeit`` does: noise only
ever slows a run down);
one more pass of each times every reading (``perf_counter_ns``) for the p50/p99 latencies.
This is a benchmark, not a test: it prints figures and never asserts them.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from streamproc.codec import decode
from streamproc.evaluator import Evaluator
from streamproc.events import Reading
from streamproc.ingest import ingest
from streamproc.percentiles import percentile

__all__ = ["Message", "PassResult", "run_bench", "synthetic_ward"]

#: Cadences of the synthetic ward, in seconds (issue 2: MAP 1 Hz, skin temperature every
#: 5 s, CRT hourly, lactate every 2 h). Test data shape, not clinical defaults.
SKIN_EVERY_S: Final = 5
CRT_EVERY_S: Final = 3600
LACTATE_EVERY_S: Final = 7200
#: One bed in this many is hypotensive (MAP around 42 mmHg), so floor alerts happen too.
HYPOTENSIVE_ONE_IN: Final = 20
#: Every bed has a context message whose protocol started this long before the run.
PROTOCOL_STARTED_BEFORE_S: Final = 1800
_START: Final = 1_795_608_000  # 2026-11-25T12:00:00Z


@dataclass(slots=True)
class Message:
    """One synthetic reading: the decoded event and the wire bytes it comes from."""

    topic: str
    payload: bytes
    event: Reading


def _message(*, ward: str, bed: str, ts: float, seq: int, signal: str, value: float) -> Message:
    values = {signal: round(value, 2)}
    body = {"ts": ts, "device": f"mon-{bed}", "seq": seq, "values": values}
    payload = json.dumps(body, separators=(",", ":")).encode()
    event = Reading(ward, bed, ts, values, f"mon-{bed}", seq)
    return Message(f"icu/{ward}/{bed}/vitals", payload, event)


def _bed_second(bed_no: int, t: int, rng: random.Random) -> list[tuple[str, float]]:
    """The signals bed ``bed_no`` measures at second ``t``, with plausible values."""
    base = 42.0 if bed_no % HYPOTENSIVE_ONE_IN == 0 else 58.0
    out = [("map", base + rng.gauss(0.0, 3.0))]
    if (t + bed_no) % SKIN_EVERY_S == 0:
        out.append(("skin_temp", 33.0 + rng.gauss(0.0, 0.3)))
    if (t + bed_no * 37) % CRT_EVERY_S == 0:
        out.append(("crt", 2.0 + abs(rng.gauss(0.0, 0.8))))
    if (t + bed_no * 71) % LACTATE_EVERY_S == 0:
        out.append(("lactate", 1.2 + abs(rng.gauss(0.0, 0.6))))
    return out


def synthetic_ward(*, beds: int, seconds: int, seed: int = 1) -> list[list[Message]]:
    """Messages per second of event time, in bus order (beds interleaved)."""
    rng = random.Random(seed)
    seq = [0] * beds
    per_second: list[list[Message]] = []
    for t in range(seconds):
        batch = []
        for bed_no in range(beds):
            ts = _START + t + bed_no / beds  # beds spread over the second
            for signal, value in _bed_second(bed_no, t, rng):
                seq[bed_no] += 1
                batch.append(
                    _message(
                        ward="w1",
                        bed=f"b{bed_no:04d}",
                        ts=ts,
                        seq=seq[bed_no],
                        signal=signal,
                        value=value,
                    )
                )
        per_second.append(batch)
    return per_second


@dataclass(slots=True)
class PassResult:
    name: str
    readings: int
    seconds: float
    alerts: int
    p50_us: float
    p99_us: float

    @property
    def per_second(self) -> float:
        return self.readings / self.seconds

    @property
    def us_per_reading(self) -> float:
        return self.seconds * 1e6 / self.readings


Step = Callable[[Message], int]  # handles one message, returns alerts produced


def _throughput(
    ward: Sequence[Sequence[Message]], step: Step, tick: Callable[[float], int]
) -> tuple[float, int]:
    alerts = 0
    started = time.process_time()
    for second, batch in enumerate(ward):
        alerts += tick(float(_START + second))
        for message in batch:
            alerts += step(message)
    return time.process_time() - started, alerts


def _latencies(
    ward: Sequence[Sequence[Message]], step: Step, tick: Callable[[float], int]
) -> list[int]:
    clock = time.perf_counter_ns
    samples = []
    for second, batch in enumerate(ward):
        tick(float(_START + second))
        for message in batch:
            began = clock()
            step(message)
            samples.append(clock() - began)
    return samples


def _best_throughput(
    ward: Sequence[Sequence[Message]],
    make: Callable[[], tuple[Step, Callable[[float], int]]],
    repeat: int,
) -> tuple[float, int]:
    """The fastest of ``repeat`` runs on fresh state (timeit's rule: noise only slows down)."""
    runs = []
    for _ in range(repeat):
        step, tick = make()
        gc.collect()
        runs.append(_throughput(ward, step, tick))
    return min(runs)


def _measure(
    name: str,
    ward: Sequence[Sequence[Message]],
    make: Callable[[], tuple[Step, Callable[[float], int]]],
    repeat: int,
) -> PassResult:
    readings = sum(len(b) for b in ward)
    elapsed, alerts = _best_throughput(ward, make, repeat)
    step, tick = make()
    gc.collect()
    micros = [ns / 1000.0 for ns in _latencies(ward, step, tick)]
    return PassResult(
        name, readings, elapsed, alerts, percentile(micros, 50), percentile(micros, 99)
    )


def _admitted(protocol: str, beds: int) -> Evaluator:
    """An evaluator that has every bed's context message, as a running ward would."""
    evaluator = Evaluator(default_protocol=protocol)
    for bed_no in range(beds):
        context = {
            "patient": f"p{bed_no}",
            "protocol": protocol,
            "protocol_started": _START - PROTOCOL_STARTED_BEFORE_S,
        }
        topic = f"icu/w1/b{bed_no:04d}/context"
        ingest(evaluator, topic, json.dumps(context).encode(), received=None)
    return evaluator


def _evaluator_pass(protocol: str, beds: int) -> tuple[Step, Callable[[float], int]]:
    evaluator = _admitted(protocol, beds)
    return (lambda m: len(evaluator.feed(m.event))), (lambda now: len(evaluator.advance(now)))


def _ingest_pass(protocol: str, beds: int) -> tuple[Step, Callable[[float], int]]:
    evaluator = _admitted(protocol, beds)

    def step(m: Message) -> int:
        return len(ingest(evaluator, m.topic, m.payload, received=None).alerts)

    return step, (lambda now: len(evaluator.advance(now)))


def _decode_pass() -> tuple[Step, Callable[[float], int]]:
    def step(m: Message) -> int:
        decode(m.topic, m.payload)
        return 0

    return step, (lambda now: 0)


def run_bench(*, beds: int, seconds: int, protocol: str, repeat: int = 3) -> list[PassResult]:
    ward = synthetic_ward(beds=beds, seconds=seconds)
    gc.collect()
    gc.freeze()  # the prebuilt ward is long-lived, as a service's state would be
    try:
        return [
            _measure("evaluator alone", ward, lambda: _evaluator_pass(protocol, beds), repeat),
            _measure("decode + evaluate", ward, lambda: _ingest_pass(protocol, beds), repeat),
            _measure("decode alone (baseline)", ward, _decode_pass, repeat),
        ]
    finally:
        gc.unfreeze()


def render(results: Sequence[PassResult], *, beds: int, seconds: int, protocol: str) -> str:
    readings = results[0].readings
    header = (
        f"synthetic ward: {beds} beds × {seconds} s of event time = {readings:,} readings "
        "(MAP 1 Hz, skin temperature every 5 s, CRT hourly, lactate 2-hourly; "
        f"protocol {protocol}; one tick per second). Throughput in CPU time, fastest of "
        "the repeats; latency in wall-clock time per reading."
    )
    columns = f"{'pass':<26}{'readings/s':>12}{'µs/reading':>12}{'p50 µs':>9}{'p99 µs':>9}"
    lines = [header, columns + f"{'alerts':>8}"]
    lines += [
        f"{r.name:<26}{r.per_second:>12,.0f}{r.us_per_reading:>12.2f}"
        f"{r.p50_us:>9.2f}{r.p99_us:>9.2f}{r.alerts:>8}"
        for r in results
    ]
    evaluator, ingest_, decode_ = results
    share = evaluator.us_per_reading / ingest_.us_per_reading
    ratio = ingest_.us_per_reading / decode_.us_per_reading
    lines.append(
        f"evaluator share of decode + evaluate: {share:.0%}; "
        f"decode + evaluate costs {ratio:.2f}× decode alone"
    )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    results = run_bench(
        beds=args.beds, seconds=args.seconds, protocol=args.protocol, repeat=args.repeat
    )
    print(render(results, beds=args.beds, seconds=args.seconds, protocol=args.protocol))
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def configure_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="measure the core's throughput and per-reading latency on a synthetic ward",
        description=(
            "Feed a synthetic ward (MAP 1 Hz, skin temperature every 5 s, CRT hourly, lactate "
            "every 2 h) through the evaluator alone, decode + evaluate, and decode alone; "
            "print readings/s, µs per reading and p50/p99 latency. Runs on one core."
        ),
    )
    parser.add_argument("--beds", type=_positive, default=1000, help="beds (default 1000)")
    parser.add_argument(
        "--seconds", type=_positive, default=90, help="seconds of event time (default 90)"
    )
    parser.add_argument("--protocol", default="tartare2s-ttp", help="protocol preset")
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=3,
        help="throughput runs per pass; the fastest is reported (default 3)",
    )
    parser.set_defaults(handler=_run)
