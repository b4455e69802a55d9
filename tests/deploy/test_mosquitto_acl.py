"""config/mosquitto/acl.example, loaded by a real Mosquitto: who may publish and read what."""

from __future__ import annotations

import pytest

from tests.deploy.deploy_support import Broker, collect_until, marker, publish_reaches

pytestmark = pytest.mark.mosquitto


async def test_dispatcher_can_publish_to_the_outbox(local_broker: Broker) -> None:
    assert await publish_reaches(local_broker, "dispatcher-example", "relayd/outbox")


async def test_dispatcher_cannot_publish_a_trust_bundle(local_broker: Broker) -> None:
    assert not await publish_reaches(local_broker, "dispatcher-example", "relayd/trust", retain=True)


async def test_dispatcher_cannot_publish_alerts_directly(local_broker: Broker) -> None:
    # Dispatchers' alerts go through the outbox so that relays verify them before anything
    # appears on relayd/alerts.
    assert not await publish_reaches(local_broker, "dispatcher-example", "relayd/alerts")


async def test_admin_can_publish_a_trust_bundle(local_broker: Broker) -> None:
    assert await publish_reaches(local_broker, "admin", "relayd/trust", retain=True)


async def test_relay_cannot_publish_a_trust_bundle(local_broker: Broker) -> None:
    assert not await publish_reaches(local_broker, "relay-example1", "relayd/trust", retain=True)


@pytest.mark.parametrize("topic", ["relayd/alerts", "relayd/reports", "relayd/active/3f9a1c2e"])
async def test_relay_can_publish_alerts_reports_and_active_markers(local_broker: Broker, topic: str) -> None:
    assert await publish_reaches(local_broker, "relay-example1", topic)


async def test_relay_cannot_publish_to_the_outbox(local_broker: Broker) -> None:
    assert not await publish_reaches(local_broker, "relay-example1", "relayd/outbox")


@pytest.mark.parametrize("leaf", ["status", "events"])
async def test_relay_can_publish_its_own_status_and_events(local_broker: Broker, leaf: str) -> None:
    assert await publish_reaches(local_broker, "relay-example1", f"relayd/relays/relay-example1/{leaf}")


@pytest.mark.parametrize("leaf", ["status", "events"])
async def test_relay_cannot_publish_another_relays_status_or_events(local_broker: Broker, leaf: str) -> None:
    assert not await publish_reaches(local_broker, "relay-example1", f"relayd/relays/relay-example2/{leaf}")


async def test_relay_reads_what_the_daemon_subscribes_to_and_nothing_else(local_broker: Broker) -> None:
    # relayd subscribes to outbox, alerts, reports, trust, relays/+/status and relays/+/events
    # (peers' "transmitted" events are the fast path of suppression). Mosquitto grants
    # any subscription and filters each message by read permission, so subscribe to everything
    # and check what arrives.
    readable = {
        "relayd/alerts": marker("alert"),
        "relayd/outbox": marker("outbox"),
        "relayd/reports": marker("report"),
        "relayd/trust": marker("bundle"),
        "relayd/relays/relay-example2/status": marker("peer-status"),
        "relayd/relays/relay-example2/events": marker("peer-events"),
    }
    unreadable = {
        "relayd/bridges/relayd-north/state": marker("bridge-state"),
    }
    async with local_broker.client("relay-example1") as relay, local_broker.client("admin") as admin:
        await relay.subscribe("relayd/#", qos=1)
        for topic, payload in {**readable, **unreadable}.items():
            await admin.publish(topic, payload, qos=1)
        sentinel = marker("sentinel")
        await admin.publish("relayd/alerts", sentinel, qos=1)
        received = set(await collect_until(relay, sentinel))
    assert received == set(readable.values())


async def test_dispatcher_reads_reports_and_relay_status(local_broker: Broker) -> None:
    async with (
        local_broker.client("dispatcher-example") as dispatcher,
        local_broker.client("relay-example1") as relay,
    ):
        await dispatcher.subscribe("relayd/reports", qos=1)
        await dispatcher.subscribe("relayd/relays/+/status", qos=1)
        report, status = marker("report"), marker("status")
        await relay.publish("relayd/reports", report, qos=1)
        await relay.publish("relayd/relays/relay-example1/status", status, qos=1, retain=True)
        await dispatcher.subscribe("relayd/alerts", qos=1)
        sentinel = marker("sentinel")
        await relay.publish("relayd/alerts", sentinel, qos=1)
        received = await collect_until(dispatcher, sentinel)
    assert report in received
    assert status in received


@pytest.mark.parametrize("leaf", ["status", "events"])
async def test_only_relay_accounts_have_a_relay_namespace(local_broker: Broker, leaf: str) -> None:
    # A pattern line would give every account relayd/relays/<its name>/: a place to publish
    # a fake relay's status and "transmitted" events (security review, finding 2).
    user = "dispatcher-example"
    assert not await publish_reaches(local_broker, user, f"relayd/relays/{user}/{leaf}")
