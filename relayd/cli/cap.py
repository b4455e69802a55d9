"""`relayd cap`: serve the alerts the network accepted as CAP 1.2 and an Atom index."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from relayd.core.topics import DEFAULT_ROOT
from relayd.errors import RelaydError

if TYPE_CHECKING:
    from relayd.daemon.capfeed import CapFeedService

DEFAULT_LISTEN = "127.0.0.1:8089"
# CAP 1.2 3.2.1: sender and identifier must not include spaces, commas or restricted
# characters (< and &).
_CAP_NAME = re.compile(r"[^\s,<&]+")


class CapUsageError(RelaydError):
    """A `relayd cap` option is wrong; the message says which and how to fix it."""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "cap",
        help="serve accepted alerts as CAP 1.2 documents and an Atom index over HTTP",
        description=(
            "Subscribe to the broker, verify every alert against the trust bundle (as the "
            "dispatcher console does) and serve the verified ones over HTTP: GET /alerts.atom "
            "(the active alerts) and /alerts/<id>.xml (CAP 1.2)."
        ),
    )
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883", help="mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--trust", required=True, type=Path, help="the root-signed trust bundle (trust.json)")
    p.add_argument(
        "--root-pub", required=True, type=Path, help="the network root's public key (root.pub), pinned"
    )
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"MQTT topic root (default {DEFAULT_ROOT})")
    p.add_argument("--username", help="MQTT username")
    p.add_argument("--password-file", type=Path, help="file holding the MQTT password")
    p.add_argument("--ca-file", type=Path, help="CA certificate for mqtts://")
    p.add_argument("--listen", default=DEFAULT_LISTEN, help=f"HTTP HOST:PORT (default {DEFAULT_LISTEN})")
    p.add_argument("--sender", default="relayd", help="CAP sender prefix, e.g. your network's domain")
    p.add_argument("--public-url", help="the feed's URL as consumers reach it (links in the index)")
    p.set_defaults(func=cmd_cap, error_exit_code=2)


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise CapUsageError(f"--listen {text!r}: expected HOST:PORT, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]"), int(port)


def cmd_cap(args: argparse.Namespace) -> int:
    from relayd.daemon.capfeed import CapFeedConfig, CapFeedService  # noqa: PLC0415 - keep aiomqtt lazy
    from relayd.daemon.config import MqttConfig  # noqa: PLC0415
    from relayd.keystore import load_public_key  # noqa: PLC0415
    from relayd.trustfile import load_bundle  # noqa: PLC0415

    if not _CAP_NAME.fullmatch(args.sender):
        raise CapUsageError(f"--sender {args.sender!r}: no spaces, commas, '<' or '&' (CAP 1.2 3.2.1)")
    parts = urlsplit(args.broker)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise CapUsageError(f"--broker {args.broker!r}: expected mqtt://HOST:PORT or mqtts://HOST:PORT")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise CapUsageError(f"--broker {args.broker!r} has an invalid port") from None
    password = None
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().strip()
        except OSError as exc:
            raise CapUsageError(f"--password-file {args.password_file}: {exc.strerror}") from None
    # Pinned, as on a relay: a bundle file signed by any other root is refused, and so is any
    # newer bundle on <root>/trust that this root did not sign.
    signed = load_bundle(args.trust, pinned_root=load_public_key(args.root_pub).public_key)
    host, listen_port = _listen(args.listen)
    config = CapFeedConfig(
        mqtt=MqttConfig(
            host=parts.hostname,
            port=port,
            tls=tls,
            ca_file=args.ca_file,
            username=args.username,
            password=password,
            topic_root=args.root,
            client_id=f"relayd-cap-{uuid.uuid4().hex[:8]}",
        ),
        listen_host=host,
        listen_port=listen_port,
        sender=args.sender,
        public_url=args.public_url,
    )
    service = CapFeedService(config, signed)
    return asyncio.run(_serve(service))


async def _serve(service: CapFeedService) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    def ready() -> None:
        print(f"relayd cap: serving {service.base_url}/alerts.atom", flush=True)

    try:
        await service.run(stop, on_ready=ready)
    except OSError as exc:
        print(f"relayd cap: cannot listen on {service.config.listen_host}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0
