"""``streamproc demo``: a broker, a simulated ward and the service, with a live ward view.

With no ``--broker`` the demo starts Mosquitto (found on PATH) on a free loopback port, in
a temporary directory that is removed afterwards. It then runs a simulated ward and the
real service against it, and shows every bed — latest values, targets in force, active
alerts — redrawn once a second. ``--no-tty`` (or output that is not a terminal) prints
each alert event as a line instead. Ctrl-C or ``--duration`` stops everything cleanly.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
import textwrap
from collections.abc import Coroutine
from contextlib import ExitStack
from pathlib import Path
from typing import Any, Final, TextIO

from prometheus_client import CollectorRegistry

from devices.scenario import MIX
from devices.simulate import simulate
from streamproc.broker import LocalBroker
from streamproc.evaluator import Evaluator
from streamproc.models import AlertEventPayload, BedStatusPayload
from streamproc.service import Service, open_service, serve
from streamproc.settings import load_settings

__all__ = ["alert_line", "configure_parser", "render_ward", "run_demo"]

#: Event seconds per wall second: a one-hour scenario plays in 40 s.
DEFAULT_SPEED: Final = 90.0
#: Seconds between two redraws of the live view.
_REDRAW: Final = 1.0
_VIEW_WIDTH: Final = 90
_CLEAR: Final = "\x1b[H\x1b[2J"
_BOLD, _RED, _YELLOW, _RESET = "\x1b[1m", "\x1b[31m", "\x1b[33m", "\x1b[0m"
_SHOWN_SIGNALS: Final = ("map", "skin_temp", "core_temp", "crt", "lactate")
_PRIORITY_COLOUR: Final = {"high": _RED, "medium": _YELLOW, "low": ""}


def alert_line(alert: AlertEventPayload) -> str:
    """One alert event as a line of text (no patient id: it is never shown or logged)."""
    return (
        f"{alert.at}  {alert.ward}/{alert.bed}  {alert.event:<12} {alert.priority:<6} "
        f"{alert.rule}: {alert.message}  [alert {alert.alert_id}]"
    )


def render_ward(statuses: list[BedStatusPayload], *, header: str, colour: bool = True) -> str:
    """The live view: one block per bed with its latest values, targets and alerts."""
    lines = [header, ""]
    names = "  ".join(f"{name:>9}" for name in _SHOWN_SIGNALS)
    lines.append(f"{'bed':<8} {'protocol':<15} {names}")
    for status in statuses:
        values = "  ".join(_value(status, name) for name in _SHOWN_SIGNALS)
        flag = "" if status.context == "configured" else " (no context)"
        lines.append(f"{status.ward + '/' + status.bed:<8} {status.protocol:<15} {values}{flag}")
        lines.extend(_targets(status.targets))
        for alert in status.active_alerts:
            tint = _PRIORITY_COLOUR[alert.priority] if colour else ""
            reset = _RESET if tint else ""
            lines.append(
                f"{'':8} {tint}{alert.priority.upper():<6} {alert.rule:<32} {alert.state:<12}"
                f" since {alert.onset}{reset}"
            )
        lines.append("")
    return "\n".join(lines)


def _targets(targets: dict[str, Any]) -> list[str]:
    """The targets in force on one line, each bound once (several rules share the MAP band)."""
    bounds: dict[str, str] = {}
    for rule_targets in targets.values():
        if isinstance(rule_targets, dict):
            for key, value in rule_targets.items():
                if isinstance(value, (int, float, str)):
                    bounds.setdefault(key, f"{key} {value:g}" if not isinstance(value, str)
                                      else f"{key} {value}")  # fmt: skip
    line = textwrap.shorten(", ".join(bounds.values()), width=_VIEW_WIDTH, placeholder=" …")
    return [f"{'':8} targets: {line}"]


def _value(status: BedStatusPayload, name: str) -> str:
    latest = status.latest.get(name)
    return f"{'-':>9}" if latest is None else f"{latest.value:>9.1f}"


def _statuses(evaluator: Evaluator) -> list[BedStatusPayload]:
    found = (evaluator.status(ward, bed) for ward, bed in sorted(evaluator.beds()))
    return [status for status in found if status is not None]


async def _live_view(service: Service, header: str, out: TextIO) -> None:
    while True:
        view = render_ward(_statuses(service.evaluator), header=header)
        out.write(_CLEAR + view + "\n")
        out.flush()
        await asyncio.sleep(_REDRAW)


async def run_demo(
    *,
    broker: str | None,
    beds: int,
    duration: float | None,
    tty: bool,
    scenario: str = MIX,
    speed: float = DEFAULT_SPEED,
    out: TextIO = sys.stdout,
) -> int:
    """Run the demo until ``duration`` has passed or SIGINT/SIGTERM; return the exit code."""
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="streamproc-")))
        if broker is None:
            broker = stack.enter_context(LocalBroker(workdir=workdir / "broker")).url
        settings = load_settings(
            broker=broker, instance="streamproc-demo", state_dir=workdir / "state", metrics_port=0
        )
        alerts: list[AlertEventPayload] = []

        def show(alert: AlertEventPayload) -> None:
            alerts.append(alert)
            if not tty:
                print(alert_line(alert), file=out, flush=True)

        service = open_service(settings, registry=CollectorRegistry(), on_alert=show)
        ward = _ward(broker=broker, beds=beds, scenario=scenario, speed=speed, out=out)
        await _run_together(service, ward, duration=duration, tty=tty, out=out)
        print(f"demo stopped: {len(alerts)} alert events from {beds} beds", file=out)
    return 0


async def _ward(*, broker: str, beds: int, scenario: str, speed: float, out: TextIO) -> None:
    """The simulated ward (the ``devices`` package); says so when its scenarios are over."""
    await simulate(broker=broker, beds=beds, scenario=scenario, speed=speed, seed=1, duration=None)
    print("the simulated ward has finished its scenarios; Ctrl-C stops the demo", file=out)


async def _run_together(
    service: Service,
    ward: Coroutine[Any, Any, None],
    *,
    duration: float | None,
    tty: bool,
    out: TextIO,
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        async with asyncio.TaskGroup() as group:
            running = group.create_task(serve(service))
            helpers = [group.create_task(ward)]
            header = _header(service, duration, bold=tty)
            if tty:
                helpers.append(group.create_task(_live_view(service, header, out)))
            else:
                print(header, file=out, flush=True)
            await _wait(stop, duration, running)
            for helper in helpers:
                helper.cancel()
            service.request_stop()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _wait(stop: asyncio.Event, duration: float | None, running: asyncio.Task[None]) -> None:
    waiter = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((waiter, running), timeout=duration, return_when="FIRST_COMPLETED")
    finally:
        waiter.cancel()


def _header(service: Service, duration: float | None, *, bold: bool) -> str:
    title = f"{_BOLD}streamproc demo{_RESET}" if bold else "streamproc demo"
    until = "Ctrl-C stops" if duration is None else f"stops after {duration:g} s or on Ctrl-C"
    return (
        f"{title} — broker {service.settings.broker}, simulated ward (python -m devices); "
        f"{until}. A SECONDARY alerting system: never a replacement for the monitor's "
        f"own alarms."
    )


def configure_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="run a simulated ward through the service, with a live view of every bed",
        description=(
            "Start Mosquitto (unless --broker is given), a simulated ward (the devices "
            "package's scenarios) and the service, and show each bed's latest values, targets "
            "and active alerts. The scenarios run --speed times faster than real time on a "
            "timeline that ends now, so an hour of a patient's course plays in under a minute."
        ),
    )
    parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    parser.add_argument(
        "--no-tty", action="store_true", help="print alert events as lines, no live view"
    )
    parser.add_argument(
        "--beds", type=int, default=8, metavar="N", help="beds (default 8: every scenario once)"
    )
    parser.add_argument(
        "--scenario",
        default=MIX,
        metavar="NAME",
        help=f"a devices scenario for every bed, or {MIX} (default: each in turn)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=DEFAULT_SPEED,
        metavar="X",
        help=f"event seconds per wall second (default {DEFAULT_SPEED:g})",
    )
    parser.add_argument(
        "--broker", metavar="URL", help="use this broker instead of starting Mosquitto"
    )
    parser.set_defaults(handler=_demo_command)


def _demo_command(args: argparse.Namespace) -> int:
    tty = not args.no_tty and sys.stdout.isatty()
    return asyncio.run(
        run_demo(
            broker=args.broker,
            beds=args.beds,
            duration=args.duration,
            tty=tty,
            scenario=args.scenario,
            speed=args.speed,
        )
    )
