"""`relayd trust`: create, extend, revoke and inspect the signed trust bundle."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from relayd.cli.common import UsageError, duration_arg, expiry_arg
from relayd.core.identity import Identity
from relayd.core.model import Role
from relayd.core.timefmt import iso_utc
from relayd.core.trust import (
    KeyIdCollisionError,
    TrustBundle,
    TrustBundleError,
    TrustedKey,
    new_bundle,
    sign_bundle,
)
from relayd.errors import TrustFileError
from relayd.keystore import load_private_key, load_public_key
from relayd.trustfile import load_bundle, save_bundle

DEFAULT_BUNDLE_LIFETIME = "365d"
# The TUI and `trust show` warn when the bundle expires within this many days.
EXPIRY_WARNING_S = 14 * 86400


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    trust = subparsers.add_parser("trust", help="manage the signed trust bundle")
    sub = trust.add_subparsers(dest="trust_command", metavar="ACTION", required=True)

    init = sub.add_parser("init", help="create a new bundle (version 1) signed by the root key")
    init.add_argument(
        "--root-key", required=True, type=Path, help="the root private key that signs the bundle"
    )
    init.add_argument("--out", required=True, type=Path, help="where to write the new bundle (trust.json)")
    init.add_argument("--expires", default=DEFAULT_BUNDLE_LIFETIME, help="bundle lifetime (default 365d)")
    init.set_defaults(func=cmd_init)

    add = sub.add_parser("add", help="add or update a key; bumps the version and re-signs")
    add.add_argument(
        "--bundle", required=True, type=Path, help="the bundle to add to (rewritten, version + 1)"
    )
    add.add_argument(
        "--root-key", required=True, type=Path, help="the root private key that re-signs the bundle"
    )
    add.add_argument("--pub", required=True, type=Path, help="the key's NAME.pub file")
    add.add_argument(
        "--role",
        required=True,
        choices=[r.value for r in Role if r is not Role.ROOT],
        help="the role the key is trusted for (a key signs only what its role allows)",
    )
    add.add_argument("--name", help="display name (default: the name in the .pub file)")
    add.add_argument("--expires", help="key expiry: a duration (90d) or an ISO 8601 time")
    add.add_argument("--bundle-expires", help="also extend the bundle's own lifetime (e.g. 365d)")
    add.set_defaults(func=cmd_add)

    revoke = sub.add_parser("revoke", help="revoke a key; bumps the version and re-signs")
    revoke.add_argument(
        "--bundle", required=True, type=Path, help="the bundle to revoke in (rewritten, version + 1)"
    )
    revoke.add_argument(
        "--root-key", required=True, type=Path, help="the root private key that re-signs the bundle"
    )
    revoke.add_argument("--key-id", required=True, help="8 hex digits, as printed by `relayd keys new`")
    revoke.set_defaults(func=cmd_revoke)

    show = sub.add_parser("show", help="print a bundle's version, expiry and keys")
    show.add_argument("bundle", type=Path, help="the trust bundle file (trust.json)")
    show.add_argument("--json", action="store_true", help="machine-readable output")
    show.set_defaults(func=cmd_show)


def _load_root(path: Path) -> Identity:
    root = load_private_key(path)
    if root.role is not Role.ROOT:
        raise UsageError(f"{path} is a {root.role.value} key; trust bundles are signed with the root key")
    return root


def _load_for_update(bundle_path: Path, root: Identity) -> TrustBundle:
    bundle = load_bundle(bundle_path).bundle
    if bundle.root_public_key != root.public_key:
        raise TrustFileError(
            f"{bundle_path} is signed by root {bundle.root_key_id.hex()}, but --root-key is "
            f"{root.key_id.hex()}: use the root key that created this bundle"
        )
    return bundle


def _bump(bundle: TrustBundle, now_s: float, bundle_expires: str | None = None) -> TrustBundle:
    expires = bundle.expires_at_s
    if bundle_expires is not None:
        expires = int(now_s) + duration_arg(bundle_expires, "--bundle-expires")
    return TrustBundle(
        bundle.version + 1, int(now_s), expires, bundle.root_public_key, bundle.keys, bundle.revoked
    )


def cmd_init(args: argparse.Namespace) -> int:
    root = _load_root(args.root_key)
    out: Path = args.out
    if out.exists():
        raise UsageError(
            f"{out} already exists; use `relayd trust add` to change it, or choose another --out"
        )
    now = time.time()
    bundle = new_bundle(root.public_key, int(now), duration_arg(args.expires, "--expires"))
    save_bundle(sign_bundle(bundle, root.sign), out)
    print(f"wrote {out}: version 1, root {root.key_id.hex()}, expires {iso_utc(bundle.expires_at_s)}")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    root = _load_root(args.root_key)
    bundle = _load_for_update(args.bundle, root)
    public = load_public_key(args.pub)
    now = time.time()
    if bundle.is_revoked(public.key_id):
        raise UsageError(f"key {public.key_id.hex()} is revoked in this bundle; generate a new key instead")
    key = TrustedKey(
        public.public_key, args.name or public.name, Role(args.role), expiry_arg(args.expires, now)
    )
    listed = bundle.key(key.key_id)
    try:
        updated = _bump(bundle, now, args.bundle_expires).with_key(key)
        signed = sign_bundle(updated, root.sign)
    except KeyIdCollisionError as exc:
        raise UsageError(
            f"{args.pub}: key id {key.key_id.hex()} is already listed in {args.bundle} for a different "
            f"key, {exc.listed.name!r} ({exc.listed.role.value}); alerts name their key by this id, so "
            f"the two cannot be told apart. The bundle is unchanged. Fix: generate a new key for "
            f"{public.name} with `relayd keys new` and add its .pub instead"
        ) from None
    except TrustBundleError as exc:  # e.g. --pub is the root key itself
        raise UsageError(str(exc)) from None
    save_bundle(signed, args.bundle)
    if listed is not None:
        was = f"{listed.name}, {listed.role.value}"
        print(
            f"{args.bundle}: version {updated.version}; replacing {key.key_id.hex()} ({was}) with "
            f"{key.name} as {key.role.value}"
        )
    else:
        print(
            f"{args.bundle}: version {updated.version}; added {key.name} ({key.key_id.hex()}) "
            f"as {key.role.value}"
        )
    return 0


def cmd_revoke(args: argparse.Namespace) -> int:
    root = _load_root(args.root_key)
    bundle = _load_for_update(args.bundle, root)
    try:
        key_id = bytes.fromhex(args.key_id)
    except ValueError:
        key_id = b""
    if len(key_id) != 4:
        raise UsageError(f"--key-id {args.key_id!r} must be 8 hex digits, as printed by `relayd keys new`")
    updated = _bump(bundle, time.time()).with_revoked(key_id)
    save_bundle(sign_bundle(updated, root.sign), args.bundle)
    known = bundle.key(key_id)
    who = f"{known.name} ({key_id.hex()})" if known else key_id.hex()
    print(f"{args.bundle}: version {updated.version}; revoked {who}")
    return 0


def bundle_summary(bundle: TrustBundle, now_s: float) -> dict[str, object]:
    return {
        "version": bundle.version,
        "issued_at": iso_utc(bundle.issued_at_s),
        "expires_at": iso_utc(bundle.expires_at_s),
        "expired": bundle.is_expired(now_s),
        "expires_soon": not bundle.is_expired(now_s) and bundle.expires_at_s - now_s < EXPIRY_WARNING_S,
        "root_key_id": bundle.root_key_id.hex(),
        "keys": [
            {
                "key_id": k.key_id.hex(),
                "name": k.name,
                "role": k.role.value,
                "expires_at": iso_utc(k.expires_at_s) if k.expires_at_s is not None else None,
                "expired": k.is_expired(now_s),
                "revoked": bundle.is_revoked(k.key_id),
            }
            for k in sorted(bundle.keys, key=lambda k: (k.role.value, k.name))
        ],
        "revoked": sorted(r.hex() for r in bundle.revoked),
    }


def cmd_show(args: argparse.Namespace) -> int:
    bundle = load_bundle(args.bundle).bundle
    summary = bundle_summary(bundle, time.time())
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    state = "EXPIRED" if summary["expired"] else ("expires soon" if summary["expires_soon"] else "valid")
    print(f"trust bundle {args.bundle}")
    print(f"  version   {bundle.version}")
    print(f"  root      {bundle.root_key_id.hex()}")
    print(f"  issued    {summary['issued_at']}")
    print(f"  expires   {summary['expires_at']} ({state})")
    print(f"  keys      {len(bundle.keys)}")
    for k in bundle.keys:
        flags = []
        if bundle.is_revoked(k.key_id):
            flags.append("REVOKED")
        if k.expires_at_s is not None:
            flags.append(("expired " if k.is_expired(time.time()) else "expires ") + iso_utc(k.expires_at_s))
        print(f"    {k.key_id.hex()}  {k.role.value:<10}  {k.name}  {' '.join(flags)}".rstrip())
    listed = {k.key_id for k in bundle.keys}
    for r in sorted(bundle.revoked - listed):
        print(f"    {r.hex()}  (revoked, not listed)")
    return 0
