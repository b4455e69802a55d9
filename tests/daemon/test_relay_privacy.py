"""A seized relay says little (issue 13, finding 9): no handheld node ids or alert text in
INFO logs, purged text gone from the raw database and WAL files, only peer relays' radios
kept in the neighbours record, and no passphrase-sealed key on a relay."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from relayd.core.identity import Identity
from relayd.core.model import Role, Severity
from relayd.daemon.config import load_config
from relayd.daemon.radio import ReceivedText
from relayd.daemon.relay import Relay
from relayd.daemon.storage import Storage
from relayd.errors import KeyFileError
from relayd.keystore import write_private_key
from relayd.testing.harness import write_relay_config
from relayd.testing.keys import TestNetwork

HANDHELD = 0xA1B2C3D4
PEER_RADIO = 0x0BADCAFE


@pytest.fixture
def config_path(tmp_path: Path, network: TestNetwork) -> Path:
    return write_relay_config(tmp_path / "relay", "relay-north", network, radio_port=9, broker_port=9)


def _rx(payload: str, from_node: int = HANDHELD, packet_id: int = 77) -> ReceivedText:
    return ReceivedText("main", from_node, 0xFFFFFFFF, packet_id, 0, payload.encode(), time.time(), 3, 3)


def test_no_handheld_node_id_or_alert_text_is_logged_at_info(
    config_path: Path, network: TestNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    relay = Relay.load(load_config(config_path))
    report_text = "Three vans at the Lot C gate"
    alert_text = "Police stop at 5th & Main, observers needed"
    relay._on_radio_text(_rx(f"!r {report_text}"))  # a handheld's report
    relay._release_holds(time.time() + 3600)
    alert = network.sign("dispatcher", alert_text, severity=Severity.URGENT)
    verdict = relay._verify(alert.onair, "mqtt")
    relay._accept(verdict, "mqtt", queue=True)
    forged = alert.onair.replace("5th", "6th")
    relay._on_radio_text(_rx(forged, packet_id=78))  # a forgery heard on RF
    relay.storage.close()

    assert relay.counters.reports == 1
    secrets = ("a1b2c3d4", str(HANDHELD), report_text, alert_text, "6th & Main")
    info = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert info, "nothing logged at INFO: the test would prove nothing"
    for line in info:
        for secret in secrets:
            assert secret.lower() not in line.lower(), line
    # DEBUG may say more (an operator debugging on purpose).
    debug = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "a1b2c3d4" in debug


def test_purged_text_is_gone_from_the_raw_database_and_wal(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    storage = Storage(db)
    secret = "Safe house at 12 Pine St, knock twice"
    now = 1_795_266_848.0
    storage.record_accepted(
        alert_id=b"\x01" * 8,
        key_id=b"\x02" * 4,
        window=None,
        kind="alert",
        severity="urgent",
        via="mqtt",
        now_s=now,
        expires_at_s=int(now) + 1800,
        onair=secret,
        queue=None,
        active=False,
        newest_issued_s=None,
        publishes=[("relayd/alerts", json.dumps({"onair": secret}).encode(), False)],
    )
    for item in storage.pending():
        storage.remove_pending(item.row_id)
    storage.purge(now + 7 * 86400, retention_s=3600, dedup_horizon_s=3600)
    assert storage.history_count() == 0
    # As after a power cut: the files as they are on disk, the connection still open.
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            assert secret.encode() not in path.read_bytes(), path
    storage.close()


def test_only_peer_relay_radios_are_kept_in_the_neighbours_record(config_path: Path) -> None:
    relay = Relay.load(load_config(config_path))
    relay.neighbours.peer_nodes["relay-south"] = PEER_RADIO
    for i in range(20):  # handhelds chatting on the alerts channel
        relay._on_radio_text(_rx("hello", from_node=HANDHELD + i, packet_id=100 + i))
    relay._on_radio_text(_rx("hello", from_node=PEER_RADIO, packet_id=200))
    raw = relay.storage.get_meta("neighbours")
    relay.storage.close()
    assert raw is not None
    doc = json.loads(raw)
    assert doc["heard"] == [PEER_RADIO]
    assert doc["peers"] == {"relay-south": PEER_RADIO}


def test_handhelds_kept_by_an_older_relay_are_forgotten_on_start(config_path: Path) -> None:
    relay = Relay.load(load_config(config_path))
    old = {"peers": {"relay-south": PEER_RADIO}, "heard": [HANDHELD, HANDHELD + 1, PEER_RADIO]}
    relay.storage.set_meta("neighbours", json.dumps(old))
    relay.storage.close()
    again = Relay.load(load_config(config_path))
    raw = again.storage.get_meta("neighbours")
    again.storage.close()
    assert again.neighbours.heard_nodes == {PEER_RADIO}
    assert raw is not None
    assert json.loads(raw)["heard"] == [PEER_RADIO]


def test_a_relay_refuses_a_passphrase_sealed_key_with_a_clear_message(
    config_path: Path, network: TestNetwork
) -> None:
    # A sealed key file with the relay role (written sealed as a dispatcher, role edited).
    key_path = network.key_path("relay-north")
    identity = network.identities["relay-north"]
    key_path.unlink()
    write_private_key(Identity(identity.name, Role.DISPATCHER, identity.seed), key_path, b"pw")
    doc = json.loads(key_path.read_text())
    doc["role"] = "relay"
    key_path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="must start unattended"):
        Relay.load(load_config(config_path))
