"""The relay's side of handing frames to a radio, driven through its own methods on a real
state directory: "transmitted" only on the firmware's word, refusals by their meaning, a
lost radio's frames resent with the same packet id.

The radio link itself is tested against the simulator (test_radio_link.py) and the real
firmware (tests/firmware/); here the radio's answers are given directly, as the link would.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from relayd.core.model import SignedAlert
from relayd.core.outbound import MAX_SEND_ATTEMPTS
from relayd.core.packetid import first_packet_id
from relayd.core.scheduler import Ready
from relayd.daemon.config import load_config
from relayd.daemon.relay import REFUSED_BY_RADIO, Relay
from relayd.meshapi import routing
from relayd.meshapi.routing import classify_routing
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork

PACKET_ID = 0x1234


@pytest.fixture
def relay(tmp_path: Path, network: TestNetwork) -> Relay:
    path = write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9)
    return Relay.load(load_config(path))


def _queue(relay: Relay, alert: SignedAlert) -> None:
    """An outbox alert, accepted and released from suppression into the radio's queue."""
    verdict = relay._verify(alert.onair, "mqtt")
    assert verdict.ok, verdict
    relay._accept(verdict, "mqtt", queue=True)
    relay.outbound.due(relay.clock() + 3600)  # its suppression turn is over


def _taken(relay: Relay, alert: SignedAlert, packet_id: int = PACKET_ID) -> int:
    """What `_transmit` does once the radio has taken the frame (QueueStatus res 0); the
    packet id it went under (the alert's own on a first hand-over, else `packet_id`)."""
    radio = relay.radios[0]
    action = relay.outbound.next_action(radio.name, relay.clock() + 3600)
    assert isinstance(action, Ready)
    assert action.item.alert_id == alert.alert_id
    send = relay.outbound.send(radio.name, action.item, lambda: packet_id)
    assert send.write_ahead == (send.packet_id != first_packet_id(alert.alert_id))
    if send.write_ahead:
        relay._storage_call(lambda: relay.storage.mark_transmitting(alert.alert_id, send.packet_id))
    relay._on_taken(send)
    return send.packet_id


def _on_disk(relay: Relay, alert: SignedAlert) -> bool:
    return any(r.alert_id == alert.alert_id for r in relay.storage.queued())


def test_a_taken_frame_is_transmitted_only_when_the_firmware_confirms_it(
    relay: Relay, network: TestNetwork
) -> None:
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    _queue(relay, alert)
    packet_id = _taken(relay, alert)
    assert relay.counters.transmitted == 0
    assert _on_disk(relay, alert)  # still ours until the radio says it was on air
    relay._on_radio_answer(relay.radios[0].name, packet_id, classify_routing(routing.NONE, broadcast=True))
    assert relay.counters.transmitted == 1
    assert not _on_disk(relay, alert)
    relay.storage.close()


def test_an_answer_naming_a_packet_we_did_not_send_changes_nothing(
    relay: Relay, network: TestNetwork
) -> None:
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    _queue(relay, alert)
    packet_id = _taken(relay, alert)
    ack = classify_routing(routing.NONE, broadcast=True)
    relay._on_radio_answer(relay.radios[0].name, packet_id + 1, ack)
    assert relay.counters.transmitted == 0
    assert (relay.radios[0].name, packet_id) in relay.in_flight
    relay.storage.close()


def test_a_lost_radio_s_unconfirmed_frame_goes_again_with_the_same_packet_id(
    relay: Relay, network: TestNetwork
) -> None:
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    _queue(relay, alert)
    packet_id = _taken(relay, alert)
    radio = relay.radios[0]
    relay._on_radio_lost(radio)  # e.g. it rebooted with the frame in its transmit queue
    assert relay.counters.transmitted == 0
    assert len(relay.schedulers[radio.name]) == 1
    action = relay.outbound.next_action(radio.name, relay.clock() + 3600)
    assert isinstance(action, Ready)
    again = relay.outbound.send(radio.name, action.item, lambda: packet_id + 1)
    assert again.packet_id == packet_id  # never a new id for a frame that may be on air
    assert not again.write_ahead
    assert _on_disk(relay, alert)
    relay.storage.close()


def test_a_rate_limited_frame_is_retried_a_bounded_number_of_times_then_reported_not_sent(
    relay: Relay, network: TestNetwork
) -> None:
    alert = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    _queue(relay, alert)
    radio = relay.radios[0]
    refusal = classify_routing(routing.RATE_LIMIT_EXCEEDED, broadcast=True)
    for attempt in range(1, MAX_SEND_ATTEMPTS):
        packet_id = _taken(relay, alert, PACKET_ID + attempt)
        relay._on_radio_answer(radio.name, packet_id, refusal)
        assert len(relay.schedulers[radio.name]) == 1, attempt  # queued again
        assert relay.outbound.paused_until[radio.name] > relay.clock()
    packet_id = _taken(relay, alert, PACKET_ID)
    assert packet_id == PACKET_ID  # after a refusal, a fresh id
    relay._on_radio_answer(radio.name, packet_id, refusal)
    assert len(relay.schedulers[radio.name]) == 0
    assert relay.counters.drops[REFUSED_BY_RADIO] == 1
    assert relay.counters.transmitted == 0
    assert not _on_disk(relay, alert)
    relay.storage.close()


def test_a_frame_the_firmware_can_never_send_is_given_up_and_the_queue_moves_on(
    relay: Relay, network: TestNetwork
) -> None:
    too_big = network.sign("dispatcher", "Observers needed at Elm & 3rd")
    next_one = network.sign("dispatcher", "Legal observers to Oak & 5th")
    _queue(relay, too_big)
    _queue(relay, next_one)
    radio = relay.radios[0]
    packet_id = _taken(relay, too_big)
    relay._on_radio_answer(radio.name, packet_id, classify_routing(routing.TOO_LARGE, broadcast=True))
    assert relay.counters.drops[REFUSED_BY_RADIO] == 1
    assert radio.name not in relay.outbound.paused_until  # nothing to wait for
    scheduler = relay.schedulers[radio.name]
    assert too_big.alert_id not in scheduler
    assert next_one.alert_id in scheduler
    relay.storage.close()
