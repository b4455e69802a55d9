"""The `relayd` command line. Each command group lives in its own module and registers itself."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Callable, Sequence

from relayd import __version__
from relayd.cli.helptext import add_verbosity, combine_verbosity, finish
from relayd.errors import RelaydError

# Command groups, in help order. A module exposes `register(subparsers)`; each subcommand
# sets `func(args) -> int`. Modules are imported lazily so `relayd keys` does not pay for
# importing the daemon, the simulator or Textual.
_GROUPS = (
    "relayd.cli.keys",
    "relayd.cli.trust",
    "relayd.cli.alert",
    "relayd.cli.alerts",
    "relayd.sim.cli",
    "relayd.cli.run",
    "relayd.cli.demo",
    "relayd.cli.doctor",
    "relayd.cli.setup",
    "relayd.cli.cap",
)

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relayd",
        description="Signed rapid-alert relay between Meshtastic LoRa radios and MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"relayd {__version__}")
    add_verbosity(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in _GROUPS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            # A group still being built must not break the others.
            if exc.name == module_name:
                continue
            raise
        module.register(subparsers)
    finish(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    combine_verbosity(args)
    return args


def log_level(verbose: int, quiet: int, default: int = logging.WARNING) -> int:
    """Each -v one level more (down to DEBUG), each -q one level less (up to ERROR)."""
    return max(logging.DEBUG, min(logging.ERROR, default - 10 * verbose + 10 * quiet))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    level = log_level(args.verbose, args.quiet)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler: Handler = args.func
    try:
        return handler(args)
    except RelaydError as exc:
        print(f"relayd: error: {exc}", file=sys.stderr)
        return getattr(args, "error_exit_code", 1)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
