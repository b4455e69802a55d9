"""Scraping a running relay as Prometheus does (OpenMetrics) and as a plain client does.

Content types match the bodies, the families operators and config/grafana-relayd.json rely
on are there, counters never decrease across a radio unplug and a broker restart, and
`promtool check metrics` (where installed) accepts the text format.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import urllib.request
from collections.abc import Iterable
from pathlib import Path

import pytest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as _parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

import relayd
from relayd.core.jsonform import encode_alert
from relayd.core.model import Severity
from relayd.testing.mosquitto import free_port
from tests.daemon.conftest import ONE_RELAY, Site, SiteFactory

pytestmark = pytest.mark.mosquitto

OPENMETRICS_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
GRAFANA = Path(__file__).resolve().parents[2] / "config" / "grafana-relayd.json"

COUNTERS = {
    "relayd_transmitted_alerts",
    "relayd_suppressed_alerts",
    "relayd_heard_alerts",
    "relayd_received_alerts",
    "relayd_published_messages",
    "relayd_dropped_frames",
    "relayd_malformed_frames",
    "relayd_reconnects",
    "relayd_airtime_seconds",
    "relayd_malformed_messages",
    "relayd_radio_unresponsive",
    "relayd_radio_foreign_routing",
    "relayd_radio_notifications",
    "relayd_backlog_texts",
    "relayd_replies",
    "relayd_late_repeats",
    "relayd_late_repeats_given_up",
}
GAUGES = {
    "relayd_radio_connected",
    "relayd_broker_connected",
    "relayd_queue_depth",
    "relayd_suppression_held",
    "relayd_airtime_window_seconds",
    "relayd_frames_in_flight",
}


def parse_openmetrics(body: str) -> Iterable[Metric]:
    """The OpenMetrics parser, typed as prometheus_client types its text-format twin."""
    families: Iterable[Metric] = _parse_openmetrics(body)  # type: ignore[no-untyped-call] # unannotated upstream
    return families


def _scrape(port: int, accept: str | None) -> tuple[str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if accept is not None:
        request.add_header("Accept", accept)
    with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310 - loopback
        return resp.headers["Content-Type"], resp.read().decode()


async def scrape(port: int, accept: str | None = None) -> tuple[str, str]:
    return await asyncio.to_thread(_scrape, port, accept)


def counter_samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in parse_openmetrics(body):
        if family.type != "counter":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def sample(body: str, name: str, **labels: str) -> float | None:
    for family in parse_openmetrics(body):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


async def wait_sample(port: int, name: str, value: float, timeout_s: float, **labels: str) -> str:
    async with asyncio.timeout(timeout_s):
        while True:
            _, body = await scrape(port, OPENMETRICS_ACCEPT)
            if sample(body, name, **labels) == value:
                return body
            await asyncio.sleep(0.2)


def assert_never_decreased(
    before: dict[tuple[str, tuple[tuple[str, str], ...]], float], after_body: str
) -> None:
    after = counter_samples(after_body)
    for key, value in before.items():
        assert key in after, f"counter {key} disappeared"
        assert after[key] >= value, f"counter {key} went from {value} to {after[key]}"


async def relay_with_metrics(site_factory: SiteFactory) -> tuple[Site, str, int]:
    """The one-relay site, its relay serving metrics on a free loopback port."""
    port = free_port()
    site: Site = await site_factory(ONE_RELAY, start=False)
    name = next(iter(site.configs))
    text = site.configs[name].read_text()
    assert '[metrics]\nlisten = ""\n' in text
    site.configs[name].write_text(
        text.replace('[metrics]\nlisten = ""\n', f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
    )
    site.start_relay(name)
    await site.wait_relays_ready()
    return site, name, port


async def test_promtool_accepts_the_text_format(site_factory: SiteFactory) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; tests/run.sh installs it)")
    _site, _name, port = await relay_with_metrics(site_factory)
    _, plain = await scrape(port, None)
    checked = await asyncio.to_thread(
        subprocess.run,
        [promtool, "check", "metrics"],
        input=plain,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout + checked.stderr == ""  # no lint findings either


async def test_a_running_relay_negotiates_formats_and_its_counters_survive_reconnects(
    site_factory: SiteFactory,
) -> None:
    site, name, port = await relay_with_metrics(site_factory)

    # A scraper that negotiates OpenMetrics (Prometheus's own Accept header) gets OpenMetrics.
    content_type, body = await scrape(port, OPENMETRICS_ACCEPT)
    assert content_type.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith("# EOF\n")
    families = {f.name: f.type for f in parse_openmetrics(body)}
    for family in COUNTERS:
        assert families.get(family) == "counter", family
    for family in GAUGES:
        assert families.get(family) == "gauge", family
    assert families.get("relayd_build") == "info"
    assert sample(body, "relayd_radio_connected", radio="main") == 1.0
    assert sample(body, "relayd_build_info", version=relayd.__version__) == 1.0

    # A client that does not: the 0.0.4 text format, labelled as such (not version=1.0.0).
    plain_type, plain = await scrape(port, None)
    assert plain_type == "text/plain; version=0.0.4; charset=utf-8"
    assert "# EOF" not in plain
    plain_families = {f.name: f.type for f in parse_text(plain)}
    assert plain_families["relayd_transmitted_alerts"] == "counter"
    assert plain_families["relayd_build_info"] == "gauge"
    assert 'relayd_radio_connected{radio="main"} 1.0' in plain

    # Something to count: an alert goes on air.
    alert = site.network.sign("dispatcher", "Water main break on Elm", severity=Severity.WARNING)
    await site.publish(site.topic("outbox"), encode_alert(alert))
    assert await site.wait_displayed_everywhere([alert], 30)
    body = await wait_sample(port, "relayd_transmitted_alerts_total", 1.0, 10)
    assert (sample(body, "relayd_airtime_seconds_total", radio="main") or 0) > 0
    before = counter_samples(body)

    # The radio's cable is pulled and put back: the link reconnects.
    await site.hood.unplug(name, for_s=2.0)
    body = await wait_sample(port, "relayd_radio_connected", 0.0, 10, radio="main")
    assert_never_decreased(before, body)
    body = await wait_sample(port, "relayd_radio_connected", 1.0, 30, radio="main")
    assert sample(body, "relayd_reconnects_total", link="radio", radio="main") == 1.0
    assert_never_decreased(before, body)
    before = counter_samples(body)

    # The broker restarts: the MQTT link reconnects.
    site.broker.stop()
    body = await wait_sample(port, "relayd_broker_connected", 0.0, 10)
    assert_never_decreased(before, body)
    site.broker.start()
    body = await wait_sample(port, "relayd_broker_connected", 1.0, 40)
    assert (sample(body, "relayd_reconnects_total", link="mqtt", radio="") or 0) >= 1.0
    assert_never_decreased(before, body)


def test_the_grafana_dashboard_uses_only_exported_families() -> None:
    doc = json.loads(GRAFANA.read_text())
    exprs = [t["expr"] for p in doc["panels"] for t in p.get("targets", [])]
    assert exprs
    known = (
        COUNTERS
        | GAUGES
        | {"relayd_build", "relayd_last_heard_timestamp_seconds", "relayd_airtime_budget_seconds"}
    )
    for expr in exprs:
        names = set(re.findall(r"relayd_[a-z_]+", expr))
        assert names, expr
        for metric in names:
            base = metric.removesuffix("_total").removesuffix("_info")
            assert base in known, f"{metric} in {expr!r} is not exported"
