"""Fuzzing every parser that reads attacker-controlled bytes (targets in fuzz_targets.py).

Two budgets per target: a small one that runs in CI, and a large one marked `fuzz` that
runs only when RELAYD_FUZZ_EXAMPLES is set -- `relayd-bench fuzz` does that, together
with atheris (bench/fuzz_atheris.py). Inputs are random bytes, random text, and genuine
inputs (signed frames, the signed bundle, MQTT messages, device-API frames) with random
edits: byte changes, insertions, deletions, truncations and splices.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relayd.daemon.mqtt import Incoming
from tests.faults.fuzz_targets import ROOT, TARGETS, fresh_genuine_alert, relay_harness, seeds

ENV_EXAMPLES = "RELAYD_FUZZ_EXAMPLES"
ENV_COUNT_FILE = "RELAYD_FUZZ_COUNT_FILE"  # the bench adds up the inputs tried
CI_EXAMPLES = 150
FUZZ_EXAMPLES = int(os.environ.get(ENV_EXAMPLES, "0"))

BUDGETS = [
    pytest.param(CI_EXAMPLES, id="ci"),
    pytest.param(
        FUZZ_EXAMPLES,
        id="fuzz",
        marks=[
            pytest.mark.fuzz,
            pytest.mark.timeout(3600),
            pytest.mark.skipif(
                not FUZZ_EXAMPLES, reason=f"large budget: set {ENV_EXAMPLES} (relayd-bench fuzz)"
            ),
        ],
    ),
]


@st.composite
def edited(draw: st.DrawFn, base: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(base)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "insert", "delete", "truncate", "splice"]))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":
            other = draw(st.sampled_from(base))
            cut = draw(st.integers(0, len(other)))
            data[pos:] = other[cut:]
    return bytes(data)


def inputs(target: str) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=600),
        st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
        edited(seeds(target)),
    )


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_parser_raises_only_its_error_and_accepts_only_genuine_input(target: str, budget: int) -> None:
    check = TARGETS[target]
    tried = 0

    @settings(
        max_examples=budget,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(inputs(target))
    def fuzz(data: bytes) -> None:
        nonlocal tried
        tried += 1
        check(data)

    fuzz()
    count_file = os.environ.get(ENV_COUNT_FILE)
    if count_file:
        with Path(count_file).open("a") as f:
            f.write(f"hypothesis {target} {tried}\n")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_seed_as_is_keeps_the_targets_promise(target: str) -> None:
    # The seeds include the hostile payloads (relayd.testing.hostile) on every handler topic;
    # random edits rarely leave one intact, so each is tried unedited too.
    check = TARGETS[target]
    for data in seeds(target):
        check(data)


@pytest.mark.parametrize("budget", BUDGETS)
def test_after_fuzzing_the_relays_handlers_a_genuine_alert_is_still_taken(budget: int) -> None:
    """Whatever the fuzz did to the in-process relay (the same one the handler targets use),
    it still accepts and queues a genuine alert from the outbox and one heard on RF."""

    @settings(max_examples=budget, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(
        st.one_of(
            inputs("relay_mqtt").map(lambda d: ("relay_mqtt", d)),
            inputs("relay_radio").map(lambda d: ("relay_radio", d)),
        )
    )
    def fuzz(case: tuple[str, bytes]) -> None:
        TARGETS[case[0]](case[1])

    fuzz()
    h = relay_harness()
    onair = fresh_genuine_alert(5000 + budget)
    message = Incoming(f"{ROOT}/outbox", onair_message(onair), retain=False)
    h.loop.run_until_complete(h.relay._on_mqtt(message))
    assert any(r.onair == onair for r in h.relay.queued.values()) or onair in {
        r.onair for r in h.relay.storage.queued()
    }


def onair_message(onair: str) -> bytes:
    from relayd.core.codec import decode  # noqa: PLC0415
    from relayd.core.jsonform import encode_alert  # noqa: PLC0415

    return encode_alert(decode(onair).to_signed_alert())
