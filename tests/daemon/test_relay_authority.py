"""Authority at the relay (issue 13, finding 6), on a real state directory.

`Relay` objects are built but not started and driven through the handlers' own methods:
the MQTT outbox path (`_verify` + `_accept`), the retained trust topic (`_on_trust`), a
restart (a new `Relay` on the same state) and the housekeeping step for held frames.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from relayd.core.authority import HOLD_S
from relayd.core.model import DropReason, Kind, Severity, SignedAlert
from relayd.core.trust import TrustBundle
from relayd.daemon.config import load_config
from relayd.daemon.relay import Relay
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork

GENEROUS_LIMITS = """
[rate_limits.dispatcher]
burst = 10000
per_minute = 100000
"""


@pytest.fixture
def config_path(tmp_path: Path, network: TestNetwork) -> Path:
    return write_relay_config(
        tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9, extra=GENEROUS_LIMITS
    )


def _outbox(relay: Relay, alert: SignedAlert) -> None:
    """What `_on_mqtt` does with an outbox message, from the verdict on."""
    verdict = relay._verify(alert.onair, "mqtt")
    if relay._hold_for_reference(verdict, alert.onair, "mqtt"):
        return
    if not verdict.ok:
        relay._drop(verdict, "mqtt")
        return
    relay._accept(verdict, "mqtt", queue=True)


def _queued(relay: Relay, alert: SignedAlert) -> bool:
    in_memory = alert.alert_id in relay.queued or alert.alert_id in relay.suppressor
    on_disk = any(r.alert_id == alert.alert_id for r in relay.storage.queued())
    return in_memory or on_disk


def _revoke(network: TestNetwork, name: str) -> bytes:
    b = network.bundle
    newer = TrustBundle(
        b.version + 1,
        b.issued_at_s,
        b.expires_at_s,
        b.root_public_key,
        b.keys,
        b.revoked | {network.identities[name].key_id},
    )
    return network.resign(newer).to_bytes()


def test_a_revoked_keys_queued_alert_never_goes_on_air(config_path: Path, network: TestNetwork) -> None:
    relay = Relay.load(load_config(config_path))
    alert = network.sign("dispatcher2", "Police at 5th & Main")
    _outbox(relay, alert)
    assert _queued(relay, alert)
    relay._on_trust(_revoke(network, "dispatcher2"))  # the retained <root>/trust message
    assert relay.verifier.bundle.version == network.bundle.version
    assert not _queued(relay, alert)
    assert relay.counters.drops[DropReason.REVOKED.value] == 1
    relay.storage.close()


def test_a_queue_restored_after_a_restart_is_re_verified(config_path: Path, network: TestNetwork) -> None:
    before = Relay.load(load_config(config_path))
    kept = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    revoked = network.sign("dispatcher2", "Police at 5th & Main")
    _outbox(before, kept)
    _outbox(before, revoked)
    before.storage.close()
    _revoke(network, "dispatcher2")  # the bundle file changed while the relay was down
    after = Relay.load(load_config(config_path))
    assert _queued(after, kept)
    assert not _queued(after, revoked)
    after.storage.close()


def test_a_verifier_cannot_all_clear_a_dispatchers_alert(config_path: Path, network: TestNetwork) -> None:
    relay = Relay.load(load_config(config_path))
    alert = network.sign("dispatcher", "ICE vehicles at Lot C")
    _outbox(relay, alert)
    hijack = network.sign(
        "verifier", "All clear", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=alert.alert_id
    )
    _outbox(relay, hijack)
    assert relay.counters.drops[DropReason.ROLE_NOT_ALLOWED.value] == 1
    assert alert.alert_id in relay._active_refs
    relay.storage.close()
    # Also after a restart: the relay relearns who wrote what from its history.
    again = Relay.load(load_config(config_path))
    hijack2 = network.sign(
        "verifier", "All clear!", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=alert.alert_id
    )
    verdict = again._verify(hijack2.onair, "mqtt")
    assert verdict.reason is DropReason.ROLE_NOT_ALLOWED, verdict
    again.storage.close()


def test_a_relay_keys_drill_that_rings_is_refused(config_path: Path, network: TestNetwork) -> None:
    relay = Relay.load(load_config(config_path))
    drill = network.sign(
        "relay-south", "Drill: everyone to the park", kind=Kind.TEST, severity=Severity.URGENT
    )
    _outbox(relay, drill)
    assert not _queued(relay, drill)
    assert relay.counters.drops[DropReason.ROLE_NOT_ALLOWED.value] == 1
    relay.storage.close()


def test_a_cancel_arriving_before_its_alert_is_held_then_applied(
    config_path: Path, network: TestNetwork
) -> None:
    relay = Relay.load(load_config(config_path))
    alert = network.sign("dispatcher", "Crowd at Oak & Broadway")
    cancel = network.sign(
        "dispatcher", "Cancel: wrong street", kind=Kind.CANCEL, severity=Severity.INFO, ref=alert.alert_id
    )
    _outbox(relay, cancel)
    assert len(relay._ref_hold) == 1
    assert not relay.counters.drops
    _outbox(relay, alert)
    assert len(relay._ref_hold) == 0
    assert not _queued(relay, alert)  # the held cancel was applied once the alert was known
    assert _queued(relay, cancel)
    relay.storage.close()


def test_a_reference_to_an_alert_never_known_is_dropped_after_the_hold(
    config_path: Path, network: TestNetwork
) -> None:
    now = [time.time()]
    relay = Relay.load(load_config(config_path), clock=lambda: now[0])
    orphan = network.sign(
        "dispatcher", "All clear", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=b"\x42" * 8, now_s=now[0]
    )
    _outbox(relay, orphan)
    relay._expire_reference_holds(now[0] + HOLD_S - 1)
    assert len(relay._ref_hold) == 1
    now[0] += HOLD_S
    relay._expire_reference_holds(now[0])
    assert len(relay._ref_hold) == 0
    assert relay.counters.drops[DropReason.UNKNOWN_REFERENCE.value] == 1
    assert not _queued(relay, orphan)
    relay.storage.close()
