"""`relayd alerts`: list the active alerts, show one, or end one (update, cancel, all-clear).

Active alerts are read from the broker's retained `<root>/active/<id>` topics and each is
verified against the trust bundle pinned to the network root;
what is not believed is listed with its reason. Ending an alert signs an update, cancel or
all-clear with your key and publishes it to `<root>/outbox` with QoS 1: "sent" is printed
only once the broker has acknowledged it. Relays then verify and transmit it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from relayd.cli.common import UsageError, expiry_arg, now_from_arg
from relayd.core.activelist import ActiveAlert, ActiveList, judge_active
from relayd.core.codec import ComposeError, compose
from relayd.core.identity import Identity
from relayd.core.jsonform import Envelope, alert_to_dict, encode_alert
from relayd.core.model import AlertFields, Kind, Severity, SignedAlert, role_may_sign
from relayd.core.timefmt import iso_utc
from relayd.core.topics import DEFAULT_ROOT, Topics
from relayd.errors import RelaydError
from relayd.keystore import (
    PASSPHRASE_ENV,
    load_private_key,
    load_public_key,
    next_sequence,
    passphrase_source,
)
from relayd.trustfile import load_bundle

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_WAIT_S = 1.0
DEFAULT_EXPIRY = "30m"
END_KINDS = (Kind.UPDATE, Kind.CANCEL, Kind.ALLCLEAR)
DEFAULT_TEXT = {Kind.CANCEL: "Disregard earlier alert", Kind.ALLCLEAR: "All clear"}


class BrokerError(RelaydError):
    """The broker could not be reached, or did not acknowledge a publish."""


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    tls: bool
    ca_file: Path | None
    username: str | None
    password: str | None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    common = argparse.ArgumentParser(add_help=False)
    net = common.add_argument_group("broker and trust")
    net.add_argument(
        "--broker", default=DEFAULT_BROKER, help=f"mqtt://HOST:PORT or mqtts://HOST:PORT ({DEFAULT_BROKER})"
    )
    net.add_argument("--root", default=DEFAULT_ROOT, help=f"MQTT topic root (default {DEFAULT_ROOT})")
    net.add_argument("--trust", required=True, type=Path, help="the root-signed trust bundle (trust.json)")
    net.add_argument(
        "--root-pub", required=True, type=Path, help="the network root's public key (root.pub), pinned"
    )
    net.add_argument("--username", help="MQTT username")
    net.add_argument("--password-file", type=Path, help="file holding the MQTT password")
    net.add_argument("--ca-file", type=Path, help="CA certificate for mqtts://")
    net.add_argument(
        "--wait",
        type=float,
        default=DEFAULT_WAIT_S,
        help=f"seconds of quiet after the retained messages before listing (default {DEFAULT_WAIT_S})",
    )
    net.add_argument("--now", help="judge expiry as of this ISO 8601 time (default: now)")

    alerts = subparsers.add_parser(
        "alerts",
        help="list, show or end the active alerts on the broker",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    sub = alerts.add_subparsers(dest="alerts_command", metavar="ACTION", required=True)

    ls = sub.add_parser(
        "list",
        parents=[common],
        help="the verified active alerts, newest first; what is not believed goes to stderr",
    )
    ls.add_argument("--json", action="store_true", help="one JSON document: active, not_believed, expired")
    ls.set_defaults(func=cmd_list, error_exit_code=EXIT_USAGE)

    show = sub.add_parser("show", parents=[common], help="one active alert in full")
    show.add_argument("alert_id", help="the alert id (16 hex digits, or a unique prefix)")
    show.add_argument("--json", action="store_true", help="print it as JSON")
    show.set_defaults(func=cmd_show, error_exit_code=EXIT_USAGE)

    end = sub.add_parser(
        "end",
        parents=[common],
        help="sign an update, cancel or all-clear of an active alert and publish it to the outbox",
    )
    end.add_argument("alert_id", help="the active alert to end (16 hex digits, or a unique prefix)")
    end.add_argument(
        "--kind",
        required=True,
        choices=[k.value for k in END_KINDS],
        help="update (with --text), cancel (retract: it was wrong) or allclear (it is over)",
    )
    end.add_argument("--key", required=True, type=Path, help="your private NAME.key (dispatcher or verifier)")
    end.add_argument(
        "--passphrase-file",
        type=Path,
        help=f"the key's passphrase, if it has one (else ${PASSPHRASE_ENV}, else asked on the terminal)",
    )
    end.add_argument(
        "--text", help="what changed (required for update; default 'Disregard earlier alert' / 'All clear')"
    )
    end.add_argument(
        "--severity", choices=[s.value for s in Severity], help="default: the alert's (info for allclear)"
    )
    end.add_argument("--expires", default=DEFAULT_EXPIRY, help="lifetime (30m, 2h) or ISO 8601 time")
    end.add_argument("--json", action="store_true", help="print the published message as JSON")
    end.set_defaults(func=cmd_end, error_exit_code=EXIT_USAGE)


# ---- broker ---------------------------------------------------------------------------


def broker_of(args: argparse.Namespace) -> Broker:
    parts = urlsplit(args.broker)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise UsageError(f"--broker {args.broker!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise UsageError(f"--broker {args.broker!r} has an invalid port") from None
    if parts.password:
        raise UsageError("--broker: put the password in --password-file, not in the URL (it shows in ps)")
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().strip()
        except OSError as exc:
            raise UsageError(f"--password-file {args.password_file}: {exc.strerror}") from None
    return Broker(parts.hostname, port, tls, args.ca_file, args.username or parts.username, password)


def _client(broker: Broker) -> Any:
    import aiomqtt  # noqa: PLC0415 - keep `relayd --help` fast

    tls: ssl.SSLContext | None = None
    if broker.tls:
        tls = ssl.create_default_context(cafile=str(broker.ca_file) if broker.ca_file else None)
    return aiomqtt.Client(
        broker.host,
        broker.port,
        identifier=f"relayd-alerts-{uuid.uuid4().hex[:8]}",
        username=broker.username,
        password=broker.password,
        tls_context=tls,
        timeout=10,
    )


async def _fetch_active(broker: Broker, topics: Topics, wait_s: float) -> list[tuple[str, bytes]]:
    import aiomqtt  # noqa: PLC0415

    prefix = topics.active_wildcard[:-1]
    got: dict[str, bytes] = {}
    try:
        async with _client(broker) as client:
            await client.subscribe(topics.active_wildcard, qos=1)
            messages = client.messages
            while True:
                try:
                    message = await asyncio.wait_for(anext(messages), wait_s)
                except TimeoutError:
                    break
                alert_id = message.topic.value[len(prefix) :]
                if "/" in alert_id:
                    continue
                payload = message.payload
                data = bytes(payload) if isinstance(payload, bytes | bytearray) else str(payload).encode()
                if data:
                    got[alert_id] = data
                else:
                    got.pop(alert_id, None)
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"cannot read {topics.active_wildcard} from {_where(broker)}: {exc}") from None
    return list(got.items())


async def _publish(broker: Broker, topic: str, payload: bytes) -> None:
    import aiomqtt  # noqa: PLC0415

    try:
        async with _client(broker) as client:
            # QoS 1: returns once the broker's PUBACK has arrived.
            await client.publish(topic, payload, qos=1, timeout=10)
    except aiomqtt.MqttError as exc:
        raise BrokerError(f"not sent: publishing to {topic} on {_where(broker)} failed: {exc}") from None


def _where(broker: Broker) -> str:
    return f"{'mqtts' if broker.tls else 'mqtt'}://{broker.host}:{broker.port}"


def _active(args: argparse.Namespace) -> tuple[ActiveList, float]:
    if args.wait <= 0:
        raise UsageError("--wait must be more than zero seconds")
    broker = broker_of(args)
    bundle = load_bundle(args.trust, pinned_root=load_public_key(args.root_pub).public_key).bundle
    messages = asyncio.run(_fetch_active(broker, Topics(args.root), args.wait))
    now = now_from_arg(args.now)
    return judge_active(messages, bundle, now), now


def _pick(active: ActiveList, alert_id: str) -> ActiveAlert:
    wanted = alert_id.strip().lower()
    matches = [a for a in active.alerts if a.alert.id_hex.startswith(wanted)] if wanted else []
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"{alert_id!r} matches {len(matches)} active alerts: give more digits")
    if wanted in active.expired:
        raise RelaydError(f"alert {wanted} has expired (its retained copy is still on the broker)")
    refused = next((n for n in active.not_believed if n.topic_id.startswith(wanted)), None)
    if refused is not None:
        raise RelaydError(f"alert {refused.topic_id} is not believed: {refused.reason} ({refused.detail})")
    raise RelaydError(f"no active alert {alert_id!r} on the broker")


# ---- output ---------------------------------------------------------------------------


def _doc(a: ActiveAlert) -> dict[str, object]:
    doc = alert_to_dict(a.alert)
    doc["signer"] = {"name": a.signer_name, "role": a.signer_role.value}
    return doc


def _line(a: ActiveAlert, now_s: float) -> str:
    f = a.alert.fields
    left = max(0, int(f.expires_at_s - now_s))
    ref = f" re {f.ref.hex()}" if f.ref else ""
    area = f" area {f.area}" if f.area else ""
    head = (
        f"{a.alert.id_hex}  {f.kind.value.upper():6} {f.severity.value:8} expires in {_dur(left):>4}"
        f"{area}{ref}  by {a.signer_name} ({a.signer_role.value})"
    )
    return f"{head}\n    {f.text}"


def _dur(seconds: int) -> str:
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m"
    if seconds < 86400:
        return f"{seconds // 3600}h"
    return f"{seconds // 86400}d"


def cmd_list(args: argparse.Namespace) -> int:
    active, now = _active(args)
    if args.json:
        doc = {
            "active": [_doc(a) for a in active.alerts],
            "not_believed": [
                {"id": n.topic_id, "reason": n.reason, "detail": n.detail} for n in active.not_believed
            ],
            "expired": active.expired,
            "as_of": iso_utc(now),
        }
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        for a in active.alerts:
            print(_line(a, now))
        summary = f"{len(active.alerts)} active alert(s)"
        if active.expired:
            summary += f"; {len(active.expired)} expired but still retained"
        print(summary)
    for n in active.not_believed:
        print(f"relayd: not believed: active/{n.topic_id}: {n.reason} ({n.detail})", file=sys.stderr)
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    active, now = _active(args)
    a = _pick(active, args.alert_id)
    if args.json:
        print(json.dumps(_doc(a), ensure_ascii=False, indent=1))
        return EXIT_OK
    f = a.alert.fields
    print(_line(a, now))
    print(f"  issued  {iso_utc(f.issued_at_s)}  seq {f.seq}")
    print(f"  expires {iso_utc(f.expires_at_s)}")
    print(f"  key     {f.key_id.hex()}  signature verified against trust bundle")
    print(f"  on air  {a.alert.onair!r}")
    return EXIT_OK


def _end_alert(
    args: argparse.Namespace, identity: Identity, target: ActiveAlert, now_s: float
) -> SignedAlert:
    kind = Kind(args.kind)
    if not role_may_sign(identity.role, kind):
        raise UsageError(f"{args.key} is a {identity.role.value} key; it may not sign a {kind.value}")
    expires = expiry_arg(args.expires, now_s)
    assert expires is not None  # noqa: S101 - argparse default guarantees a value
    if expires <= now_s:
        raise UsageError(f"--expires {args.expires!r} has already passed: the alert would be expired at once")
    text = args.text if args.text is not None else DEFAULT_TEXT.get(kind)
    if not text:
        raise UsageError(f"--text is required for {kind.value}: say what changed")
    tf = target.alert.fields
    if args.severity:
        severity = Severity(args.severity)
    else:
        severity = Severity.INFO if kind is Kind.ALLCLEAR else tf.severity
    fields = AlertFields(
        kind, severity, identity.key_id, int(now_s), 0, expires, text, target.alert.alert_id, tf.area
    )
    try:
        compose(fields, identity.sign)  # validate before reserving a sequence number
        seq = next_sequence(args.key)
        frame = compose(
            AlertFields(
                kind,
                severity,
                identity.key_id,
                int(now_s),
                seq,
                expires,
                text,
                target.alert.alert_id,
                tf.area,
            ),
            identity.sign,
        )
    except ComposeError as exc:
        raise UsageError(str(exc)) from None
    return frame.to_signed_alert()


def cmd_end(args: argparse.Namespace) -> int:
    identity = load_private_key(args.key, passphrase_source(args.passphrase_file))
    active, now = _active(args)
    target = _pick(active, args.alert_id)
    alert = _end_alert(args, identity, target, now)
    payload = encode_alert(alert, Envelope(signer_name=identity.name, signer_role=identity.role.value))
    topic = Topics(args.root).outbox
    asyncio.run(_publish(broker_of(args), topic, payload))
    if args.json:
        print(payload.decode())
    print(
        f"sent: {alert.kind.value} {alert.id_hex} of {target.alert.id_hex}; "
        f"the broker acknowledged it on {topic}",
        file=sys.stderr,
    )
    return EXIT_OK
