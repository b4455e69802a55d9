"""A relay wraps a responder's answer (relayd/core/replies.py) as a report referring to the
alert: no ack on air, its own limit per handheld, and no handheld at INFO."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from relayd.core.catchup import ActiveFrame
from relayd.core.codec import decode
from relayd.core.model import DropReason, Kind, Severity
from relayd.core.replies import REPLIES_PER_HANDHELD
from relayd.daemon.config import load_config
from relayd.daemon.radio import ReceivedText
from relayd.daemon.relay import Relay
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork

NOW_S = 1_800_000_000.0
ALERT_ID = bytes.fromhex("3cba125fcb517d5b")


def heard(node: int, packet_id: int, text: str, *, reply_id: int = 0, emoji: bool = False) -> ReceivedText:
    return ReceivedText(
        "main", node, 0xFFFFFFFF, packet_id, 0, text.encode(), NOW_S, 3, 3, reply_id=reply_id, emoji=emoji
    )


def test_answers_are_wrapped_with_a_ref_limited_per_handheld_and_never_acknowledged(
    tmp_path: Path, network: TestNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9)
    now = [NOW_S]
    relay = Relay(load_config(path), clock=lambda: now[0])
    relay._active_frames[ALERT_ID] = ActiveFrame(
        ALERT_ID, "onair", Severity.URGENT, int(NOW_S) - 60, int(NOW_S) + 1800
    )
    relay.replies.packets.note(0xABCD, ALERT_ID)  # the packet id it went on air under
    caplog.set_level(logging.INFO, logger="relayd")
    relay._on_radio_text(heard(0x1111, 1, "!OMW "))
    relay._on_radio_text(heard(0x2222, 2, "\U0001f44d", reply_id=0xABCD, emoji=True))
    for packet_id in range(10, 10 + REPLIES_PER_HANDHELD.burst + 2):  # one handheld flooding
        relay._on_radio_text(heard(0x3333, packet_id, "!y"))
    relay._on_radio_text(heard(0x4444, 3, "!r vans at Oak"))  # a field report still a report
    now[0] += 60
    relay._release_holds(now[0])

    docs = [json.loads(p.payload) for p in relay.storage.pending()]
    frames = [decode(d["onair"]) for d in docs]
    answers = [f for f in frames if f.fields.ref is not None]
    assert len(answers) == 2 + REPLIES_PER_HANDHELD.burst
    assert {f.fields.ref for f in answers} == {ALERT_ID}
    assert all(f.fields.kind is Kind.REPORT for f in frames)
    assert sorted(f.fields.text for f in answers if f.fields.origin_node != 0x3333) == ["!omw", "!y"]
    assert relay.counters.drops[DropReason.RATE_LIMITED.value] == 2
    # The field report got its ack DM; answers cost no airtime.
    assert sum(len(s) for s in relay.schedulers.values()) == 1
    assert relay.replies.wrapped == 2 + REPLIES_PER_HANDHELD.burst
    for record in caplog.records:
        message = record.getMessage()
        assert "1111" not in message
        assert "2222" not in message
    relay.storage.close()
