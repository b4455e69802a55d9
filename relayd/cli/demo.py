"""``relayd demo``: everything at once — an embedded broker, a simulated three-relay
neighborhood with five handhelds, a relay daemon per relay radio, scripted background
activity, and the dispatcher console with a Handhelds panel.

The engine lives in `relayd.demo` and never imports Textual. This module is the only
`relayd` module allowed to (tests/tui/test_import_contract.py), and only inside
`build_demo_app`: `relayd keys` imports every command group to build its parser and must
not pay for Textual, the daemon or the simulator.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from relayd.demo.script import BackgroundPlan
    from relayd.demo.stack import DemoOptions, DemoStack
    from tui.app import RelaydApp

DEFAULT_HEADLESS_DURATION_S = 60.0
DEFAULT_TIME_SCALE = 10.0  # relayd.demo.stack.DEFAULT_TIME_SCALE (not imported: see above)
HANDHELDS_REFRESH_S = 0.3


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
        return asyncio.run(run_interactive(options, log_path=args.log))
    except DemoError as exc:
        print(f"relayd demo: {exc}", file=sys.stderr)
        return 1


# -- the interactive console ------------------------------------------------------------------


def _log_to(path: Path | None) -> None:
    """`relayd run` logs to stderr; under the console that would tear the screen."""
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    handler: logging.Handler
    if path is not None:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.INFO)
    else:
        handler = logging.NullHandler()
    root.addHandler(handler)


@contextlib.asynccontextmanager
async def demo_session(
    options: DemoOptions, *, plan: BackgroundPlan | None = None, cursor_blink: bool = True
) -> AsyncIterator[tuple[DemoStack, RelaydApp]]:
    """The whole interactive demo, assembled: stack (broker, radios, relays), the background
    script and the console app, not yet running. Leaving the block stops everything."""
    from relayd.demo.observer import Observer  # noqa: PLC0415
    from relayd.demo.script import Actions, Background  # noqa: PLC0415
    from relayd.demo.stack import DemoStack  # noqa: PLC0415

    async with DemoStack(options) as stack:
        observer = Observer(stack)
        await observer.start()
        background = asyncio.create_task(
            Background(Actions(stack, observer), plan).run(), name="demo-background"
        )
        try:
            yield stack, build_demo_app(stack, cursor_blink=cursor_blink)
        finally:
            background.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await background
            await observer.stop()


async def run_interactive(options: DemoOptions, *, log_path: Path | None = None) -> int:
    _log_to(log_path)
    loop = asyncio.get_running_loop()
    t0 = time.monotonic()
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    async with demo_session(options) as (stack, app):
        # The console reads Ctrl+C as a key (bound to quit); these cover `kill` and a lost terminal.
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, app.exit)
        try:
            await app.run_async()
        finally:
            for sig in signals:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)
    print(
        f"relayd demo: stopped; relays, simulated radios and broker are closed "
        f"(startup to ready {stack.startup_s:.2f} s, ran {time.monotonic() - t0:.0f} s)"
    )
    return 0


def build_demo_app(stack: DemoStack, *, cursor_blink: bool = True) -> RelaydApp:
    """The dispatcher console for a running stack: the demo dispatcher's key, the trust
    bundle, Ctrl+C to quit, and a Handhelds panel (key 6) that shows live what each
    simulated handheld displays. Used by `relayd demo` and by tests/demo."""
    # Textual and the console are imported here only (see the module docstring).
    from textual.app import ComposeResult  # noqa: PLC0415
    from textual.binding import Binding  # noqa: PLC0415
    from textual.containers import Vertical  # noqa: PLC0415
    from textual.widgets import DataTable, Static  # noqa: PLC0415

    from relayd.core.verify import Verifier  # noqa: PLC0415
    from relayd.demo.handhelds import describe  # noqa: PLC0415
    from tui.app import Panel, RelaydApp  # noqa: PLC0415
    from tui.config import MqttConfig, TuiConfig  # noqa: PLC0415
    from tui.startup import load  # noqa: PLC0415

    class HandheldsPanel(Vertical):
        """Every text each simulated stock handheld has displayed, newest at the bottom."""

        DEFAULT_CSS = """
        HandheldsPanel { height: 1fr; }
        HandheldsPanel #handhelds-summary { height: auto; padding: 0 1; color: $text-muted; }
        HandheldsPanel DataTable { height: 1fr; }
        """

        def __init__(self) -> None:
            super().__init__(id="handhelds-panel")
            self.verifier = Verifier(stack.network.bundle)
            self.seen: dict[str, int] = dict.fromkeys(stack.handhelds, 0)
            self.rows = 0

        def compose(self) -> ComposeResult:
            yield Static(id="handhelds-summary")
            yield DataTable(id="handhelds-table", cursor_type="row", zebra_stripes=True)

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_column("handheld", key="handheld", width=9)
            table.add_column("time", key="time", width=8)
            table.add_column("from", key="from", width=12)
            table.add_column("", key="marks", width=4)
            table.add_column("check", key="check", width=16)
            table.add_column("text", key="text")
            self.refresh_rows()
            self.set_interval(HANDHELDS_REFRESH_S, self.refresh_rows)

        def refresh_rows(self) -> None:
            table = self.query_one(DataTable)
            follow = table.cursor_row >= table.row_count - 1
            new = []
            for name in stack.handhelds:
                shown = stack.hood.displays(name)
                new += shown[self.seen[name] :]
                self.seen[name] = len(shown)
            for d in sorted(new, key=lambda d: d.wall_time):
                line = describe(d, self.verifier)
                marks = ("🔔" if line.bell else "") + ("DM" if line.dm else "")
                check = f"[red]{line.check}[/]" if line.check.startswith("✗") else line.check
                table.add_row(
                    line.handheld.removeprefix("hh-"), line.clock, line.sender, marks, check, line.text
                )
                self.rows += 1
            if new and follow:
                table.move_cursor(row=table.row_count - 1)
            counts = " · ".join(f"{n.removeprefix('hh-')} {self.seen[n]}" for n in stack.handhelds)
            self.query_one("#handhelds-summary", Static).update(
                f"What each stock handheld displayed ({counts}). 🔔 = bell (urgent), DM = direct message; "
                "check = verified against the trust bundle (a stock handheld shows any text it hears)."
            )

    class DemoApp(RelaydApp):
        TITLE = "relayd demo"
        BINDINGS = [  # noqa: RUF012 - Textual's declared class-level binding list
            *RelaydApp.BINDINGS,
            Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
        ]

        def on_mount(self) -> None:
            # Textual also runs RelaydApp.on_mount (handlers run for every class in the MRO).
            self.notify(
                "Field reports arrive in the Inbox (3): select one, press c to confirm it into an alert, "
                "ctrl+s and y to sign and send. Watch it reach the handhelds (6). q or Ctrl+C quits.",
                title="relayd demo",
                timeout=20,
            )

    config = TuiConfig(
        MqttConfig.from_url(stack.broker_url, root=stack.topics.root),
        key_path=stack.network.key_path("dispatcher"),
        trust_path=stack.network.bundle_path,
        cursor_blink=cursor_blink,
    )
    loaded = load(config)
    return DemoApp(
        config,
        signer=loaded.signer,
        bundle=loaded.bundle,
        extra_panels=[Panel("handhelds", "Handhelds", HandheldsPanel)],
    )
