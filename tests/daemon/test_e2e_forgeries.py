"""Forged, tampered, replayed, revoked-key, wrong-role and expired alerts reach no handheld
through a relay, and each is counted under its reason."""

from __future__ import annotations

import asyncio
import json
import time

from relayd.core.codec import compose
from relayd.core.identity import Identity
from relayd.core.jsonform import encode_alert
from relayd.core.model import AlertFields, Kind, Role, Severity
from relayd.core.trust import TrustedKey
from tests.daemon.conftest import Site, SiteFactory


def _tamper(onair: str) -> str:
    # Change one visible character; the signature no longer matches.
    return onair.replace("Main", "Mian", 1)


async def test_forgeries_over_mqtt_and_rf_are_dropped_with_reasons(site_factory: SiteFactory) -> None:
    net = None
    site: Site = await site_factory(start=False)
    net = site.network
    seized = Identity.generate("seized", Role.DISPATCHER)
    bundle = net.bundle.with_key(TrustedKey(seized.public_key, "seized", Role.DISPATCHER)).with_revoked(
        seized.key_id
    )
    net.resign(bundle)
    for name in site.configs:
        site.start_relay(name)
    await site.wait_relays_ready()

    genuine = net.sign("dispatcher", "Genuine: police at 5th & Main, observers needed")
    stranger = Identity.generate("stranger", Role.DISPATCHER)
    now = int(time.time())

    def signed_by(ident: Identity, text: str) -> str:
        fields = AlertFields(
            kind=Kind.ALERT,
            severity=Severity.URGENT,
            key_id=ident.key_id,
            issued_at_s=now,
            seq=1,
            expires_at_s=now + 1800,
            text=text,
        )
        return compose(fields, ident.sign).onair

    forged = {
        "bad_signature": _tamper(net.sign("dispatcher", "Forged: raid at 5th & Main").onair),
        "unknown_key": signed_by(stranger, "Unknown key: raid at Elm"),
        "revoked": signed_by(seized, "Seized key: raid at Oak"),
        "role_not_allowed": net.sign("reporter", "Reporter says raid at Pine", kind=Kind.ALERT).onair,
        "expired": net.sign("dispatcher", "Old news", now_s=now - 7200, lifetime_s=1800).onair,
    }
    # A replay: a different alert reusing the genuine alert's sequence number.
    forged["replay"] = net.sign("dispatcher", "Replayed seq: raid at Birch", seq=genuine.fields.seq).onair

    await site.publish(site.topic("outbox"), encode_alert(genuine))
    assert await site.wait_displayed_everywhere([genuine], timeout_s=30)
    for onair in forged.values():
        await site.publish(site.topic("outbox"), json.dumps({"onair": onair}).encode())
    # Over RF: a rogue handheld broadcasts forged frames on the alerts channel.
    for onair in (forged["bad_signature"], forged["unknown_key"], forged["role_not_allowed"]):
        site.hood.handheld_send("hh-erin", onair, channel_index=0)
        await asyncio.sleep(0.5)
    await asyncio.sleep(4)

    relay_nodes = {site.hood.endpoints[r].node_id for r in site.relays}
    for handheld in site.handhelds:
        for shown in site.hood.displays(handheld):
            if shown.text in forged.values():
                assert shown.sender_id not in relay_nodes, f"relay put a forgery on air to {handheld}"
    statuses = await site.statuses()
    totals: dict[str, int] = {}
    for status in statuses.values():
        for reason, count in status.drops.items():
            totals[reason] = totals.get(reason, 0) + count
    for reason in forged:
        # Every relay sees every MQTT forgery once.
        assert totals.get(reason, 0) >= len(site.relays), (reason, totals)
    alerts_seen = await site.collect(site.topic("alerts"), 1.0)
    assert not any(json.loads(m).get("onair") in forged.values() for m in alerts_seen)
