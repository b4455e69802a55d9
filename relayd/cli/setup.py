"""`relayd setup`: install this machine as a relay (config, key, trust files, systemd unit)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from relayd.install import (
    DEFAULT_BROKER,
    DEFAULT_DEVICE,
    DEFAULT_ETC,
    DEFAULT_STATE,
    DEFAULT_UNIT_DIR,
    DEFAULT_USER,
    SetupOptions,
    apply_plan,
    default_relayd_bin,
    next_steps,
    plan_setup,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "setup",
        help="install this machine as a relay: config, relay key, trust files, systemd unit",
        description=(
            "Write the relay config, create the relay's signing key (0600, in the state directory), "
            "copy the network root's public key and trust bundle, create an MQTT password file if "
            "there is none, and install and enable the systemd unit. Run it as root: "
            "sudo /opt/relayd/venv/bin/relayd setup --relay-id relay-north --root-pub root.pub "
            "--bundle trust.json. Existing files are left alone unless --force (an existing key is "
            "always kept). See docs/deployment.md."
        ),
    )
    p.add_argument("--relay-id", required=True, help="this relay's id, e.g. relay-north (= its MQTT user)")
    p.add_argument("--root-pub", required=True, type=Path, help="the network root's public key (root.pub)")
    p.add_argument("--bundle", required=True, type=Path, help="the root-signed trust bundle (trust.json)")
    p.add_argument("--device", default=DEFAULT_DEVICE, help=f"the radio (default {DEFAULT_DEVICE})")
    p.add_argument("--broker", default=DEFAULT_BROKER, help=f"the MQTT broker URL (default {DEFAULT_BROKER})")
    p.add_argument("--mqtt-user", default=None, help="MQTT username (default: the relay id)")
    p.add_argument(
        "--mqtt-password-file",
        type=Path,
        default=None,
        help="file with the MQTT password (default ETC/mqtt.password; created with a random one if missing)",
    )
    p.add_argument("--etc", type=Path, default=DEFAULT_ETC, help=f"config directory (default {DEFAULT_ETC})")
    p.add_argument(
        "--state", type=Path, default=DEFAULT_STATE, help=f"state directory (default {DEFAULT_STATE})"
    )
    p.add_argument(
        "--unit-dir",
        type=Path,
        default=DEFAULT_UNIT_DIR,
        help=f"where the unit goes (default {DEFAULT_UNIT_DIR})",
    )
    p.add_argument(
        "--relayd-bin",
        type=Path,
        default=None,
        help="the relayd executable for the unit's ExecStart (default: the one next to this Python)",
    )
    p.add_argument(
        "--user", default=DEFAULT_USER, help=f"the service user (default {DEFAULT_USER}; created if missing)"
    )
    p.add_argument("--no-enable", action="store_true", help="install the unit but do not enable it")
    p.add_argument("--force", action="store_true", help="overwrite an existing config, trust files and unit")
    p.add_argument("--dry-run", action="store_true", help="show what would be done; change nothing")
    p.set_defaults(func=cmd_setup)


def cmd_setup(args: argparse.Namespace) -> int:
    options = SetupOptions(
        relay_id=args.relay_id,
        root_pub=args.root_pub,
        bundle=args.bundle,
        device=args.device,
        broker=args.broker,
        mqtt_user=args.mqtt_user,
        password_file=args.mqtt_password_file,
        etc=args.etc,
        state=args.state,
        unit_dir=args.unit_dir,
        relayd_bin=args.relayd_bin or default_relayd_bin(),
        user=args.user,
        force=args.force,
        enable=not args.no_enable,
    )
    plan = plan_setup(options)
    prefix = "would " if args.dry_run else ""
    for line in plan.describe():
        print(f"{prefix}{line}")
    for note in plan.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.dry_run:
        return 0
    apply_plan(plan)
    print()
    print("\n".join(next_steps(plan)))
    return 0
