"""Key files on disk: private keys are 0600 JSON, public keys are shareable JSON.

NAME.key  {"format": "relayd-key/1", "name", "role", "key_id", "seed": hex}
          or, with a passphrase, "sealed" instead of "seed":
          {"kdf": "argon2id", "opslimit", "memlimit", "salt": hex, "box": hex}
          (the seed in a PyNaCl SecretBox under a key derived from the passphrase)
NAME.pub  {"format": "relayd-pub/1", "name", "role", "key_id", "public_key": hex}
NAME.seq  the last sequence number this key signed (so a restart never reuses one)
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import json
import os
import stat
import sys
from collections.abc import Callable
from pathlib import Path

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from relayd.core.identity import PUBLIC_KEY_BYTES, SEED_BYTES, Identity, PublicIdentity
from relayd.core.model import Role
from relayd.errors import KeyFileError

PRIVATE_FORMAT = "relayd-key/1"
PUBLIC_FORMAT = "relayd-pub/1"
PRIVATE_MODE = 0o600
PASSPHRASE_ENV = "RELAYD_KEY_PASSPHRASE"  # noqa: S105 - the name of the variable, not a secret
# argon2id "interactive" limits: about 64 MiB and well under a second on a Pi 4, paid once
# when a console or `alert compose` opens the key. Stored in the file, so they can grow.
KDF_OPSLIMIT = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
KDF_MEMLIMIT = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
_KDF_MAX_MEMLIMIT = 1024 * 1024 * 1024  # a damaged or hostile file must not ask for more

# Asked for the passphrase of a sealed key file (given its path); raises KeyFileError.
PassphraseSource = Callable[[Path], bytes]


def _unattended_refusal(path: Path) -> KeyFileError:
    return KeyFileError(
        f"{path} is protected by a passphrase, but this key must start unattended (a relay "
        "starts at boot with nobody to type it): create the relay key without a passphrase "
        "(`relayd keys new --role relay`) and protect the Pi instead (docs/deployment.md)"
    )


def passphrase_source(passphrase_file: Path | None = None, *, prompt: bool = True) -> PassphraseSource:
    """The passphrase from `passphrase_file`, else $RELAYD_KEY_PASSPHRASE, else asked on the
    terminal. Only consulted for a key file that has one."""

    def get(key_path: Path) -> bytes:
        if passphrase_file is not None:
            try:
                text = passphrase_file.read_bytes()
            except OSError as exc:
                raise KeyFileError(f"cannot read passphrase file {passphrase_file}: {exc.strerror}") from None
            return text.rstrip(b"\r\n")
        env = os.environ.get(PASSPHRASE_ENV)
        if env:
            return env.encode("utf-8")
        if prompt and sys.stdin.isatty():
            return getpass.getpass(f"passphrase for {key_path}: ").encode("utf-8")
        raise KeyFileError(
            f"{key_path} is protected by a passphrase: give it with --passphrase-file FILE or "
            f"{PASSPHRASE_ENV}, or run on a terminal to be asked"
        )

    return get


def _derive(passphrase: bytes, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, passphrase, salt, opslimit=opslimit, memlimit=memlimit
    )


def _seal(seed: bytes, passphrase: bytes) -> dict[str, object]:
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    box = nacl.secret.SecretBox(_derive(passphrase, salt, KDF_OPSLIMIT, KDF_MEMLIMIT)).encrypt(seed)
    return {
        "kdf": "argon2id",
        "opslimit": KDF_OPSLIMIT,
        "memlimit": KDF_MEMLIMIT,
        "salt": salt.hex(),
        "box": bytes(box).hex(),
    }


def _unseal(sealed: object, path: Path, passphrase: bytes) -> bytes:
    def bad() -> KeyFileError:
        return KeyFileError(f"{path}: the sealed key is damaged")

    if not isinstance(sealed, dict) or sealed.get("kdf") != "argon2id":
        raise bad()
    ops, mem = sealed.get("opslimit"), sealed.get("memlimit")
    if not isinstance(ops, int) or not isinstance(mem, int) or isinstance(ops, bool) or isinstance(mem, bool):
        raise bad()
    if not (1 <= ops <= 64 and 8192 <= mem <= _KDF_MAX_MEMLIMIT):
        raise bad()
    try:
        salt = bytes.fromhex(str(sealed.get("salt")))
        box = bytes.fromhex(str(sealed.get("box")))
    except ValueError:
        raise bad() from None
    if len(salt) != nacl.pwhash.argon2id.SALTBYTES:
        raise bad()
    try:
        seed = nacl.secret.SecretBox(_derive(passphrase, salt, ops, mem)).decrypt(box)
    except nacl.exceptions.CryptoError:
        raise KeyFileError(f"wrong passphrase for {path} (or the file was altered)") from None
    if len(seed) != SEED_BYTES:
        raise bad()
    return bytes(seed)


def is_sealed(path: Path) -> bool:
    """Does this private key file need a passphrase?"""
    return "sealed" in _read_json(path, "key file")


def write_private_key(identity: Identity, path: Path, passphrase: bytes | None = None) -> None:
    """Create `path` with mode 0600, sealed with `passphrase` if given. Refuses to overwrite
    an existing key, and a passphrase on a relay key (relays start unattended)."""
    doc: dict[str, object] = {
        "format": PRIVATE_FORMAT,
        "name": identity.name,
        "role": identity.role.value,
        "key_id": identity.key_id.hex(),
    }
    if passphrase is not None:
        if identity.role is Role.RELAY:
            raise KeyFileError(
                "a relay key cannot have a passphrase: a relay starts at boot with nobody to type "
                "it. Create it without --passphrase and protect the Pi instead"
            )
        if not passphrase:
            raise KeyFileError("the passphrase is empty; choose one, or create the key without one")
        doc["sealed"] = _seal(identity.seed, passphrase)
    else:
        doc["seed"] = identity.seed.hex()
    data = (json.dumps(doc, indent=2) + "\n").encode()
    try:
        # O_EXCL + explicit mode: the file never exists with looser permissions, not even briefly.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
    except FileExistsError:
        raise KeyFileError(
            f"{path} already exists; choose another --name or --out, or delete it first"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, PRIVATE_MODE)  # in case a umask-less filesystem ignored the mode


def write_public_key(public: PublicIdentity, path: Path) -> None:
    doc = {
        "format": PUBLIC_FORMAT,
        "name": public.name,
        "role": public.role.value,
        "key_id": public.key_id.hex(),
        "public_key": public.public_key.hex(),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)


def _read_json(path: Path, what: str) -> dict[str, object]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(
            f"{what} {path} does not exist; check the path or create it with `relayd keys new`"
        ) from None
    except PermissionError:
        raise KeyFileError(f"{what} {path} is not readable by this user; check its owner") from None
    except IsADirectoryError:
        raise KeyFileError(f"{what} {path} is a directory; pass the key file itself") from None
    try:
        doc = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise KeyFileError(f"{path} is not a relayd {what} (not JSON)") from None
    if not isinstance(doc, dict):
        raise KeyFileError(f"{path} is not a relayd {what}")
    return doc


def _role(doc: dict[str, object], path: Path) -> Role:
    try:
        return Role(str(doc.get("role")))
    except ValueError:
        raise KeyFileError(f"{path}: unknown role {doc.get('role')!r}") from None


def _hex(doc: dict[str, object], key: str, n: int, path: Path) -> bytes:
    value = doc.get(key)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != n:
        raise KeyFileError(f"{path}: {key!r} must be {n} bytes of hex; the file is damaged")
    return raw


def check_private_permissions(path: Path) -> None:
    """Refuse a private key that group or others can read or write."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} does not exist; check the path or create it with `relayd keys new`"
        ) from None
    if mode & 0o077:
        raise KeyFileError(
            f"key file {path} has permissions {mode:04o}; a private key must be readable by its owner only. "
            f"Fix it with: chmod 600 {path}"
        )


def load_private_key(
    path: Path, passphrase: PassphraseSource | None = None, *, unattended: bool = False
) -> Identity:
    """Load a private key. A sealed one asks `passphrase` (by default: $RELAYD_KEY_PASSPHRASE,
    else the terminal); `unattended` (the relay daemon) refuses sealed keys outright."""
    check_private_permissions(path)
    doc = _read_json(path, "key file")
    if doc.get("format") != PRIVATE_FORMAT:
        if doc.get("format") == PUBLIC_FORMAT:
            raise KeyFileError(f"{path} is a public key; signing needs the private NAME.key file")
        raise KeyFileError(f"{path} is not a relayd private key (format {doc.get('format')!r})")
    role = _role(doc, path)
    if "sealed" in doc:
        if unattended:
            raise _unattended_refusal(path)
        seed = _unseal(doc["sealed"], path, (passphrase or passphrase_source())(path))
    else:
        seed = _hex(doc, "seed", SEED_BYTES, path)
    identity = Identity(str(doc.get("name", path.stem)), role, seed)
    if doc.get("key_id") != identity.key_id.hex():
        raise KeyFileError(f"{path}: key_id does not match the key; the file is damaged")
    return identity


def load_public_key(path: Path) -> PublicIdentity:
    doc = _read_json(path, "public key file")
    if doc.get("format") == PRIVATE_FORMAT:
        # Accepting a private key here would tempt people to copy private keys around.
        raise KeyFileError(f"{path} is a private key; pass the matching .pub file instead")
    if doc.get("format") != PUBLIC_FORMAT:
        raise KeyFileError(f"{path} is not a relayd public key (format {doc.get('format')!r})")
    public = PublicIdentity(
        str(doc.get("name", path.stem)), _role(doc, path), _hex(doc, "public_key", PUBLIC_KEY_BYTES, path)
    )
    if doc.get("key_id") != public.key_id.hex():
        raise KeyFileError(f"{path}: key_id does not match the key; the file is damaged")
    return public


def next_sequence(key_path: Path) -> int:
    """Reserve the next sequence number for a key, persisted beside it in NAME.seq.

    The counter is bumped and fsynced before the number is used, under an exclusive lock,
    so a crash or two concurrent signers never reuse a number (a reused number would make
    relays reject the second alert as a replay).
    """
    seq_path = key_path.with_suffix(".seq")
    fd = os.open(seq_path, os.O_RDWR | os.O_CREAT, PRIVATE_MODE)
    with os.fdopen(fd, "r+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        text = fh.read().strip()
        last = 0
        with contextlib.suppress(ValueError):
            last = int(text) if text else 0
        seq = last + 1
        fh.seek(0)
        fh.truncate()
        fh.write(f"{seq}\n")
        fh.flush()
        os.fsync(fh.fileno())
    return seq
