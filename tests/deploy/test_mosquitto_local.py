"""config/mosquitto/local.conf: a real Mosquitto starts from it and enforces authentication."""

from __future__ import annotations

import aiomqtt
import pytest

from tests.deploy.deploy_support import LOCAL_CONF, Broker, marker, wait_for_payload

pytestmark = pytest.mark.mosquitto


def _directives() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in LOCAL_CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            found.setdefault(key, []).append(value.strip())
    return found


def test_local_conf_listens_on_loopback_only() -> None:
    directives = _directives()
    assert directives["listener"] == ["1883 127.0.0.1"]
    assert directives["allow_anonymous"] == ["false"]
    assert directives["persistence"] == ["true"]
    assert directives["persistence_location"] == ["/var/lib/mosquitto/"]


async def test_local_broker_accepts_an_authenticated_client(local_broker: Broker) -> None:
    async with local_broker.client("admin") as client:
        await client.subscribe("relayd/alerts", qos=1)
        payload = marker("hello")
        await client.publish("relayd/alerts", payload, qos=1)
        await wait_for_payload(client, payload)


async def test_local_broker_refuses_anonymous_clients(local_broker: Broker) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with local_broker.client(None):
            pass


async def test_local_broker_refuses_a_wrong_password(local_broker: Broker) -> None:
    with pytest.raises(aiomqtt.MqttError):
        async with local_broker.client("admin", password="not-the-password"):
            pass


async def test_local_broker_keeps_a_retained_trust_bundle_for_late_subscribers(local_broker: Broker) -> None:
    bundle = marker("bundle")
    async with local_broker.client("admin") as admin:
        await admin.publish("relayd/trust", bundle, qos=1, retain=True)
    async with local_broker.client("relay-example1") as relay:
        await relay.subscribe("relayd/trust", qos=1)
        message = await wait_for_payload(relay, bundle)
    assert message.retain
