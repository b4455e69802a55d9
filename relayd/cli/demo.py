"""``relayd demo``: everything at once — an embedded broker, a simulated three-relay
neighborhood with five handhelds, a relay daemon per relay radio, scripted background
activity, and the dispatcher console with a Handhelds panel.

This module parses the command line only. The engine is `relayd.demo` (no Textual); the
interactive console's side of the demo is `tui.demo`, imported only when the console is
wanted, so `relayd keys` (which imports every command group to build its parser) pays for
neither Textual, the daemon nor the simulator, and no relayd module imports Textual
(tests/tui/test_import_contract.py).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

DEFAULT_HEADLESS_DURATION_S = 60.0
DEFAULT_TIME_SCALE = 10.0  # relayd.demo.stack.DEFAULT_TIME_SCALE (not imported: see above)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run a simulated neighborhood, broker, relays and the dispatcher console",
        description=(
            "Start, in one process, an embedded MQTT broker, a simulated neighborhood (3 relay "
            "radios, 5 stock handhelds), a relay daemon per relay radio, scripted field reports, "
            "a second dispatcher and injected forgeries, and the dispatcher console. "
            "Ctrl+C or q stops everything. See docs/demo.md."
        ),
    )
    p.add_argument("--headless", action="store_true", help="no console: a scripted dispatcher and a timeline")
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        metavar="SECONDS",
        help=f"headless: how long the scripted scenario runs (default {DEFAULT_HEADLESS_DURATION_S:g})",
    )
    p.add_argument("--json", action="store_true", help="headless: print only the summary, as JSON")
    p.add_argument(
        "--broker",
        default=None,
        metavar="mqtt://HOST:PORT",
        help="use this broker instead of the embedded one",
    )
    p.add_argument("--scenario", type=Path, default=None, help="a simulator scenario (default: built in)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=DEFAULT_TIME_SCALE,
        help=f"sim seconds per wall second (default {DEFAULT_TIME_SCALE:g})",
    )
    p.add_argument("--log", type=Path, default=None, help="interactive: write the daemons' log to this file")
    p.set_defaults(func=run_from_args, error_exit_code=2)


def run_from_args(args: argparse.Namespace) -> int:
    from relayd.demo.stack import DemoError, DemoOptions  # noqa: PLC0415 - see module docstring

    if args.time_scale <= 0:
        print("relayd demo: --time-scale must be > 0", file=sys.stderr)
        return 2
    if args.duration is not None and args.duration <= 0:
        print("relayd demo: --duration must be > 0", file=sys.stderr)
        return 2
    options = DemoOptions(broker_url=args.broker, scenario_path=args.scenario, time_scale=args.time_scale)
    headless = args.headless or args.json or args.duration is not None
    try:
        if headless:
            from relayd.demo.headless import run_headless  # noqa: PLC0415

            duration = args.duration or DEFAULT_HEADLESS_DURATION_S
            return asyncio.run(run_headless(options, duration, as_json=args.json))
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            # No terminal (CI, a pipe, `ssh host relayd demo` without -t): the console would
            # have nothing to draw on. Say what to do instead of hanging or guessing.
            print(
                "relayd demo: the interactive console needs a terminal (stdin/stdout are not a TTY).\n"
                "  in a terminal:   relayd demo\n"
                "  without one:     relayd demo --headless --duration 30   (add --json for a summary)",
                file=sys.stderr,
            )
            return 2
        from tui.demo import run_interactive  # noqa: PLC0415 - the console, only when wanted

        return asyncio.run(run_interactive(options, log_path=args.log))
    except DemoError as exc:
        print(f"relayd demo: {exc}", file=sys.stderr)
        return 1
