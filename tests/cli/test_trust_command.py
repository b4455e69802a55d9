"""`relayd trust init|add|revoke|show`: the admin's workflow and its error messages."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path

import pytest

from relayd.core.identity import Identity
from relayd.core.model import Role
from relayd.core.trust import new_bundle, parse_signed_bundle, sign_bundle
from relayd.keystore import write_private_key, write_public_key
from relayd.trustfile import save_bundle
from tests.cli.cli_support import Relayd, assert_clean_error


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Identity]:
    """Keys written in-process (fast); the commands under test run as subprocesses."""
    members = {
        "root": Role.ROOT,
        "other-root": Role.ROOT,
        "disp": Role.DISPATCHER,
        "rep": Role.REPORTER,
    }
    out: dict[str, Identity] = {}
    for name, role in members.items():
        identity = Identity.generate(name, role)
        write_private_key(identity, tmp_path / f"{name}.key")
        write_public_key(identity.public, tmp_path / f"{name}.pub")
        out[name] = identity
    return out


def _existing_bundle(tmp_path: Path, root: Identity) -> Path:
    path = tmp_path / "trust.json"
    save_bundle(sign_bundle(new_bundle(root.public_key, 1_795_266_848, 86400 * 365), root.sign), path)
    return path


def test_init_add_revoke_and_show(relayd: Relayd, tmp_path: Path, keys: dict[str, Identity]) -> None:
    bundle = tmp_path / "trust.json"
    result = relayd("trust", "init", "--root-key", "root.key", "--out", bundle)
    assert result.returncode == 0, result.stderr
    assert "version 1" in result.stdout
    assert keys["root"].key_id.hex() in result.stdout

    result = relayd(
        "trust",
        "add",
        "--bundle",
        bundle,
        "--root-key",
        "root.key",
        "--pub",
        "disp.pub",
        "--role",
        "dispatcher",
        "--name",
        "Dispatch A",
        "--expires",
        "90d",
    )
    assert result.returncode == 0, result.stderr
    assert f"version 2; added Dispatch A ({keys['disp'].key_id.hex()}) as dispatcher" in result.stdout

    result = relayd(
        "trust",
        "add",
        "--bundle",
        bundle,
        "--root-key",
        "root.key",
        "--pub",
        "rep.pub",
        "--role",
        "reporter",
        "--expires",
        "2031-01-01T00:00:00Z",
    )
    assert result.returncode == 0, result.stderr

    result = relayd(
        "trust", "revoke", "--bundle", bundle, "--root-key", "root.key", "--key-id", keys["rep"].key_id.hex()
    )
    assert result.returncode == 0, result.stderr
    assert f"version 4; revoked rep ({keys['rep'].key_id.hex()})" in result.stdout

    parsed = parse_signed_bundle(bundle.read_bytes(), pinned_root=keys["root"].public_key).bundle
    assert parsed.version == 4
    disp = parsed.key(keys["disp"].key_id)
    rep = parsed.key(keys["rep"].key_id)
    assert disp is not None
    assert rep is not None
    assert (disp.name, disp.role) == ("Dispatch A", Role.DISPATCHER)
    assert disp.expires_at_s is not None
    assert 89 * 86400 < disp.expires_at_s - parsed.issued_at_s < 91 * 86400
    assert rep.expires_at_s == int(dt.datetime(2031, 1, 1, tzinfo=dt.UTC).timestamp())
    assert parsed.is_revoked(keys["rep"].key_id)

    result = relayd("trust", "show", bundle)
    assert result.returncode == 0, result.stderr
    assert "version   4" in result.stdout
    assert f"root      {keys['root'].key_id.hex()}" in result.stdout
    assert "Dispatch A" in result.stdout
    rep_line = next(line for line in result.stdout.splitlines() if keys["rep"].key_id.hex() in line)
    assert "REVOKED" in rep_line
    assert "2031-01-01T00:00:00Z" in rep_line


def test_show_json_is_machine_readable(relayd: Relayd, tmp_path: Path, keys: dict[str, Identity]) -> None:
    bundle = _existing_bundle(tmp_path, keys["root"])
    result = relayd("trust", "show", "--json", bundle)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["version"] == 1
    assert summary["root_key_id"] == keys["root"].key_id.hex()
    assert summary["keys"] == []


def test_add_with_another_root_key_is_refused(
    relayd: Relayd, tmp_path: Path, keys: dict[str, Identity]
) -> None:
    bundle = _existing_bundle(tmp_path, keys["root"])
    before = bundle.read_bytes()
    result = relayd(
        "trust",
        "add",
        "--bundle",
        bundle,
        "--root-key",
        "other-root.key",
        "--pub",
        "disp.pub",
        "--role",
        "dispatcher",
    )
    assert_clean_error(
        result,
        f"is signed by root {keys['root'].key_id.hex()}, but --root-key is {keys['other-root'].key_id.hex()}",
        "use the root key that created this bundle",
    )
    assert bundle.read_bytes() == before


def test_init_with_a_non_root_key_is_refused(
    relayd: Relayd, tmp_path: Path, keys: dict[str, Identity]
) -> None:
    result = relayd("trust", "init", "--root-key", "disp.key", "--out", tmp_path / "trust.json")
    assert_clean_error(result, "disp.key is a dispatcher key; trust bundles are signed with the root key")
    assert not (tmp_path / "trust.json").exists()


def test_a_world_readable_root_key_is_refused_with_chmod_advice(
    relayd: Relayd, tmp_path: Path, keys: dict[str, Identity]
) -> None:
    (tmp_path / "root.key").chmod(0o644)
    result = relayd("trust", "init", "--root-key", "root.key", "--out", "trust.json")
    assert_clean_error(result, "has permissions 0644", "readable by its owner only", "chmod 600 root.key")


def test_adding_the_root_key_itself_is_refused(
    relayd: Relayd, tmp_path: Path, keys: dict[str, Identity]
) -> None:
    bundle = _existing_bundle(tmp_path, keys["root"])
    result = relayd(
        "trust",
        "add",
        "--bundle",
        bundle,
        "--root-key",
        "root.key",
        "--pub",
        "root.pub",
        "--role",
        "dispatcher",
    )
    assert_clean_error(result, "the root key signs bundles only")


def test_show_a_missing_bundle_says_how_to_get_one(relayd: Relayd) -> None:
    result = relayd("trust", "show", "nope.json")
    assert_clean_error(
        result, "trust bundle nope.json does not exist", "relayd trust init", "copy it from your admin"
    )


def test_show_an_altered_bundle_says_it_was_altered(
    relayd: Relayd, tmp_path: Path, keys: dict[str, Identity]
) -> None:
    bundle = _existing_bundle(tmp_path, keys["root"])
    bundle.write_text(bundle.read_text().replace('\\"version\\":1', '\\"version\\":9'))
    result = relayd("trust", "show", bundle)
    assert_clean_error(result, "does not verify against its root key: it was altered")


def test_revoke_with_a_malformed_key_id_says_what_a_key_id_looks_like(
    relayd: Relayd, tmp_path: Path, keys: dict[str, Identity]
) -> None:
    bundle = _existing_bundle(tmp_path, keys["root"])
    result = relayd("trust", "revoke", "--bundle", bundle, "--root-key", "root.key", "--key-id", "xyz")
    assert_clean_error(result, "--key-id 'xyz' must be 8 hex digits")


def _add(relayd: Relayd, bundle: Path, pub: str, role: str) -> subprocess.CompletedProcess[str]:
    return relayd("trust", "add", "--bundle", bundle, "--root-key", "root.key", "--pub", pub, "--role", role)


def test_re_adding_a_listed_key_says_replacing(
    relayd: Relayd, tmp_path: Path, keys: dict[str, Identity]
) -> None:
    bundle = _existing_bundle(tmp_path, keys["root"])
    first = _add(relayd, bundle, "disp.pub", "dispatcher")
    assert first.returncode == 0, first.stderr
    assert "added disp" in first.stdout
    again = _add(relayd, bundle, "disp.pub", "verifier")
    assert again.returncode == 0, again.stderr
    assert f"replacing {keys['disp'].key_id.hex()} (disp, dispatcher) with disp as verifier" in again.stdout
    parsed = parse_signed_bundle(bundle.read_bytes(), pinned_root=keys["root"].public_key).bundle
    listed = parsed.key(keys["disp"].key_id)
    assert listed is not None
    assert listed.role is Role.VERIFIER
    assert len(parsed.keys) == 1


def test_a_different_key_with_a_listed_key_id_is_refused_and_the_bundle_unchanged(
    tmp_path: Path,
    keys: dict[str, Identity],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A found 4-byte key id collision (simulated: finding one takes about 29 core-hours)
    used to replace the listed dispatcher silently, handing its authority to the attacker."""
    from relayd.cli import main  # noqa: PLC0415 - in-process, so the collision can be simulated
    from relayd.core import identity as identity_mod  # noqa: PLC0415
    from relayd.core import trust as trust_mod  # noqa: PLC0415

    real = identity_mod.key_id_of
    victim, attacker = keys["disp"].public_key, keys["rep"].public_key

    def colliding(public_key: bytes) -> bytes:
        return real(victim) if public_key == attacker else real(public_key)

    monkeypatch.setattr(identity_mod, "key_id_of", colliding)
    monkeypatch.setattr(trust_mod, "key_id_of", colliding)
    monkeypatch.chdir(tmp_path)
    write_public_key(keys["rep"].public, tmp_path / "rep.pub")  # its key_id field, as generated
    bundle = _existing_bundle(tmp_path, keys["root"])
    assert (
        main(
            [
                "trust",
                "add",
                "--bundle",
                str(bundle),
                "--root-key",
                "root.key",
                "--pub",
                "disp.pub",
                "--role",
                "dispatcher",
            ]
        )
        == 0
    )
    before = bundle.read_bytes()
    capsys.readouterr()
    code = main(
        [
            "trust",
            "add",
            "--bundle",
            str(bundle),
            "--root-key",
            "root.key",
            "--pub",
            "rep.pub",
            "--role",
            "dispatcher",
        ]
    )
    err = capsys.readouterr().err
    assert code != 0
    assert "rep.pub" in err
    assert f"key id {real(victim).hex()} is already listed in {bundle}" in err
    assert "'disp' (dispatcher)" in err
    assert "relayd keys new" in err
    assert bundle.read_bytes() == before
