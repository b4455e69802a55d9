"""`relayd keys new`: the key files an operator gets."""

from __future__ import annotations

import re
import stat
from pathlib import Path

from relayd.core.model import Role
from relayd.keystore import load_private_key, load_public_key
from tests.cli.cli_support import Relayd, assert_clean_error


def test_keys_new_writes_a_0600_key_and_a_pub_and_prints_the_key_id(relayd: Relayd, tmp_path: Path) -> None:
    result = relayd("keys", "new", "--name", "disp-a", "--role", "dispatcher", "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    key_id = result.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{8}", key_id)
    key, pub = tmp_path / "disp-a.key", tmp_path / "disp-a.pub"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    identity = load_private_key(key)
    assert identity.key_id.hex() == key_id
    assert identity.role is Role.DISPATCHER
    assert load_public_key(pub) == identity.public
    assert identity.seed.hex() not in result.stdout + result.stderr + pub.read_text()
    assert "mode 0600" in result.stderr

    again = relayd("keys", "new", "--name", "disp-a", "--role", "dispatcher", "--out", tmp_path)
    assert_clean_error(again, "disp-a.key already exists", "choose another --name or --out")
    assert load_private_key(key).seed == identity.seed


def test_keys_new_into_a_missing_directory_says_to_create_it(relayd: Relayd, tmp_path: Path) -> None:
    result = relayd("keys", "new", "--name", "x", "--role", "relay", "--out", tmp_path / "nope")
    assert_clean_error(result, "does not exist", "mkdir -p")


def test_keys_new_refuses_a_name_that_is_not_a_safe_file_name(relayd: Relayd, tmp_path: Path) -> None:
    result = relayd("keys", "new", "--name", "../evil", "--role", "relay", "--out", tmp_path)
    assert_clean_error(result, "key name '../evil' must start with a letter or digit")
    assert not list(tmp_path.parent.glob("evil*"))


def test_keys_new_lists_the_roles_on_a_typo(relayd: Relayd, tmp_path: Path) -> None:
    result = relayd("keys", "new", "--name", "x", "--role", "admin", "--out", tmp_path)
    assert result.returncode == 2
    assert "invalid choice: 'admin'" in result.stderr
    assert "dispatcher" in result.stderr


def test_keys_new_seals_a_dispatcher_key_with_a_passphrase_file(relayd: Relayd, tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("four words, long enough\n")
    result = relayd(
        "keys",
        "new",
        "--name",
        "disp-s",
        "--role",
        "dispatcher",
        "--out",
        tmp_path,
        "--passphrase-file",
        secret,
    )
    assert result.returncode == 0, result.stderr
    key = tmp_path / "disp-s.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert '"sealed"' in key.read_text()
    assert '"seed"' not in key.read_text()
    identity = load_private_key(key, lambda _p: b"four words, long enough")
    assert identity.key_id.hex() == result.stdout.strip()


def test_keys_new_refuses_a_passphrase_on_a_relay_key(relayd: Relayd, tmp_path: Path) -> None:
    secret = tmp_path / "pass.txt"
    secret.write_text("pw")
    result = relayd(
        "keys", "new", "--name", "relay-x", "--role", "relay", "--out", tmp_path, "--passphrase-file", secret
    )
    assert_clean_error(result, "a relay key cannot have a passphrase", "protect the Pi")
    assert not (tmp_path / "relay-x.key").exists()
