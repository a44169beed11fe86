"""``streamproc`` command line: one sub-command per module that owns the feature.

Each listed module has ``configure_parser(subparsers)``, which adds its sub-command and
sets ``handler`` (a function of the parsed arguments returning an exit code). Modules are
imported only when their command is registered, so a missing optional extra breaks only
its own command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from streamproc import __version__
from streamproc.errors import StreamprocError

__all__ = ["main"]

#: The modules that each contribute a sub-command, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "streamproc.protocol_cli",
    "streamproc.replay",
    "streamproc.bench",
    "streamproc.bench_replay",
    "streamproc.service",
    "streamproc.demo",
    "streamproc.bench_service",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamproc",
        description=(
            "Real-time stream processor for septic-shock care: evaluates TARTARE-2S protocol "
            "targets (MAP, capillary refill, skin temperature, lactate, ...) per ICU bed and "
            "publishes alerts. A SECONDARY alerting system: it never replaces the bedside "
            "monitor's own alarms."
        ),
    )
    parser.add_argument("--version", action="version", version=f"streamproc {__version__}")
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    subparsers = parser.add_subparsers(title="commands", dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise  # a missing dependency inside the module is a real error
            continue  # a command whose module is not part of this build
        module.configure_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.handler(args)
    except StreamprocError as exc:
        print(f"streamproc: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
