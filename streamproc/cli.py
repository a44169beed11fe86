"""``streamproc`` command line: one sub-command per module that owns the feature.

Each listed module has ``configure_parser(subparsers)``, which adds its sub-command and
sets ``handler`` (a function of the parsed arguments returning an exit code). Optional
extras (wfdb, matplotlib, uvloop) are imported inside the commands that use them, so a
missing extra breaks only its own command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from streamproc import __version__
from streamproc.errors import StreamprocError

__all__ = ["main", "run_parsed"]

#: The modules that each contribute a sub-command, in the order ``--help`` lists them.
COMMAND_MODULES = (
    "streamproc.service",  # run
    "streamproc.demo",  # demo
    "streamproc.replay",  # replay
    "streamproc.protocol_cli",  # protocols, check
    "streamproc.bench",  # bench
    "streamproc.bench_replay",  # bench-waveform, bench-replay
    "streamproc.bench_service",  # bench-service
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
        importlib.import_module(name).configure_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_parsed(build_parser(), argv)


def run_parsed(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse, configure logging (only entry points do), run the command's handler.

    A :class:`StreamprocError` is the user's to fix: its message, exit code 2, no traceback.
    Shared by ``streamproc`` and ``python -m devices``.
    """
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        code: int = args.handler(args)
    except StreamprocError as exc:
        print(f"{parser.prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
