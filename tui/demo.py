"""`relayd demo`, interactive: the dispatcher console on a running demo stack (relayd.demo),
with a Handhelds panel (key 6) showing what each simulated stock handheld displayed.

The demo's engine (broker, simulated radios, relays, background script) is relayd.demo and
never imports Textual; `relayd demo` (relayd/cli/demo.py) hands over to `run_interactive`
here, the console's side of the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

from textual.binding import Binding

from relayd.core.verify import Verifier
from relayd.demo.handhelds import HandheldWatch
from relayd.demo.observer import Observer
from relayd.demo.script import Actions, Background, BackgroundPlan
from relayd.demo.stack import DemoOptions, DemoStack
from tui.app import Panel, RelaydApp
from tui.config import MqttConfig, TuiConfig
from tui.startup import load
from tui.widgets.handhelds import HandheldsPanel

# The welcome note: long enough to read, short enough not to sit over the Inbox and Compose.
WELCOME_S = 6


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
            timeout=WELCOME_S,
        )


def build_demo_app(stack: DemoStack, *, cursor_blink: bool = True) -> RelaydApp:
    """The dispatcher console for a running stack: the demo dispatcher's key, the trust
    bundle, Ctrl+C to quit, and the Handhelds panel. Used by `relayd demo` and tests/demo."""
    config = TuiConfig(
        MqttConfig.from_url(stack.broker_url, root=stack.topics.root),
        key_path=stack.network.key_path("dispatcher"),
        trust_path=stack.network.bundle_path,
        cursor_blink=cursor_blink,
    )
    loaded = load(config)
    watch = HandheldWatch(stack.handhelds, stack.hood.displays, Verifier(stack.network.bundle))
    return DemoApp(
        config,
        signer=loaded.signer,
        bundle=loaded.bundle,
        extra_panels=[Panel("handhelds", "Handhelds", lambda: HandheldsPanel(watch))],
    )


@contextlib.asynccontextmanager
async def demo_session(
    options: DemoOptions, *, plan: BackgroundPlan | None = None, cursor_blink: bool = True
) -> AsyncIterator[tuple[DemoStack, RelaydApp]]:
    """The whole interactive demo, assembled: stack (broker, radios, relays), the background
    script and the console app, not yet running. Leaving the block stops everything."""
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
