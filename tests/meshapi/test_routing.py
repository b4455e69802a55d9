"""The firmware's answers to a sent packet, classified by meaning."""

from __future__ import annotations

import pytest
from meshtastic.protobuf import mesh_pb2

from relayd.meshapi import routing
from relayd.meshapi.routing import Disposition, classify_queue_result, classify_routing


def test_codes_match_the_firmware_protobufs() -> None:
    names = dict(mesh_pb2.Routing.Error.items())
    for code, name in routing._ROUTING_NAMES.items():
        assert names[name] == code


def test_an_ack_or_max_retransmit_of_a_broadcast_means_on_air() -> None:
    assert classify_routing(routing.NONE, broadcast=True).sent
    assert classify_routing(routing.MAX_RETRANSMIT, broadcast=True).sent
    # A DM that exhausted its retries never reached its addressee.
    assert not classify_routing(routing.MAX_RETRANSMIT, broadcast=False).sent


@pytest.mark.parametrize(
    ("code", "disposition"),
    [
        (routing.RATE_LIMIT_EXCEEDED, Disposition.RETRY),
        (routing.DUTY_CYCLE_LIMIT, Disposition.RETRY),
        (routing.NO_INTERFACE, Disposition.RETRY),
        (routing.TOO_LARGE, Disposition.FINAL),
        (routing.NO_CHANNEL, Disposition.FINAL),
        (routing.BAD_REQUEST, Disposition.FINAL),
        (routing.PKI_SEND_FAIL_PUBLIC_KEY, Disposition.OTHER_PATH),
        (routing.PKI_UNKNOWN_PUBKEY, Disposition.OTHER_PATH),
        (99, Disposition.FINAL),
    ],
)
def test_each_refusal_is_handled_by_its_meaning(code: int, disposition: Disposition) -> None:
    assert classify_routing(code, broadcast=True).disposition is disposition


def test_retries_wait_for_what_refused_them() -> None:
    rate = classify_routing(routing.RATE_LIMIT_EXCEEDED, broadcast=True)
    duty = classify_routing(routing.DUTY_CYCLE_LIMIT, broadcast=True)
    assert rate.retry_after_s > 2.0  # the firmware's text interval
    assert duty.retry_after_s > rate.retry_after_s


def test_queue_status_zero_is_not_a_verdict_and_a_full_queue_is_retried() -> None:
    assert classify_queue_result(routing.ERRNO_OK, broadcast=True) is None
    full = classify_queue_result(routing.ERRNO_UNKNOWN, broadcast=True)
    assert full is not None
    assert full.disposition is Disposition.RETRY
    too_large = classify_queue_result(routing.TOO_LARGE, broadcast=True)
    assert too_large is not None
    assert too_large.disposition is Disposition.FINAL
