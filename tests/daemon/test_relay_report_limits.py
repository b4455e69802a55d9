"""Reports per handheld are limited, and acknowledgements never go before an alert."""

from __future__ import annotations

from pathlib import Path

from relayd.core.model import DropReason, Severity
from relayd.daemon.config import load_config
from relayd.daemon.radio import ReceivedText
from relayd.daemon.relay import Relay
from relayd.daemon.relaybase import ACK_RANK, REPORTS_PER_HANDHELD
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork


def report(node: int, packet_id: int) -> ReceivedText:
    return ReceivedText("main", node, 0xFFFFFFFF, packet_id, 0, b"!r vans at Oak", 0.0, 3, 3)


def test_a_handheld_flooding_reports_is_limited_and_others_are_not(
    tmp_path: Path, network: TestNetwork
) -> None:
    path = write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9)
    now = [1_800_000_000.0]
    relay = Relay.load(load_config(path), clock=lambda: now[0])
    for packet_id in range(1, 11):
        relay._on_radio_text(report(0x1111, packet_id))
    relay._on_radio_text(report(0x2222, 1))
    burst = REPORTS_PER_HANDHELD.burst
    assert len(relay._report_holds) == burst + 1
    assert relay.counters.drops[DropReason.RATE_LIMITED.value] == 10 - burst
    now[0] += 30.0  # one more after the refill interval
    relay._on_radio_text(report(0x1111, 99))
    assert len(relay._report_holds) == burst + 2
    relay.storage.close()


def test_acks_rank_after_every_alert() -> None:
    assert all(s.rank < ACK_RANK for s in Severity)
