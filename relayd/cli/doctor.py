"""`relayd doctor -c CONFIG`: is this relay able to work? One line per check, with its fix."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from relayd.cli.common import now_from_arg
from relayd.daemon.config import load_config
from relayd.doctor import (
    DEFAULT_TIMEOUT_S,
    CheckResult,
    exit_code,
    fail,
    render_json,
    render_text,
    run_checks,
)
from relayd.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = subparsers.add_parser(
        "doctor",
        help="check the radio, broker, key, trust bundle, clock and disk of a relay",
        description=(
            "Check everything a relay needs: the radio device and its API handshake, the broker "
            "and its credentials, whether it saves what it acknowledges, the relay "
            "key, the trust bundle, the clock and the state disk. "
            "Prints ok/warn/fail per check with a fix; exits 1 if any check fails."
        ),
    )
    doctor.add_argument("-c", "--config", required=True, type=Path, help="the relay's TOML config")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument(
        "--now",
        metavar="ISO",
        help="check the clock and the bundle's expiry as if it were this time (e.g. 2026-11-21T13:00:00Z)",
    )
    doctor.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        metavar="S",
        help=f"seconds to wait for the radio and the broker (default {DEFAULT_TIMEOUT_S:g})",
    )
    doctor.add_argument(
        "--broker-config",
        type=Path,
        metavar="PATH",
        help="the broker's Mosquitto config, to check it saves what it acknowledges "
        "(default: /etc/mosquitto/mosquitto.conf when the broker is on this machine)",
    )
    doctor.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    now_s = now_from_arg(args.now) if args.now is not None else None
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        results: list[CheckResult] = [
            fail("config", str(exc), f"fix the file, then `relayd check -c {args.config}`")
        ]
    else:
        results = asyncio.run(
            run_checks(config, now_s=now_s, timeout_s=args.timeout, broker_config=args.broker_config)
        )
    print(render_json(results) if args.json else render_text(results))
    return exit_code(results)
