"""`relayd alert`: compose a signed on-air alert, or verify one read from stdin."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from relayd.cli.common import UsageError, expiry_arg, now_from_arg
from relayd.core.cap import to_cap_xml
from relayd.core.codec import ComposeError, compose
from relayd.core.jsonform import Envelope, alert_to_dict, encode_alert
from relayd.core.model import AlertFields, Kind, Severity
from relayd.core.verify import Verifier
from relayd.errors import RelaydError
from relayd.keystore import (
    PASSPHRASE_ENV,
    load_private_key,
    load_public_key,
    next_sequence,
    passphrase_source,
)
from relayd.trustfile import load_bundle

DEFAULT_EXPIRY = "30m"
EXIT_ACCEPTED, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    alert = subparsers.add_parser("alert", help="compose or verify signed alerts")
    sub = alert.add_subparsers(dest="alert_command", metavar="ACTION", required=True)

    comp = sub.add_parser("compose", help="sign an alert and print its exact on-air text")
    comp.add_argument("--key", required=True, type=Path, help="your private NAME.key")
    comp.add_argument(
        "--passphrase-file",
        type=Path,
        help=f"the key's passphrase, if it has one (else ${PASSPHRASE_ENV}, else asked on the terminal)",
    )
    comp.add_argument(
        "--kind",
        required=True,
        choices=[k.value for k in Kind],
        help="alert; update, cancel or allclear of an earlier alert (with --ref); test (a drill); report",
    )
    comp.add_argument(
        "--severity",
        required=True,
        choices=[s.value for s in Severity],
        help="urgent rings the handhelds' bell; warning, advisory and info do not",
    )
    comp.add_argument("--expires", default=DEFAULT_EXPIRY, help="lifetime (30m, 2h) or ISO 8601 time")
    comp.add_argument("--ref", help="id of the earlier alert (for update, cancel, allclear)")
    comp.add_argument("--area", help="coarse area: a geohash prefix or a zone name")
    comp.add_argument("--seq", type=int, help="sequence number (default: next from NAME.seq beside the key)")
    comp.add_argument("--now", help="issue time as ISO 8601 (default: now)")
    out = comp.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="print the MQTT JSON form")
    out.add_argument("--cap", action="store_true", help="print a CAP 1.2 XML export")
    comp.add_argument("text", help="what, where (cross streets or zone), what is needed")
    comp.set_defaults(func=cmd_compose)

    ver = sub.add_parser(
        "verify",
        help="verify one on-air text read from stdin; exit 0 accepted, 1 rejected, 2 usage error",
    )
    ver.add_argument("--trust", type=Path, help="trust bundle file (default: the one in --config)")
    ver.add_argument("--root", type=Path, help="the network root's .pub the bundle must be signed by")
    ver.add_argument(
        "-c", "--config", type=Path, help="a relay config: its [trust] root (and bundle) are used"
    )
    ver.add_argument("--now", help="verify as of this ISO 8601 time (default: now)")
    ver.set_defaults(func=cmd_verify, error_exit_code=EXIT_USAGE)


def cmd_compose(args: argparse.Namespace) -> int:
    identity = load_private_key(args.key, passphrase_source(args.passphrase_file))
    now = now_from_arg(args.now)
    expires = expiry_arg(args.expires, now)
    assert expires is not None  # noqa: S101 - argparse default guarantees a value
    if expires <= now:
        raise UsageError(
            f"--expires {args.expires!r} is not after the issue time: the alert would be expired "
            "before any relay could send it"
        )
    ref: bytes | None = None
    if args.ref is not None:
        try:
            ref = bytes.fromhex(args.ref)
        except ValueError:
            ref = b""
        if len(ref) != 8:
            raise UsageError(f"--ref {args.ref!r} must be an alert id of 16 hex digits")
    if args.seq is not None and args.seq < 0:
        raise UsageError("--seq must not be negative")
    text: str = args.text
    fields = AlertFields(
        kind=Kind(args.kind),
        severity=Severity(args.severity),
        key_id=identity.key_id,
        issued_at_s=int(now),
        seq=args.seq if args.seq is not None else 0,
        expires_at_s=expires,
        text=text,
        ref=ref,
        area=args.area,
    )
    try:
        # Validate before reserving a sequence number so a rejected text burns none.
        compose(fields, identity.sign)
    except ComposeError as exc:
        raise UsageError(str(exc)) from None
    seq = args.seq if args.seq is not None else next_sequence(args.key)
    try:
        frame = compose(
            AlertFields(
                fields.kind,
                fields.severity,
                fields.key_id,
                fields.issued_at_s,
                seq,
                fields.expires_at_s,
                text,
                ref,
                args.area,
            ),
            identity.sign,
        )
    except ComposeError as exc:  # e.g. NAME.seq ran past the 24-bit sequence space
        raise UsageError(str(exc)) from None
    alert = frame.to_signed_alert()
    if args.json:
        envelope = Envelope(signer_name=identity.name, signer_role=identity.role.value)
        sys.stdout.write(encode_alert(alert, envelope).decode() + "\n")
    elif args.cap:
        sys.stdout.write(to_cap_xml(alert, signer_name=identity.name))
    else:
        sys.stdout.write(alert.onair + "\n")
    print(f"alert id {alert.id_hex}, seq {seq}, {len(alert.onair.encode())} bytes on air", file=sys.stderr)
    return 0


def _read_onair() -> str:
    data = sys.stdin.buffer.read()
    # `compose` ends its output with a newline for the shell; a real frame never ends in one.
    if data.endswith(b"\n"):
        data = data[:-1]
    return data.decode("utf-8", errors="surrogateescape")


def _verify_trust(args: argparse.Namespace) -> tuple[Path, bytes]:
    """The bundle path and the pinned root. A bundle checked only against the root it names
    proves nothing: anyone can sign one with their own root, so a root is required."""
    root_path: Path | None = args.root
    bundle_path: Path | None = args.trust
    if args.config is not None:
        from relayd.daemon.config import load_config  # noqa: PLC0415 - only for --config

        config = load_config(args.config)
        root_path = root_path or config.root_pub
        bundle_path = bundle_path or config.bundle_path
    if root_path is None:
        raise UsageError(
            "alert verify needs the network's root key: pass --root ROOT.pub (from your network "
            "admin), or --config RELAY.toml to use the root in its [trust] section"
        )
    if bundle_path is None:
        raise UsageError("alert verify needs a trust bundle: pass --trust BUNDLE (or --config RELAY.toml)")
    return bundle_path, load_public_key(root_path).public_key


def cmd_verify(args: argparse.Namespace) -> int:
    bundle_path, pinned = _verify_trust(args)
    bundle = load_bundle(bundle_path, pinned_root=pinned).bundle
    now = now_from_arg(args.now)
    try:
        payload: bytes | str = _read_onair().encode("utf-8", errors="surrogateescape")
    except UnicodeError:
        raise RelaydError("stdin could not be read as bytes") from None
    verdict = Verifier(bundle).verify(payload, now)
    result: dict[str, object] = {
        "ok": verdict.ok,
        "reason": verdict.reason.value if verdict.reason else None,
        "detail": verdict.detail or None,
        "alert": alert_to_dict(verdict.alert) if verdict.alert else None,
        "signer": (
            {"name": verdict.signer.name, "role": verdict.signer.role.value} if verdict.signer else None
        ),
    }
    print(json.dumps(result, ensure_ascii=False, separators=(",", ":")))
    return EXIT_ACCEPTED if verdict.ok else EXIT_REJECTED
