"""`relayd alert compose|verify`: exact on-air text out, one-line JSON verdict back.

verify exits 0 when the alert is accepted, 1 when it is rejected, 2 on usage errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from relayd.core.codec import decode, text_budget_bytes
from relayd.core.identity import Identity
from relayd.core.model import Kind, Role, Severity
from relayd.keystore import write_public_key
from relayd.testing.keys import TestNetwork, make_network
from tests.cli.cli_support import Relayd, assert_clean_error


@pytest.fixture
def net(tmp_path: Path) -> TestNetwork:
    return make_network(tmp_path / "keys")


def _verdict(stdout: str) -> dict[str, object]:
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    doc: dict[str, object] = json.loads(lines[0])
    return doc


def test_compose_prints_the_exact_onair_text_and_verify_accepts_it(relayd: Relayd, net: TestNetwork) -> None:
    text = "Police at 5th & Main → observers needed"
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
        "30m",
        "--area",
        "9q8yyk",
        text,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("\n")
    onair = result.stdout[:-1]
    frame = decode(onair)
    assert onair.startswith("\x07" + text + "\n")
    assert frame.fields.kind is Kind.ALERT
    assert frame.fields.severity is Severity.URGENT
    assert frame.fields.area == "9q8yyk"
    assert frame.fields.seq == 1  # first number from dispatcher.seq
    assert frame.fields.expires_at_s - frame.fields.issued_at_s == 1800
    assert f"alert id {frame.alert_id.hex()}, seq 1, {len(onair.encode())} bytes on air" in result.stderr

    verified = relayd(
        "alert", "verify", "--trust", net.bundle_path, "--root", net.pub_path("root"), stdin=result.stdout
    )
    assert verified.returncode == 0, verified.stderr
    verdict = _verdict(verified.stdout)
    assert verdict["ok"] is True
    assert verdict["reason"] is None
    alert = verdict["alert"]
    assert isinstance(alert, dict)
    assert alert["id"] == frame.alert_id.hex()
    assert alert["text"] == text
    assert alert["onair"] == onair
    assert verdict["signer"] == {"name": "dispatcher", "role": "dispatcher"}


def test_compose_json_prints_the_json_form(relayd: Relayd, net: TestNetwork) -> None:
    ref = "e70f58add945c0e0"
    result = relayd(
        "alert",
        "compose",
        "--key",
        net.key_path("verifier"),
        "--kind",
        "update",
        "--severity",
        "warning",
        "--ref",
        ref,
        "--seq",
        "41",
        "--json",
        "Moved to the park",
    )
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    frame = decode(doc["onair"])
    assert doc["id"] == frame.alert_id.hex()
    assert doc["kind"] == "update"
    assert doc["ref"] == ref
    assert doc["seq"] == 41
    assert doc["text"] == "Moved to the park"
    assert doc["signer"] == {"name": "verifier", "role": "verifier"}
    assert not net.key_path("verifier").with_suffix(".seq").exists()  # --seq reserves nothing


def test_compose_takes_the_next_sequence_number_from_the_seq_file(relayd: Relayd, net: TestNetwork) -> None:
    net.key_path("dispatcher").with_suffix(".seq").write_text("41\n")
    result = relayd(
        "alert",
        "compose",
        "--key",
        net.key_path("dispatcher"),
        "--kind",
        "test",
        "--severity",
        "info",
        "drill",
    )
    assert result.returncode == 0, result.stderr
    assert decode(result.stdout[:-1]).fields.seq == 42
    assert result.stdout.startswith("TEST: drill\n")
    assert net.key_path("dispatcher").with_suffix(".seq").read_text().strip() == "42"


def test_compose_refuses_oversize_text_saying_how_many_bytes_to_cut(relayd: Relayd, net: TestNetwork) -> None:
    budget = text_budget_bytes(Kind.ALERT, Severity.URGENT)
    result = relayd(
        "alert",
        "compose",
        "--key",
        net.key_path("dispatcher"),
        "--kind",
        "alert",
        "--severity",
        "urgent",
        "x" * (budget + 17),
    )
    assert_clean_error(result, f"only {budget} fit in one LoRa frame", "cut 17 bytes")
    assert result.stdout == ""
    assert not net.key_path("dispatcher").with_suffix(".seq").exists()  # no number burnt


def test_compose_cancel_without_ref_says_to_pass_ref(relayd: Relayd, net: TestNetwork) -> None:
    result = relayd(
        "alert",
        "compose",
        "--key",
        net.key_path("dispatcher"),
        "--kind",
        "cancel",
        "--severity",
        "info",
        "wrong alert",
    )
    assert_clean_error(result, "a cancel must reference an earlier alert: pass --ref ALERT_ID")


def test_compose_with_an_out_of_range_sequence_is_a_clean_error(relayd: Relayd, net: TestNetwork) -> None:
    result = relayd(
        "alert",
        "compose",
        "--key",
        net.key_path("dispatcher"),
        "--kind",
        "alert",
        "--severity",
        "info",
        "--seq",
        str(2**24),
        "x",
    )
    assert_clean_error(result, "sequence 16777216 is out of range 0..16777215")


def test_compose_refuses_a_0644_key_with_chmod_advice(relayd: Relayd, net: TestNetwork) -> None:
    key = net.key_path("dispatcher")
    key.chmod(0o644)
    result = relayd("alert", "compose", "--key", key, "--kind", "alert", "--severity", "info", "x")
    assert_clean_error(result, "has permissions 0644", f"chmod 600 {key}")
    assert result.stdout == ""


def test_compose_with_a_missing_key_says_how_to_create_one(relayd: Relayd) -> None:
    result = relayd("alert", "compose", "--key", "nobody.key", "--kind", "alert", "--severity", "info", "x")
    assert_clean_error(result, "nobody.key does not exist", "relayd keys new")


def test_verify_a_revoked_key_reports_revoked(relayd: Relayd, net: TestNetwork) -> None:
    onair = net.sign("dispatcher2", "signed before the key was seized").onair
    net.resign(net.bundle.with_revoked(net.identities["dispatcher2"].key_id))
    result = relayd(
        "alert", "verify", "--trust", net.bundle_path, "--root", net.pub_path("root"), stdin=onair
    )
    assert result.returncode == 1, result.stderr
    verdict = _verdict(result.stdout)
    assert verdict["ok"] is False
    assert verdict["reason"] == "revoked"


def test_verify_with_now_after_expiry_reports_expired(relayd: Relayd, net: TestNetwork) -> None:
    onair = net.sign("dispatcher", "short-lived", now_s=1_795_266_848, lifetime_s=600).onair
    result = relayd(
        "alert",
        "verify",
        "--trust",
        net.bundle_path,
        "--root",
        net.pub_path("root"),
        "--now",
        "2026-11-21T13:24:08Z",
        stdin=onair + "\n",
    )
    assert result.returncode == 1, result.stderr
    assert _verdict(result.stdout)["reason"] == "expired"


def test_verify_against_a_bundle_from_another_root_is_refused(
    relayd: Relayd, net: TestNetwork, tmp_path: Path
) -> None:
    other = Identity.generate("other-root", Role.ROOT)
    write_public_key(other.public, tmp_path / "other-root.pub")
    onair = net.sign("dispatcher", "x").onair
    result = relayd(
        "alert", "verify", "--trust", net.bundle_path, "--root", tmp_path / "other-root.pub", stdin=onair
    )
    assert result.returncode == 2
    assert_clean_error(
        result, f"not by this network's root {other.key_id.hex()}", "get the bundle from your network admin"
    )
    assert result.stdout == ""


def test_verify_with_a_missing_bundle_is_a_usage_error(relayd: Relayd, net: TestNetwork) -> None:
    result = relayd("alert", "verify", "--trust", "missing.json", "--root", net.pub_path("root"), stdin="x")
    assert result.returncode == 2
    assert_clean_error(result, "trust bundle missing.json does not exist", "relayd trust init")


def test_verify_a_tampered_text_reports_bad_signature(relayd: Relayd, net: TestNetwork) -> None:
    onair = net.sign("dispatcher", "Meet at 5th & Main").onair.replace("5th", "6th")
    result = relayd(
        "alert", "verify", "--trust", net.bundle_path, "--root", net.pub_path("root"), stdin=onair
    )
    assert result.returncode == 1
    verdict = _verdict(result.stdout)
    assert verdict["reason"] == "bad_signature"
    assert verdict["detail"] == "signature does not match key dispatcher"


def test_verify_plain_text_and_junk_report_malformed(relayd: Relayd, net: TestNetwork) -> None:
    result = relayd(
        "alert",
        "verify",
        "--trust",
        net.bundle_path,
        "--root",
        net.pub_path("root"),
        stdin="hello from a handheld\n",
    )
    assert result.returncode == 1
    verdict = _verdict(result.stdout)
    assert verdict["reason"] == "malformed"
    assert verdict["alert"] is None


def test_verify_with_a_bad_now_is_a_usage_error(relayd: Relayd, net: TestNetwork) -> None:
    result = relayd(
        "alert",
        "verify",
        "--trust",
        net.bundle_path,
        "--root",
        net.pub_path("root"),
        "--now",
        "yesterday",
        stdin="x",
    )
    assert result.returncode == 2
    assert_clean_error(result, "--now 'yesterday' is not an ISO 8601 time such as 2026-11-21T13:00:00Z")


def test_reporter_key_cannot_get_an_alert_accepted(relayd: Relayd, net: TestNetwork, tmp_path: Path) -> None:
    composed = relayd(
        "alert",
        "compose",
        "--key",
        net.key_path("reporter"),
        "--kind",
        "alert",
        "--severity",
        "urgent",
        "Raid!",
    )
    assert composed.returncode == 0, composed.stderr  # compose signs; relays decide
    result = relayd(
        "alert", "verify", "--trust", net.bundle_path, "--root", net.pub_path("root"), stdin=composed.stdout
    )
    assert result.returncode == 1
    assert _verdict(result.stdout)["reason"] == "role_not_allowed"


def test_verify_without_a_root_is_refused_even_for_a_self_consistent_bundle(
    relayd: Relayd, net: TestNetwork, tmp_path: Path
) -> None:
    """A bundle signed by whatever root it names proves nothing: an attacker's own root and
    bundle make their own alert "verify". Without --root (or --config) verify refuses."""
    attacker = make_network(tmp_path / "attacker")
    onair = attacker.sign("dispatcher", "Raid at the park, everyone go").onair
    result = relayd("alert", "verify", "--trust", attacker.bundle_path, stdin=onair)
    assert result.returncode == 2
    assert_clean_error(result, "needs the network's root key", "--root ROOT.pub", "--config")
    assert result.stdout == ""
    pinned = relayd(
        "alert", "verify", "--trust", attacker.bundle_path, "--root", net.pub_path("root"), stdin=onair
    )
    assert pinned.returncode == 2
    assert_clean_error(pinned, "not by this network's root")


def test_verify_takes_root_and_bundle_from_a_relay_config(
    relayd: Relayd, net: TestNetwork, tmp_path: Path
) -> None:
    from relayd.testing.harness import write_relay_config  # noqa: PLC0415

    config = write_relay_config(tmp_path / "relay", "relay-north", net, radio_port=9, broker_port=9)
    onair = net.sign("dispatcher", "Observers needed at 5th & Main").onair
    result = relayd("alert", "verify", "--config", config, stdin=onair)
    assert result.returncode == 0, result.stderr
    assert _verdict(result.stdout)["ok"] is True


def test_compose_with_a_sealed_dispatcher_key(relayd: Relayd, net: TestNetwork, tmp_path: Path) -> None:
    from relayd.keystore import write_private_key  # noqa: PLC0415

    sealed = tmp_path / "sealed-dispatcher.key"
    write_private_key(net.identities["dispatcher"], sealed, b"console passphrase")
    args = ("alert", "compose", "--key", sealed, "--kind", "alert", "--severity", "urgent", "Raid at Elm")
    refused = relayd(*args)  # no terminal to ask on, no env, no file
    assert_clean_error(refused, "is protected by a passphrase", "--passphrase-file", "RELAYD_KEY_PASSPHRASE")
    secret = tmp_path / "pass.txt"
    secret.write_text("console passphrase\n")
    composed = relayd(*args[:4], "--passphrase-file", secret, *args[4:])
    assert composed.returncode == 0, composed.stderr
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not it")
    bad = relayd(*args[:4], "--passphrase-file", wrong, *args[4:])
    assert_clean_error(bad, "wrong passphrase for")
    result = relayd(
        "alert", "verify", "--trust", net.bundle_path, "--root", net.pub_path("root"), stdin=composed.stdout
    )
    assert result.returncode == 0, result.stdout
