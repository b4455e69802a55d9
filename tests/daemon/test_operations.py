"""Operating a relay: config checks, live trust updates, active-alert topics, metrics, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from relayd.core.jsonform import encode_alert
from relayd.core.model import Kind, Severity
from relayd.core.trust import sign_bundle
from relayd.testing.mosquitto import free_port
from tests.daemon.conftest import ONE_RELAY, Site, SiteFactory


def run_check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "relayd", "check", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("body", "key", "fix"),
    [
        ("[relay]\nid = 'bad id!'\n", "relay.id", "letters, digits"),
        ("[relay]\nid = 'r1'\n[trust]\nroot = 'r.pub'\nbundle = 'b.json'\n", "radio", "[[radio]]"),
        (
            "[relay]\nid = 'r1'\n[trust]\nroot = 'r.pub'\nbundle = 'b.json'\n[[radio]]\ndevice = 'usb0'\n",
            "radio[0].device",
            "serial:///dev/meshradio",
        ),
        (
            "[relay]\nid = 'r1'\n[trust]\nroot = 'r.pub'\nbundle = 'b.json'\n"
            "[[radio]]\ndevice = 'tcp://127.0.0.1:4403'\n[airtime]\nduty_cycle = 5\n",
            "airtime.duty_cycle",
            "from 0.001 to 1.0",
        ),
        ("[relay]\nid = 'r1'\nreport_prefx = '!r '\n", "relay.report_prefx", "not a known setting"),
        ("[relay\nid = 1", "-", "not valid TOML"),
    ],
)
def test_check_names_file_key_and_fix(tmp_path: Path, body: str, key: str, fix: str) -> None:
    config = tmp_path / "relayd.toml"
    config.write_text(body)
    result = run_check(config)
    assert result.returncode == 1
    assert f"{config}: {key}:" in result.stderr
    assert fix in result.stderr
    assert "Traceback" not in result.stderr


async def test_check_accepts_a_valid_config_and_refuses_a_loose_key(site_factory: SiteFactory) -> None:
    site: Site = await site_factory(ONE_RELAY, start=False)
    config = next(iter(site.configs.values()))
    assert run_check(config).returncode == 0
    key = site.network.key_path("relay")
    key.chmod(0o644)
    result = run_check(config)
    assert result.returncode == 1
    assert "chmod 600" in result.stderr


async def test_new_bundle_on_trust_topic_revokes_without_restart_and_older_is_refused(
    site_factory: SiteFactory,
) -> None:
    site: Site = await site_factory(ONE_RELAY)
    await site.wait_relays_ready()
    net = site.network
    before = net.bundle
    revoked = before.with_revoked(net.identities["dispatcher2"].key_id)
    newer = sign_bundle(
        type(before)(
            before.version + 1,
            before.issued_at_s,
            before.expires_at_s,
            before.root_public_key,
            revoked.keys,
            revoked.revoked,
        ),
        net.root.sign,
    )
    await site.publish(site.topic("trust"), newer.to_bytes(), retain=True)
    await asyncio.sleep(1.0)
    alert = net.sign("dispatcher2", "From a seized laptop: raid at Elm")
    await site.publish(site.topic("outbox"), encode_alert(alert))
    # An older bundle (the original) must not roll the revocation back.
    await site.publish(site.topic("trust"), net.signed_bundle.to_bytes(), retain=True)
    statuses = await site.statuses(settle_s=2.0)
    status = statuses["relay"]
    assert status.drops.get("revoked", 0) >= 1
    assert status.trust_version == before.version + 1
    assert not any(d.text == alert.onair for h in site.handhelds for d in site.hood.displays(h))


async def test_active_topic_is_retained_then_cleared_by_allclear(site_factory: SiteFactory) -> None:
    site: Site = await site_factory(ONE_RELAY)
    await site.wait_relays_ready()
    alert = site.network.sign("dispatcher", "Checkpoint at Oak & 3rd", severity=Severity.WARNING)
    await site.publish(site.topic("outbox"), encode_alert(alert))
    active_topic = site.topic(f"active/{alert.id_hex}")
    retained = await site.collect(active_topic, 2.0)
    assert retained
    assert json.loads(retained[-1])["onair"] == alert.onair
    allclear = site.network.sign(
        "dispatcher", "All clear at Oak & 3rd", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=alert.alert_id
    )
    await site.publish(site.topic("outbox"), encode_alert(allclear))
    await asyncio.sleep(2.0)
    assert await site.collect(active_topic, 1.0) == []


async def test_metrics_endpoint_and_sigterm_drains_within_five_seconds(
    site_factory: SiteFactory,
    tmp_path: Path,
) -> None:
    port = free_port()
    site: Site = await site_factory(ONE_RELAY, start=False, extra=f"[metrics]\nlisten = '127.0.0.1:{port}'\n")
    name = next(iter(site.configs))
    text = site.configs[name].read_text().replace('[metrics]\nlisten = ""\n', "")
    site.configs[name].write_text(text)
    site.start_relay(name)
    await site.wait_relays_ready()

    def scrape() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            body: bytes = resp.read()
            return body.decode()

    body = await asyncio.to_thread(scrape)
    assert "relayd_dropped_frames" in body
    assert 'relayd_radio_connected{radio="main"} 1.0' in body
    started = time.monotonic()
    assert site.relays[name].terminate(timeout_s=10) == 0
    assert time.monotonic() - started < 5.0
    statuses = await site.statuses(settle_s=0.2)
    assert statuses[name].state.value == "offline"
