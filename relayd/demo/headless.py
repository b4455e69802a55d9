"""`relayd demo --headless`: the scenario with a scripted dispatcher, a narrated timeline
and a closing summary (or the summary alone as JSON)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from typing import TextIO

from relayd.demo.observer import Observer
from relayd.demo.script import Actions, scripted_dispatcher
from relayd.demo.stack import DemoOptions, DemoStack
from relayd.demo.summary import Summary, summarize

# After the scripted part, wait (bounded) for what is still on its way to the handhelds.
DRAIN_MAX_S = 10.0
# Relays republish status at most once a second after a change (docs/mqtt.md).
STATUS_SETTLE_S = 1.5


async def run_headless(
    options: DemoOptions,
    duration_s: float,
    *,
    as_json: bool = False,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    timeline = err if as_json else out

    def line(text: str) -> None:
        print(text, file=timeline, flush=True)

    try:
        summary = await _run(options, duration_s, stop, line)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
    if as_json:
        print(json.dumps(summary.to_json_dict(), indent=2, ensure_ascii=False), file=out, flush=True)
    else:
        print(summary.format(), file=out, flush=True)
    if stop.is_set():
        return 130
    ok = summary.all_delivered_exactly_once and summary.forgeries_rejected == summary.forgeries_injected
    return 0 if ok else 1


async def _run(
    options: DemoOptions, duration_s: float, stop: asyncio.Event, say: Callable[[str], None]
) -> Summary:
    async with DemoStack(options) as stack:
        say(
            f"[  0.00s] ready in {stack.startup_s:.2f} s: broker {stack.broker_url}"
            f"{' (embedded)' if stack.embedded_broker else ''}, relays {', '.join(stack.relay_names)},"
            f" handhelds {', '.join(stack.handhelds)}; time scale {options.time_scale:g}x"
        )
        observer = Observer(stack, on_line=say)
        await observer.start()
        actions = Actions(stack, observer)
        script = asyncio.create_task(scripted_dispatcher(actions, duration_s), name="demo-script")
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({stopped}, timeout=max(0.0, duration_s - stack.since_ready()))
            if not stop.is_set():
                await _drain(actions, observer, stop)
        finally:
            script.cancel()
            stopped.cancel()
            for task in (script, stopped):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await asyncio.sleep(0 if stop.is_set() else STATUS_SETTLE_S)
        observer.poll_displays()
        observer.flush(force=True)
        statuses = dict(observer.statuses)
        for name, relay in stack.relays.items():
            statuses.setdefault(name, relay.status())
        summary = summarize(
            startup_s=stack.startup_s,
            duration_s=round(stack.since_ready(), 2),
            issued=actions.issued,
            forgeries=actions.forgeries,
            reports_sent=actions.reports_sent,
            reports_received=len(observer.reports),
            tracks=observer.alerts,
            handhelds=stack.handhelds,
            other_displays=observer.other_displays,
            statuses=statuses,
            broker=stack.broker_url,
        )
        await observer.stop()
        say(f"[{stack.since_ready():6.2f}s] stopping: relays drain and go offline, radios and broker close")
    return summary


async def _drain(actions: Actions, observer: Observer, stop: asyncio.Event) -> None:
    handhelds = actions.stack.handhelds
    deadline = time.monotonic() + DRAIN_MAX_S

    def settled() -> bool:
        for alert in actions.issued:
            track = observer.alerts.get(alert.id_hex)
            if track is None or any(track.displayed[h] == 0 for h in handhelds):
                return False
        return all(
            (t := observer.alerts.get(f.alert_id)) is not None and t.dropped_by for f in actions.forgeries
        )

    while not settled() and time.monotonic() < deadline:
        # Displays have no event to wait on; the stop event ends the poll early.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
        if stop.is_set():
            return
