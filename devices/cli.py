"""``python -m devices`` command line: ``simulate``, ``scenarios``, ``loadtest`` and ``replay``.

Only this module prints and configures logging; the commands' work lives in
:mod:`devices.simulate` and :mod:`devices.loadtest`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path

from devices.expectations import check_alerts
from devices.faults import parse_fault
from devices.loadtest import LoadConfig, format_table, run_loadtest
from devices.loadtest import __doc__ as loadtest_doc
from devices.replay import add_replay_parser, describe, replay_from_args
from devices.scenario import MIX, load_scenario, scenario_names
from devices.simulate import run_length, simulate, ward_plans, write_jsonl
from streamproc.cli import run_parsed
from streamproc.errors import ConfigError
from streamproc.timestamps import format_ts

_EPILOG_SIMULATE = """\
examples:
  # every scenario once, 600x faster than real time, against a local broker
  python -m devices simulate --beds 8 --scenario mix --broker mqtt://127.0.0.1:1883 --speed 600
  # one scenario as JSON Lines for `streamproc replay` (no broker)
  python -m devices simulate --scenario refractory_hypotension --jsonl /tmp/refractory.jsonl
  # faults on top of a scenario: 5 % duplicates on every bed, a 12-s fast clock on b002
  python -m devices simulate --beds 4 --scenario stable_ttp --speed 60 \\
      --fault duplicate:rate=0.05 --fault skew:seconds=12@b002

fault kinds (--fault KIND[:key=value,...][@BED,...]; keys at_min, duration_s, rate,
seconds, level): flush, zeroing, disconnect, probe_off, dropout (windows from at_min for
duration_s), duplicate, reorder, malformed (rate 0-1), skew (seconds).

broker credentials come from DEVICES_MQTT_USERNAME / DEVICES_MQTT_PASSWORD and a TLS CA
from DEVICES_MQTT_CA_FILE (mqtts:// URLs), never from the command line.
"""


def _add_simulate(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="publish a simulated ward (scenarios with physiology and artefacts)",
        description=(
            "Simulate bedside monitors: each bed runs a scenario (a patient course with "
            "expected alerts) and publishes readings, ABP waveforms if asked, and a retained "
            "bed context, exactly as the wire contract says (QoS 1, the device's own seq). "
            "--speed compresses time: the timeline starts in the past and ends now, so no "
            "reading is ever ahead of the receiver's clock."
        ),
        epilog=_EPILOG_SIMULATE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--beds", type=int, default=1, help="number of beds (default 1)")
    parser.add_argument(
        "--scenario",
        default=MIX,
        metavar="NAME",
        help=f"one of {', '.join(scenario_names())}, or {MIX} (every scenario in turn)",
    )
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="event seconds per wall second (≥ 1)"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (same seed, same data)")
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help="event time to simulate (default: the scenario's own length)",
    )
    parser.add_argument("--ward", default="w1", help="ward name in the topics (default w1)")
    parser.add_argument("--waveform", action="store_true", help="also publish ABP at 125 Hz")
    parser.add_argument(
        "--fault", action="append", default=[], metavar="SPEC", help="add a fault (see below)"
    )
    parser.add_argument(
        "--jsonl",
        type=Path,
        metavar="FILE",
        help="write the messages as JSON Lines {topic, payload} instead of publishing",
    )
    parser.add_argument(
        "--start",
        type=float,
        metavar="EPOCH",
        help="with --jsonl: epoch seconds of the first reading (default: ends now)",
    )
    parser.set_defaults(handler=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    faults = [parse_fault(spec) for spec in args.fault]
    if args.start is not None and args.jsonl is None:
        raise ConfigError("--start places a --jsonl file in time; a live run always ends now")
    if args.jsonl is None:
        asyncio.run(
            simulate(
                broker=args.broker,
                beds=args.beds,
                scenario=args.scenario,
                speed=args.speed,
                seed=args.seed,
                duration=args.duration,
                ward=args.ward,
                waveform=args.waveform,
                faults=faults,
            )
        )
        return 0
    options = {"scenario": args.scenario, "beds": args.beds, "seed": args.seed, "ward": args.ward}
    length = run_length(ward_plans(**options, start_ts=0.0, duration=args.duration))
    start = time.time() - length if args.start is None else args.start
    plans = ward_plans(
        **options, start_ts=start, duration=args.duration, waveform=args.waveform, faults=faults
    )
    count = write_jsonl(args.jsonl, plans)
    print(
        f"wrote {count} messages to {args.jsonl} (from {format_ts(start)}, {length:.0f} s); "
        f"check alerts with: python -m devices check --scenario {args.scenario} "
        f"--beds {args.beds} --start {start:.3f} ALERTS.jsonl"
    )
    return 0


def _add_check(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "check",
        help="compare alerts (JSON Lines) with what the scenarios expect",
        description=(
            "Check the alert events of a run (e.g. `streamproc replay` output, one alert "
            "payload per line) against the expected alerts of each bed's scenario. Give the "
            "same --scenario, --beds and --start as the simulation. Exit status 1 when an "
            "expected alert is missing or an unexpected physiological alert was raised."
        ),
        epilog=(
            "example:\n"
            "  python -m devices simulate --scenario mix --beds 8 --start 1800000000 "
            "--jsonl ward.jsonl\n"
            "  streamproc replay ward.jsonl --out alerts.jsonl\n"
            "  python -m devices check --scenario mix --beds 8 --start 1800000000 alerts.jsonl"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("alerts", type=Path, help="alert events, one JSON object per line")
    parser.add_argument("--scenario", default=MIX, metavar="NAME", help="as for simulate")
    parser.add_argument("--beds", type=int, default=1, help="as for simulate")
    parser.add_argument("--ward", default="w1", help="as for simulate")
    parser.add_argument(
        "--start", type=float, required=True, metavar="EPOCH", help="the simulation's --start"
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="a compressed live run: leave out alerts on the receiver's clock (signal.lost...)",
    )
    parser.set_defaults(handler=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    by_bed: dict[str, list[dict[str, object]]] = {}
    for line in args.alerts.read_text(encoding="utf-8").splitlines():
        if line.strip():
            alert = json.loads(line)
            if alert.get("ward") == args.ward:
                by_bed.setdefault(str(alert.get("bed")), []).append(alert)
    plans = ward_plans(
        scenario=args.scenario,
        beds=args.beds,
        seed=0,
        ward=args.ward,
        start_ts=args.start,
        duration=None,
    )
    failed = 0
    for plan in plans:
        verdict = check_alerts(
            plan.scenario,
            by_bed.get(plan.bed, []),
            start_ts=args.start,
            with_arrival_clock=not args.live,
        )
        failed += not verdict.ok
        mark = "ok  " if verdict.ok else "FAIL"
        print(f"{mark} {plan.bed} {plan.scenario.name}: {verdict.describe(args.start)}")
    return 1 if failed else 0


def _add_scenarios(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "scenarios",
        help="list the scenarios and the alerts each expects",
        description="List the shipped scenarios with their length and expected alerts.",
    )
    parser.set_defaults(handler=_run_scenarios)


def _run_scenarios(args: argparse.Namespace) -> int:
    del args
    for name in scenario_names():
        scenario = load_scenario(name)
        print(f"{name} ({scenario.duration_min:g} min): {scenario.description}")
        for exp in scenario.expect:
            clock = " [receiver's clock]" if exp.clock == "arrival" else ""
            print(
                f"    expects {exp.rule} ({exp.priority}, {exp.kind}) at "
                f"{exp.at_min:g} ± {exp.tolerance_min:g} min{clock}"
            )
        if not scenario.expect:
            print("    expects no alert")
    return 0


# --- command line -----------------------------------------------------------------------------


def _add_loadtest(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "loadtest",
        help="drive a rate of readings at a running streamproc; report throughput and latency",
        description=loadtest_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--beds", type=int, default=100, help="number of beds (default 100)")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="readings per second, all beds together (default: MAP at 1 Hz per bed)",
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds of publishing (default 10)"
    )
    parser.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="broker URL")
    parser.add_argument("--ward", default="load", help="ward name in the topics (default load)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--breach-fraction", type=float, default=0.1, help="share of beds that breach (0.1)"
    )
    parser.add_argument(
        "--drain",
        type=float,
        default=10.0,
        help="at most this many seconds to wait for the last alerts (ends once quiet)",
    )
    parser.add_argument(
        "--malformed-rate",
        type=float,
        default=0.0,
        help="share of MAP messages sent as truncated JSON (rejected as malformed_json)",
    )
    parser.add_argument(
        "--duplicate-rate",
        type=float,
        default=0.0,
        help="share of MAP messages sent twice (rejected as duplicate)",
    )
    parser.add_argument(
        "--watch-pid",
        type=_labelled_pid,
        action="append",
        default=[],
        metavar="[LABEL=]PID",
        help="also report the CPU time of this process, e.g. streamproc=1234; repeatable",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures as JSON")
    parser.set_defaults(handler=_run_loadtest)


def _labelled_pid(text: str) -> tuple[str, int]:
    label, _, pid = text.rpartition("=")
    try:
        return label or f"pid {pid}", int(pid)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PID or LABEL=PID") from None


def _run_loadtest(args: argparse.Namespace) -> int:
    rates = (args.breach_fraction, args.malformed_rate, args.duplicate_rate)
    if args.duration <= 0 or not all(0.0 <= r <= 1.0 for r in rates):
        raise ConfigError(
            "--duration must be positive; --breach-fraction, --malformed-rate and "
            "--duplicate-rate within 0–1"
        )
    cfg = LoadConfig(
        broker=args.broker,
        beds=args.beds,
        rate=args.rate,
        duration=args.duration,
        ward=args.ward,
        seed=args.seed,
        breach_fraction=args.breach_fraction,
        malformed_rate=args.malformed_rate,
        duplicate_rate=args.duplicate_rate,
        drain=args.drain,
        watch_pids=tuple(args.watch_pid),
    )
    report = asyncio.run(run_loadtest(cfg))
    print(format_table(report))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 1 if report["alerts"]["lost"] else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devices",
        description=(
            "Simulated ICU bedside monitors for streamproc: realistic septic-shock scenarios "
            "with artefacts and faults, and a load generator that measures throughput and "
            "alert latency."
        ),
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True)
    _add_simulate(subparsers)
    _add_scenarios(subparsers)
    _add_check(subparsers)
    _add_loadtest(subparsers)
    add_replay_parser(subparsers, handler=_run_replay)
    return parser


def _run_replay(args: argparse.Namespace) -> int:
    print(describe(replay_from_args(args)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_parsed(build_parser(), argv)
