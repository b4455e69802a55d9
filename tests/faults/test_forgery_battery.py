"""The forgery battery, CI size: no forged, replayed, revoked, escalated or stale alert is
accepted, and each is rejected for the reason its category calls for.

The full size (1,000 frames) runs in `relayd-bench forgery`; the attacks are shared in
relayd/testing/forgery.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from relayd.testing.forgery import (
    Outcome,
    genuine_frames,
    mutation_battery,
    relay_battery,
    splice_battery,
)
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork

CI_FRAMES = 20
GENEROUS_LIMITS = """
[rate_limits.dispatcher]
burst = 10000
per_minute = 100000
"""


def _assert_clean(name: str, outcome: Outcome) -> None:
    assert outcome.tried > 0, f"{name}: nothing was tried"
    assert not outcome.accepted, f"{name}: accepted {len(outcome.accepted)}: {outcome.accepted[:5]}"
    assert not outcome.wrong_reason, f"{name}: wrong reasons: {outcome.wrong_reason[:5]}"


def test_every_single_byte_mutation_is_rejected_for_its_reason(network: TestNetwork) -> None:
    now = time.time()
    outcome = mutation_battery(genuine_frames(network, CI_FRAMES, now), network.bundle, now)
    _assert_clean("mutation", outcome)
    # The battery reaches every layer: the decoder, the key lookup and the signature check.
    assert {"malformed", "unknown_key", "bad_signature"} <= set(outcome.reasons)


def test_text_spliced_onto_another_alerts_token_is_rejected(network: TestNetwork) -> None:
    now = time.time()
    outcome = splice_battery(genuine_frames(network, CI_FRAMES, now), network.bundle, now)
    _assert_clean("splice", outcome)
    assert outcome.reasons["bad_signature"] > 0


@pytest.mark.parametrize("category", ["replay_restart", "revoked_after_bundle", "role_escalation", "clock"])
def test_relay_rejects_replays_revoked_keys_escalation_and_stale_alerts(
    network: TestNetwork, tmp_path: Path, category: str
) -> None:
    config = write_relay_config(
        tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9, extra=GENEROUS_LIMITS
    )
    _assert_clean(category, relay_battery(network, config)[category])
