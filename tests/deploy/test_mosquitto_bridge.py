"""config/mosquitto/bridge.conf: a neighborhood broker (local.conf + bridge.conf) bridged to a
"city" broker (acl.example, which has the bridge user's rules), both real Mosquittos on loopback.

Each test proves a direction with a sentinel that does cross the bridge after the probe: one
bridge connection delivers in order, so a sentinel arriving without the probe means the probe
was not forwarded - no waiting for timeouts.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.deploy_support import (
    ACL_EXAMPLE,
    ACL_USERS,
    BRIDGE_CONF,
    MQTT_TIMEOUT_S,
    Broker,
    collect_until,
    free_port,
    marker,
    render_local_broker,
    require_tool,
    rewrite_directives,
    run_as_current_user_directive,
    run_broker,
    wait_for_payload,
    write_password_file,
)

pytestmark = pytest.mark.mosquitto

BRIDGE_STATE_TOPIC = "relayd/bridges/relayd-north/state"


@dataclass
class BridgedBrokers:
    local: Broker
    city: Broker


def _render_city_broker(workdir: Path) -> tuple[Path, int, dict[str, str]]:
    workdir.mkdir()
    port = free_port()
    passwords = {user: secrets.token_urlsafe(12) for user in ACL_USERS}
    password_file = workdir / "passwd"
    write_password_file(password_file, passwords)
    config = workdir / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\n"
        "allow_anonymous false\n"
        f"password_file {password_file}\n"
        f"acl_file {ACL_EXAMPLE}\n"
        "persistence false\n"
        "log_dest stderr\n" + run_as_current_user_directive()
    )
    return config, port, passwords


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgedBrokers]:
    require_tool("mosquitto", "mosquitto")
    root = tmp_path_factory.mktemp("bridge")
    city_config, city_port, city_passwords = _render_city_broker(root / "city")
    local_dir = root / "local"
    local_dir.mkdir()
    local_config, local_port, local_passwords = render_local_broker(local_dir)
    (local_dir / "conf.d" / "relayd-bridge.conf").write_text(
        rewrite_directives(
            BRIDGE_CONF.read_text(),
            {
                "address": f"address 127.0.0.1:{city_port}",
                "remote_password": f"remote_password {city_passwords['relayd-north-bridge']}",
                # The city broker answers immediately; don't wait out a backoff in the test.
                "restart_timeout": "restart_timeout 1 2",
            },
            source=BRIDGE_CONF,
        )
    )
    with (
        run_broker(city_config, city_port, city_passwords, root / "city.log") as city,
        run_broker(local_config, local_port, local_passwords, root / "local.log") as local,
    ):
        yield BridgedBrokers(local=local, city=city)


async def _wait_bridge_up(brokers: BridgedBrokers) -> None:
    # bridge.conf's notifications: "1" retained at the city once the bridge is connected.
    async with brokers.city.client("admin") as admin:
        await admin.subscribe(BRIDGE_STATE_TOPIC, qos=1)
        try:
            async with asyncio.timeout(MQTT_TIMEOUT_S):
                async for message in admin.messages:
                    if message.payload == b"1":
                        return
        except TimeoutError:
            pytest.fail(f"the bridge never connected:\n{brokers.local.log()}\n{brokers.city.log()}")


async def test_bridge_reports_itself_connected_at_the_city(bridged: BridgedBrokers) -> None:
    await _wait_bridge_up(bridged)


def test_bridge_topics_flow_only_where_they_are_needed() -> None:
    # The live tests below cannot tell bridge.conf's directions from the city ACL (both stop a
    # neighborhood's trust bundle going up), so pin the directions themselves here.
    topics = {}
    for line in BRIDGE_CONF.read_text().splitlines():
        words = line.split()
        if words and words[0] == "topic":
            pattern, direction, qos = words[1:4]
            topics[pattern] = (direction, int(qos))
    assert topics == {
        "relayd/alerts": ("both", 1),
        "relayd/active/#": ("both", 1),
        "relayd/outbox": ("in", 1),
        "relayd/trust": ("in", 1),
        "relayd/reports": ("out", 1),
        # Latest-wins telemetry at QoS 0: never queued, so it cannot crowd alerts out of the
        # bridge's queue during an outage.
        "relayd/relays/+/status": ("out", 0),
        "relayd/relays/+/events": ("out", 0),
    }


async def test_bridge_carries_alerts_both_ways_without_echo(bridged: BridgedBrokers) -> None:
    await _wait_bridge_up(bridged)
    async with (
        bridged.local.client("admin") as local_watch,
        bridged.city.client("admin") as city_watch,
        bridged.local.client("relay-example1") as local_relay,
        bridged.city.client("relay-example2") as city_relay,
    ):
        await local_watch.subscribe("relayd/alerts", qos=1)
        await city_watch.subscribe("relayd/alerts", qos=1)
        await local_relay.subscribe("relayd/alerts", qos=1)
        await city_relay.subscribe("relayd/alerts", qos=1)
        up, down = marker("up"), marker("down")
        await local_relay.publish("relayd/alerts", up, qos=1)
        await wait_for_payload(city_relay, up)
        await city_relay.publish("relayd/alerts", down, qos=1)
        await wait_for_payload(local_relay, down)
        # Both originals have crossed. An echo (try_private not honoured) would now be queued on
        # the bridge ahead of these sentinels: `up` coming back down, `down` going back up.
        city_sentinel, local_sentinel = marker("city-sentinel"), marker("local-sentinel")
        await city_relay.publish("relayd/alerts", city_sentinel, qos=1)
        await local_relay.publish("relayd/alerts", local_sentinel, qos=1)
        seen_locally = await collect_until(local_watch, city_sentinel)
        seen_at_city = await collect_until(city_watch, local_sentinel)
    assert (seen_locally.count(up), seen_locally.count(down)) == (1, 1)
    assert (seen_at_city.count(up), seen_at_city.count(down)) == (1, 1)


async def test_bridge_sends_trust_bundle_down_but_never_up(bridged: BridgedBrokers) -> None:
    await _wait_bridge_up(bridged)
    async with (
        bridged.local.client("admin") as local_admin,
        bridged.city.client("admin") as city_admin,
    ):
        await local_admin.subscribe("relayd/trust", qos=1)
        await city_admin.subscribe("relayd/trust", qos=1)
        await city_admin.subscribe("relayd/alerts", qos=1)
        from_city = marker("bundle-from-city")
        await city_admin.publish("relayd/trust", from_city, qos=1, retain=True)
        await wait_for_payload(local_admin, from_city)
        from_neighborhood = marker("bundle-from-neighborhood")
        await local_admin.publish("relayd/trust", from_neighborhood, qos=1, retain=True)
        sentinel = marker("sentinel")
        await local_admin.publish("relayd/alerts", sentinel, qos=1)
        seen_at_city = await collect_until(city_admin, sentinel)
    assert from_neighborhood not in seen_at_city


async def test_bridge_sends_reports_up_but_never_down(bridged: BridgedBrokers) -> None:
    await _wait_bridge_up(bridged)
    async with (
        bridged.local.client("admin") as local_admin,
        bridged.city.client("admin") as city_admin,
    ):
        await local_admin.subscribe("relayd/reports", qos=1)
        await local_admin.subscribe("relayd/trust", qos=1)
        await city_admin.subscribe("relayd/reports", qos=1)
        up = marker("report-up")
        await local_admin.publish("relayd/reports", up, qos=1)
        await wait_for_payload(city_admin, up)
        down = marker("report-down")
        await city_admin.publish("relayd/reports", down, qos=1)
        sentinel = marker("sentinel")
        await city_admin.publish("relayd/trust", sentinel, qos=1)
        seen_locally = await collect_until(local_admin, sentinel)
    assert down not in seen_locally


async def test_bridge_sends_city_outbox_down(bridged: BridgedBrokers) -> None:
    await _wait_bridge_up(bridged)
    async with (
        bridged.local.client("relay-example1") as local_relay,
        bridged.city.client("dispatcher-example") as city_dispatcher,
    ):
        await local_relay.subscribe("relayd/outbox", qos=1)
        signed = marker("signed-alert")
        await city_dispatcher.publish("relayd/outbox", signed, qos=1)
        await wait_for_payload(local_relay, signed)


async def test_bridge_keeps_relay_status_retained_at_the_city(bridged: BridgedBrokers) -> None:
    await _wait_bridge_up(bridged)
    topic = "relayd/relays/relay-example1/status"
    status = marker("online")
    async with bridged.city.client("dispatcher-example") as live:
        await live.subscribe(topic, qos=1)
        async with bridged.local.client("relay-example1") as relay:
            await relay.publish(topic, status, qos=1, retain=True)
        await wait_for_payload(live, status)
    # A dispatcher connecting later at the city still sees the relay's last status.
    async with bridged.city.client("dispatcher-example") as late:
        await late.subscribe(topic, qos=1)
        message = await wait_for_payload(late, status)
    assert message.retain
