"""Key files on disk: private keys 0600 and refused when looser; public keys shareable."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from relayd.core.model import Role
from relayd.errors import KeyFileError
from relayd.keystore import (
    check_private_permissions,
    load_private_key,
    load_public_key,
    next_sequence,
    write_private_key,
    write_public_key,
)
from tests.core.protocol_support import seeded_identity

DISPATCHER = seeded_identity("dispatcher", Role.DISPATCHER)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_key_is_written_0600_and_loads_back(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.key"
    write_private_key(DISPATCHER, path)
    assert _mode(path) == 0o600
    loaded = load_private_key(path)
    assert loaded.seed == DISPATCHER.seed
    assert loaded.role is Role.DISPATCHER
    assert loaded.name == "dispatcher"


def test_private_key_is_0600_even_under_a_permissive_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        write_private_key(DISPATCHER, tmp_path / "d.key")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "d.key") == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o666])
def test_loading_a_group_or_world_readable_key_is_refused_with_the_fix(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "dispatcher.key"
    write_private_key(DISPATCHER, path)
    path.chmod(mode)
    with pytest.raises(KeyFileError) as info:
        load_private_key(path)
    message = str(info.value)
    assert f"permissions {mode:04o}" in message
    assert f"chmod 600 {path}" in message
    path.chmod(0o600)
    assert load_private_key(path).seed == DISPATCHER.seed


def test_an_existing_key_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.key"
    write_private_key(DISPATCHER, path)
    before = path.read_bytes()
    with pytest.raises(KeyFileError, match="already exists"):
        write_private_key(seeded_identity("other", Role.DISPATCHER), path)
    assert path.read_bytes() == before


def test_public_key_round_trips_and_is_shareable(tmp_path: Path) -> None:
    path = tmp_path / "dispatcher.pub"
    write_public_key(DISPATCHER.public, path)
    assert load_public_key(path) == DISPATCHER.public
    assert "seed" not in json.loads(path.read_text())


def test_missing_key_file_names_the_path_and_the_fix(tmp_path: Path) -> None:
    for load in (load_private_key, load_public_key):
        with pytest.raises(
            KeyFileError, match="does not exist; check the path or create it with `relayd keys new`"
        ):
            load(tmp_path / "nope.key")


def test_a_public_key_is_not_accepted_for_signing_and_vice_versa(tmp_path: Path) -> None:
    write_private_key(DISPATCHER, tmp_path / "d.key")
    write_public_key(DISPATCHER.public, tmp_path / "d.pub")
    (tmp_path / "d.pub").chmod(0o600)
    with pytest.raises(KeyFileError, match=r"is a public key; signing needs the private NAME\.key file"):
        load_private_key(tmp_path / "d.pub")
    with pytest.raises(KeyFileError, match=r"is a private key; pass the matching \.pub file instead"):
        load_public_key(tmp_path / "d.key")


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"not json", "not JSON"),
        (b"[1]", "is not a relayd key file"),
        (b'{"format": "relayd-key/1", "role": "dispatcher", "seed": "00"}', "must be 32 bytes of hex"),
        (b'{"format": "relayd-key/1", "role": "boss", "seed": "00"}', "unknown role"),
    ],
)
def test_damaged_key_files_are_refused_with_a_reason(tmp_path: Path, content: bytes, phrase: str) -> None:
    path = tmp_path / "bad.key"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match=phrase):
        load_private_key(path)


def test_a_key_id_that_does_not_match_the_seed_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.key"
    write_private_key(DISPATCHER, path)
    doc = json.loads(path.read_text())
    doc["key_id"] = "00000000"
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyFileError, match="key_id does not match the key; the file is damaged"):
        load_private_key(path)


def test_permission_check_reports_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="does not exist"):
        check_private_permissions(tmp_path / "missing.key")


def test_sequence_numbers_increase_and_persist_beside_the_key(tmp_path: Path) -> None:
    key = tmp_path / "d.key"
    write_private_key(DISPATCHER, key)
    assert [next_sequence(key) for _ in range(3)] == [1, 2, 3]
    assert (tmp_path / "d.seq").read_text().strip() == "3"
    assert _mode(tmp_path / "d.seq") == 0o600
    assert next_sequence(key) == 4
