"""`relayd alerts list|show|end` against a real Mosquitto, and `alert compose` refusing an
alert that would be expired at once."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import aiomqtt
import pytest

from relayd.core.codec import decode
from relayd.core.jsonform import Envelope, encode_alert, onair_from_message
from relayd.core.model import Kind, Severity
from relayd.core.topics import Topics
from relayd.core.verify import Verifier
from relayd.testing.keys import TestNetwork, make_network
from relayd.testing.mosquitto import MosquittoBroker, free_port
from tests.cli.cli_support import Relayd, assert_clean_error

T = Topics("relayd")


@pytest.fixture
def net(tmp_path: Path) -> TestNetwork:
    return make_network(tmp_path / "keys")


def trust_args(net: TestNetwork, broker_url: str) -> list[object]:
    return [
        "--broker",
        broker_url,
        "--trust",
        net.bundle_path,
        "--root-pub",
        net.pub_path("root"),
        "--wait",
        "0.5",
    ]


async def retain(port: int, messages: list[tuple[str, bytes]]) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="retainer") as client:
        for topic, payload in messages:
            await client.publish(topic, payload, qos=1, retain=True)


def seeded(net: TestNetwork, port: int) -> dict[str, str]:
    now = time.time()
    raid = net.sign("dispatcher", "Raid at 5th & Pine", area="9q8yyk", now_s=now - 120)
    update = net.sign(
        "dispatcher2", "3 vans now", kind=Kind.UPDATE, ref=raid.alert_id, area="9q8yyk", now_s=now - 60
    )
    # Tampered text: a new id (ids are over the signed bytes), and a signature that fails.
    forged = net.sign("dispatcher", "All quiet", severity=Severity.INFO).onair.replace("quiet", "RAID!")
    forged_id = decode(forged).alert_id.hex()
    elsewhere = net.sign("dispatcher", "Meet at the library", severity=Severity.ADVISORY)
    old = net.sign("dispatcher", "Earlier today", now_s=now - 4000, lifetime_s=600)
    # A verifier may not update another author's alert: relays refuse it, so must we.
    overreach = net.sign("verifier", "Not mine to update", kind=Kind.UPDATE, ref=raid.alert_id)
    asyncio.run(
        retain(
            port,
            [
                (T.active(raid.id_hex), encode_alert(raid, Envelope(relay="relay-north", via="mqtt"))),
                (T.active(update.id_hex), encode_alert(update)),
                (T.active(forged_id), forged.encode()),
                (T.active("0123456789abcdef"), encode_alert(elsewhere)),
                (T.active(old.id_hex), encode_alert(old)),
                (T.active(overreach.id_hex), encode_alert(overreach)),
            ],
        )
    )
    return {
        "raid": raid.id_hex,
        "update": update.id_hex,
        "forged": forged_id,
        "old": old.id_hex,
        "overreach": overreach.id_hex,
    }


@pytest.mark.mosquitto
def test_list_shows_verified_active_alerts_and_says_what_is_not_believed(
    relayd: Relayd, net: TestNetwork, mosquitto: MosquittoBroker
) -> None:
    ids = seeded(net, mosquitto.port)
    result = relayd("alerts", "list", "--json", *trust_args(net, mosquitto.url))
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert [a["id"] for a in doc["active"]] == [ids["update"], ids["raid"]]
    assert doc["active"][1]["signer"] == {"name": "dispatcher", "role": "dispatcher"}
    assert doc["active"][1]["area"] == "9q8yyk"
    assert doc["expired"] == [ids["old"]]
    reasons = {n["id"]: n["reason"] for n in doc["not_believed"]}
    assert reasons == {
        ids["forged"]: "bad_signature",
        "0123456789abcdef": "wrong_topic",
        ids["overreach"]: "role_not_allowed",
    }
    assert "not believed: active/0123456789abcdef: wrong_topic" in result.stderr

    text = relayd("alerts", "list", *trust_args(net, mosquitto.url))
    assert text.returncode == 0, text.stderr
    assert text.stdout.splitlines()[0].startswith(f"{ids['update']}  UPDATE")
    assert "Raid at 5th & Pine" in text.stdout
    assert "RAID!" not in text.stdout
    assert text.stdout.rstrip().endswith("2 active alert(s); 1 expired but still retained")


@pytest.mark.mosquitto
def test_show_one_by_prefix_and_refuse_what_is_not_active(
    relayd: Relayd, net: TestNetwork, mosquitto: MosquittoBroker
) -> None:
    ids = seeded(net, mosquitto.port)
    shown = relayd("alerts", "show", ids["raid"][:6], "--json", *trust_args(net, mosquitto.url))
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["id"] == ids["raid"]
    for alert_id, phrase in (
        (ids["old"], "has expired"),
        (ids["forged"], "not believed: bad_signature"),
        ("feedfeedfeedfeed", "no active alert"),
    ):
        assert_clean_error(relayd("alerts", "show", alert_id, *trust_args(net, mosquitto.url)), phrase)


@pytest.mark.mosquitto
async def test_end_signs_an_allclear_and_the_broker_acknowledges_it(
    relayd: Relayd, net: TestNetwork, mosquitto: MosquittoBroker
) -> None:
    ids = await asyncio.to_thread(seeded, net, mosquitto.port)
    received: list[bytes] = []
    async with aiomqtt.Client("127.0.0.1", mosquitto.port, identifier="outbox-counter") as client:
        await client.subscribe(T.outbox, qos=1)

        arrived = asyncio.Event()

        async def collect() -> None:
            async for message in client.messages:
                assert isinstance(message.payload, bytes)
                received.append(message.payload)
                arrived.set()

        task = asyncio.create_task(collect())
        result = await asyncio.to_thread(
            relayd,
            "alerts",
            "end",
            ids["raid"][:8],
            "--kind",
            "allclear",
            "--key",
            net.key_path("dispatcher"),
            *trust_args(net, mosquitto.url),
        )
        assert result.returncode == 0, result.stderr
        await asyncio.wait_for(arrived.wait(), 5)
        await asyncio.sleep(0.3)  # room for a second copy, if one were sent
        task.cancel()
    assert len(received) == 1
    assert "the broker acknowledged it" in result.stderr
    frame = decode(onair_from_message(received[0]))
    assert frame.fields.kind is Kind.ALLCLEAR
    assert frame.fields.severity is Severity.INFO
    assert frame.fields.ref is not None
    assert frame.fields.ref.hex() == ids["raid"]
    assert frame.fields.area == "9q8yyk"
    assert frame.fields.text == "All clear"
    assert Verifier(net.bundle).authenticate(frame, time.time()).ok
    assert json.loads(received[0])["signer"] == {"name": "dispatcher", "role": "dispatcher"}


@pytest.mark.mosquitto
def test_end_refuses_without_what_it_needs(
    relayd: Relayd, net: TestNetwork, mosquitto: MosquittoBroker
) -> None:
    ids = seeded(net, mosquitto.port)
    args = trust_args(net, mosquitto.url)
    no_text = relayd(
        "alerts", "end", ids["raid"], "--kind", "update", "--key", net.key_path("dispatcher"), *args
    )
    assert_clean_error(no_text, "--text is required for update")
    reporter = relayd(
        "alerts", "end", ids["raid"], "--kind", "cancel", "--key", net.key_path("reporter"), *args
    )
    assert_clean_error(reporter, "reporter key; it may not sign a cancel")


def test_end_with_the_broker_down_says_not_sent(relayd: Relayd, net: TestNetwork) -> None:
    url = f"mqtt://127.0.0.1:{free_port()}"
    result = relayd(
        "alerts",
        "end",
        "0123456789abcdef",
        "--kind",
        "cancel",
        "--key",
        net.key_path("dispatcher"),
        *trust_args(net, url),
    )
    assert_clean_error(result, "cannot read relayd/active/+ from")
    assert "sent:" not in result.stderr


def test_password_in_the_url_is_refused(relayd: Relayd, net: TestNetwork) -> None:
    result = relayd("alerts", "list", *trust_args(net, "mqtt://ops:secret@127.0.0.1:1883"))
    assert_clean_error(result, "--password-file")


def test_compose_refuses_an_alert_already_expired(relayd: Relayd, net: TestNetwork) -> None:
    result = relayd(
        "alert",
        "compose",
        "--key",
        net.key_path("dispatcher"),
        "--kind",
        "alert",
        "--severity",
        "urgent",
        "--expires",
        "2020-01-01T00:00:00Z",
        "Raid at 5th & Pine",
    )
    assert_clean_error(result, "would be expired")
    assert result.stdout == ""
