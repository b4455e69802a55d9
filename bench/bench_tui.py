"""Console responsiveness: 10,000 alerts in history, 50 new alerts a second.

Runs the real app headless (`App.run_test`), posts each alert as the MQTT worker would
(`MqttReceived`), and measures from the post to the first screen refresh after the row is in
the table. The same run measures a baseline that rebuilds the whole feed table per message,
which is what a naive implementation does.

    python -m bench.bench_tui [--history 10000] [--rate 50] [--seconds 10] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import tempfile
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from relayd.core.jsonform import Envelope, encode_alert
from relayd.core.model import Kind, Severity
from relayd.core.topics import Topics
from relayd.core.trust import SignedBundle
from relayd.testing.keys import make_network
from relayd.trustfile import load_bundle
from tui import fmt
from tui.app import RelaydApp
from tui.config import TuiConfig
from tui.messages import MqttReceived
from tui.model import Change, FeedItem, Model

T = Topics("relayd")
GOAL_P99_MS = 100.0
SEVERITIES = list(Severity)


class TimedApp(RelaydApp):
    """Records when each alert's row has been drawn (first refresh after it was applied)."""

    def __init__(
        self, config: TuiConfig, *, bundle: SignedBundle | None = None, baseline: bool = False
    ) -> None:
        super().__init__(config, bundle=bundle)
        self.baseline = baseline
        self.rendered_at: dict[str, float] = {}

    def apply(self, change: Change) -> None:
        if self.baseline and change.feed_id is not None and self._main is not None:
            # Naive: rebuild the whole feed table for every message.
            main = self._main
            main.feed_table.rebuild(list(self.model.items(main.feed_table.filter)), self.model.clock())
            main.feed_table.refresh_times(self.model.feed, self.model.clock())  # re-render all visible
        else:
            super().apply(change)
        alert_id = change.feed_id
        if alert_id is not None and alert_id not in self.rendered_at:

            def drawn() -> None:
                self.rendered_at.setdefault(alert_id, time.perf_counter())

            self.call_after_refresh(drawn)


class DataTableApp(App[None]):
    """The stock approach: Textual's DataTable, one add_row per alert (the console's first version)."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.model = model
        self.rendered_at: dict[str, float] = {}

    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for key in ("kind", "sev", "verify", "age", "ttl", "area", "relays", "text"):
            table.add_column(key, key=key)

    def row(self, item: FeedItem) -> list[Text | str]:
        now = self.model.clock()
        return [
            fmt.kind_cell(item),
            fmt.severity_cell(item),
            fmt.verify_cell(item),
            fmt.duration(now - item.alert.fields.issued_at_s),
            fmt.ttl(item, now),
            item.alert.fields.area or "",
            fmt.relays_cell(item),
            fmt.one_line(item.text),
        ]

    def load(self) -> None:
        table = self.query_one(DataTable)
        for item in self.model.feed.values():
            table.add_row(*self.row(item), key=item.alert_id)

    @on(MqttReceived)
    def _received(self, message: MqttReceived) -> None:
        change = self.model.ingest(message.topic, message.payload)
        alert_id = change.feed_id
        if alert_id is None or not change.feed_new:
            return
        table = self.query_one(DataTable)
        table.add_row(*self.row(self.model.feed[alert_id]), key=alert_id)
        table.move_cursor(row=table.row_count - 1, animate=False)

        def drawn() -> None:
            self.rendered_at.setdefault(alert_id, time.perf_counter())

        self.call_after_refresh(drawn)


@dataclass
class Result:
    name: str
    history: int
    arrivals: int
    load_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    missed: int
    rss_mb: float

    def line(self) -> str:
        return (
            f"{self.name:12} hist {self.history:6}  arrivals {self.arrivals:4}  load {self.load_s:6.2f} s  "
            f"p50 {self.p50_ms:7.1f} ms  p99 {self.p99_ms:7.1f} ms  max {self.max_ms:7.1f} ms  "
            f"missed {self.missed}  rss {self.rss_mb:6.1f} MB"
        )


def payloads(
    directory: Path, history: int, arrivals: int
) -> tuple[Path, list[bytes], list[tuple[str, bytes]]]:
    net = make_network(directory)
    now = time.time()
    names = ["dispatcher", "dispatcher2", "verifier"]
    relays = ["relay-north", "relay-center", "relay-south"]
    old: list[bytes] = []
    for n in range(history):
        alert = net.sign(
            names[n % 3],
            f"History alert {n}: activity reported near block {n % 97}",
            severity=SEVERITIES[n % 4],
            kind=Kind.ALERT,
            now_s=now - 3600,
            lifetime_s=7200,
        )
        old.append(encode_alert(alert, Envelope(relay=relays[n % 3], via="rf")))
    new: list[tuple[str, bytes]] = []
    for n in range(arrivals):
        alert = net.sign(names[n % 3], f"New alert {n}: vans on Pine, observers needed", now_s=now)
        new.append((alert.id_hex, encode_alert(alert, Envelope(relay=relays[n % 3], via="mqtt"))))
    return net.bundle_path, old, new


async def run_case(
    name: str, bundle_path: Path, old: list[bytes], new: list[tuple[str, bytes]], rate_hz: float, *, mode: str
) -> Result:
    bundle = load_bundle(bundle_path)
    app: TimedApp | DataTableApp
    if mode == "datatable":
        app = DataTableApp(Model(T, bundle.bundle, time.time))
    else:
        app = TimedApp(TuiConfig(None, cursor_blink=False), bundle=bundle, baseline=mode == "rebuild")
    posted: dict[str, float] = {}
    async with app.run_test(size=(120, 40)) as pilot:
        start = time.perf_counter()
        for payload in old:
            app.model.ingest(T.alerts, payload)
        if isinstance(app, DataTableApp):
            app.load()
        else:
            app.main.redraw_all()
        await pilot.pause()
        load_s = time.perf_counter() - start
        interval = 1.0 / rate_hz
        t0 = time.perf_counter()
        for n, (alert_id, payload) in enumerate(new):
            target = t0 + n * interval
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            posted[alert_id] = time.perf_counter()
            app.post_message(MqttReceived(T.alerts, payload, time.time()))
        deadline = time.perf_counter() + 60
        while len(app.rendered_at) < len(new) and time.perf_counter() < deadline:
            await pilot.pause(0.05)
        if isinstance(app, TimedApp):
            assert app.main.feed_table.row_count == len(old) + len(app.rendered_at)
    latencies = sorted((app.rendered_at[i] - posted[i]) * 1000 for i in posted if i in app.rendered_at)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else float("nan")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return Result(
        name,
        len(old),
        len(new),
        load_s,
        statistics.median(latencies) if latencies else float("nan"),
        p99,
        latencies[-1] if latencies else float("nan"),
        len(new) - len(latencies),
        rss_mb,
    )


def model_memory(old: list[bytes], bundle_path: Path) -> float:
    """tracemalloc peak (MB) of the pure model holding the whole history."""
    tracemalloc.start()
    model = Model(T, load_bundle(bundle_path).bundle, time.time)
    for payload in old:
        model.ingest(T.alerts, payload)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 1e6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--history", type=int, default=10_000)
    p.add_argument("--rate", type=float, default=50.0, help="arriving alerts per second")
    p.add_argument("--seconds", type=float, default=10.0, help="how long alerts arrive")
    p.add_argument("--baseline-seconds", type=float, default=1.0, help="arrival time for the baselines")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    arrivals = int(args.rate * args.seconds)
    with tempfile.TemporaryDirectory() as tmp:
        bundle_path, old, new = payloads(Path(tmp) / "keys", args.history, arrivals)
        model_mb = model_memory(old, bundle_path)
        incremental = asyncio.run(run_case("virtual list", bundle_path, old, new, args.rate, mode="virtual"))
        base_n = int(args.rate * args.baseline_seconds)
        baseline = asyncio.run(
            run_case("rebuild/msg", bundle_path, old, new[:base_n], args.rate, mode="rebuild")
        )
        datatable = asyncio.run(
            run_case("DataTable", bundle_path, old, new[:base_n], args.rate, mode="datatable")
        )
    ok = incremental.p99_ms <= GOAL_P99_MS and incremental.missed == 0
    if args.json:
        print(
            json.dumps(
                {
                    "incremental": incremental.__dict__,
                    "baseline_rebuild_per_message": baseline.__dict__,
                    "baseline_datatable": datatable.__dict__,
                    "model_tracemalloc_peak_mb": model_mb,
                    "goal_p99_ms": GOAL_P99_MS,
                    "ok": ok,
                },
                indent=2,
            )
        )
    else:
        print(f"feed latency, post -> drawn, {args.rate:.0f} alerts/s over {args.history} in history")
        print(incremental.line())
        print(baseline.line())
        print(datatable.line())
        print(f"model memory for {args.history} alerts (tracemalloc peak): {model_mb:.1f} MB")
        print(f"goal p99 <= {GOAL_P99_MS:.0f} ms: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
