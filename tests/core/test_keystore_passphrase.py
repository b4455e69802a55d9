"""Passphrase-sealed key files (issue 13, finding 9): argon2id + SecretBox, 0600, refused
for keys that must start unattended."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from relayd.core.model import Role
from relayd.errors import KeyFileError
from relayd.keystore import (
    PASSPHRASE_ENV,
    PassphraseSource,
    is_sealed,
    load_private_key,
    passphrase_source,
    write_private_key,
)
from tests.core.protocol_support import seeded_identity

DISPATCHER = seeded_identity("dispatcher", Role.DISPATCHER)
RELAY = seeded_identity("relay", Role.RELAY)


def _given(secret: bytes) -> PassphraseSource:
    return lambda _path: secret


def test_a_sealed_key_is_0600_holds_no_seed_and_loads_with_its_passphrase(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.key"
    write_private_key(DISPATCHER, path, b"correct horse battery staple")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    raw = path.read_bytes()
    assert DISPATCHER.seed.hex().encode() not in raw
    assert DISPATCHER.seed not in raw
    doc = json.loads(raw)
    assert "seed" not in doc
    assert doc["sealed"]["kdf"] == "argon2id"
    assert is_sealed(path)
    loaded = load_private_key(path, _given(b"correct horse battery staple"))
    assert loaded.seed == DISPATCHER.seed
    assert loaded.role is Role.DISPATCHER


def test_a_wrong_passphrase_is_refused_clearly(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.key"
    write_private_key(DISPATCHER, path, b"right")
    with pytest.raises(KeyFileError, match="wrong passphrase for"):
        load_private_key(path, _given(b"wrong"))


def test_without_a_terminal_or_env_the_error_says_how_to_give_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "dispatcher.key"
    write_private_key(DISPATCHER, path, b"right")
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    with pytest.raises(KeyFileError, match=f"--passphrase-file FILE or {PASSPHRASE_ENV}"):
        load_private_key(path, passphrase_source(prompt=False))
    monkeypatch.setenv(PASSPHRASE_ENV, "right")
    assert load_private_key(path).seed == DISPATCHER.seed  # the default source reads the env
    secret = tmp_path / "pass.txt"
    secret.write_text("right\n")
    monkeypatch.setenv(PASSPHRASE_ENV, "not this one")
    assert load_private_key(path, passphrase_source(secret)).seed == DISPATCHER.seed


def test_a_relay_key_cannot_be_sealed_and_a_sealed_key_is_refused_unattended(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="a relay key cannot have a passphrase"):
        write_private_key(RELAY, tmp_path / "relay.key", b"pw")
    assert not (tmp_path / "relay.key").exists()
    path = tmp_path / "dispatcher.key"
    write_private_key(DISPATCHER, path, b"pw")
    with pytest.raises(KeyFileError, match="must start unattended"):
        load_private_key(path, _given(b"pw"), unattended=True)


def test_a_plain_key_still_loads_without_asking(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.key"
    write_private_key(DISPATCHER, path)

    def never(_path: Path) -> bytes:
        raise AssertionError("asked for a passphrase of a plain key")

    assert not is_sealed(path)
    assert load_private_key(path, never).seed == DISPATCHER.seed
    assert load_private_key(path, unattended=True).seed == DISPATCHER.seed


def test_a_damaged_sealed_key_is_refused_not_crashed(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.key"
    write_private_key(DISPATCHER, path, b"pw")
    doc = json.loads(path.read_text())
    doc["sealed"]["memlimit"] = 2**40  # would ask for a terabyte
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="damaged"):
        load_private_key(path, _given(b"pw"))
