"""`relayd keys`: create signing keys."""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from pathlib import Path

from relayd.core.identity import Identity
from relayd.core.model import Role
from relayd.errors import KeyFileError
from relayd.keystore import write_private_key, write_public_key

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    keys = subparsers.add_parser("keys", help="create Ed25519 signing keys")
    sub = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    new = sub.add_parser("new", help="generate a key pair: DIR/NAME.key (0600) and DIR/NAME.pub")
    new.add_argument("--name", required=True, help="display name, also the file name")
    new.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in Role],
        help="what the key may do: root signs trust bundles, dispatcher and verifier sign alerts, "
        "reporter signs reports, relay wraps reports and signs its status",
    )
    new.add_argument("--out", required=True, type=Path, help="directory to write the key files into")
    pw = new.add_mutually_exclusive_group()
    pw.add_argument(
        "--passphrase", action="store_true", help="seal the key with a passphrase, asked on the terminal"
    )
    pw.add_argument("--passphrase-file", type=Path, help="seal the key with the passphrase in this file")
    new.set_defaults(func=cmd_new)


def _new_passphrase(args: argparse.Namespace) -> bytes | None:
    """The passphrase to seal a new key with (dispatcher, verifier and root keys; never relay)."""
    if args.passphrase_file is not None:
        try:
            return bytes(args.passphrase_file.read_bytes().rstrip(b"\r\n"))
        except OSError as exc:
            raise KeyFileError(
                f"cannot read passphrase file {args.passphrase_file}: {exc.strerror}"
            ) from None
    if not args.passphrase:
        return None
    if not sys.stdin.isatty():
        raise KeyFileError("--passphrase asks on a terminal; use --passphrase-file FILE otherwise")
    first = getpass.getpass("passphrase for the new key: ")
    if getpass.getpass("again: ") != first:
        raise KeyFileError("the two passphrases differ; nothing was written")
    return first.encode("utf-8")


def cmd_new(args: argparse.Namespace) -> int:
    name: str = args.name
    if not _NAME_RE.fullmatch(name):
        raise KeyFileError(
            f"key name {name!r} must start with a letter or digit "
            "and use only letters, digits, '.', '_' or '-'"
        )
    out: Path = args.out
    if not out.is_dir():
        raise KeyFileError(f"output directory {out} does not exist; create it first (mkdir -p {out})")
    identity = Identity.generate(name, Role(args.role))
    key_path = out / f"{name}.key"
    write_private_key(identity, key_path, _new_passphrase(args))
    write_public_key(identity.public, out / f"{name}.pub")
    print(identity.key_id.hex())
    print(f"wrote {key_path} (mode 0600) and {out / (name + '.pub')}", file=sys.stderr)
    return 0
