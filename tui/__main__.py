"""`relayd-tui`: the dispatcher's console."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from relayd.core.topics import DEFAULT_ROOT
from tui.config import ConfigError, MqttConfig, TuiConfig, default_state_dir
from tui.outbox import StateInUse, lock_state
from tui.startup import StartupError, load

EXIT_USAGE = 2


EXAMPLES = """\
examples:
  relayd-tui --broker mqtt://127.0.0.1:1883 --trust trust.json              watch only
  relayd-tui --broker mqtts://broker.lan:8883 --username ana --password-file ana.mqtt \\
      --key keys/ana.key --trust trust.json                                 watch and sign
keys: ? for help in the console; q quits."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relayd-tui",
        description="Watch relays and alerts, take in field reports, and issue signed alerts over MQTT.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EXAMPLES,
    )
    p.add_argument("--broker", required=True, help="MQTT broker, mqtt://HOST:PORT or mqtts://HOST:PORT")
    p.add_argument("--username", help="MQTT username")
    p.add_argument(
        "--password-file", type=Path, help="file holding the MQTT password (kept out of ps, unlike the URL)"
    )
    p.add_argument("--ca-file", type=Path, help="CA certificate for mqtts:// (default: the system's)")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"MQTT topic root (default {DEFAULT_ROOT})")
    p.add_argument("--key", type=Path, help="dispatcher or verifier private key (enables compose)")
    p.add_argument("--trust", type=Path, help="trust bundle to verify alerts against")
    p.add_argument("--bell", action="store_true", help="ring the terminal bell on urgent alerts")
    p.add_argument("--light", action="store_true", help="start with the light theme")
    p.add_argument(
        "--state",
        type=Path,
        default=None,
        help="folder for the outbox of signed alerts not yet sent (default $XDG_STATE_HOME/relayd-tui)",
    )
    p.add_argument("--log", type=Path, help="write a debug log here (alert text is never logged at INFO)")
    return p


def broker_config(args: argparse.Namespace) -> MqttConfig:
    mqtt = MqttConfig.from_url(args.broker, root=args.root)
    if mqtt.password is not None:
        print(
            "relayd-tui: warning: the MQTT password in --broker is visible to other users in ps; "
            "use --password-file",
            file=sys.stderr,
        )
    password = mqtt.password
    if args.password_file is not None:
        try:
            password = args.password_file.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--password-file {args.password_file}: {exc.strerror or exc}") from None
    if args.ca_file is not None and not mqtt.tls:
        raise ConfigError("--ca-file is for mqtts:// brokers; the broker URL is mqtt://")
    if args.ca_file is not None and not args.ca_file.is_file():
        raise ConfigError(f"--ca-file {args.ca_file} does not exist")
    return replace(mqtt, username=args.username or mqtt.username, password=password, ca_file=args.ca_file)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        mqtt = broker_config(args)
    except ConfigError as exc:
        print(f"relayd-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    config = TuiConfig(
        mqtt,
        key_path=args.key,
        trust_path=args.trust,
        bell=args.bell,
        dark=not args.light,
        state_dir=args.state or default_state_dir(),
    )
    try:
        loaded = load(config)
    except StartupError as exc:
        print(f"relayd-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.log:
        logging.basicConfig(filename=args.log, level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    assert config.state_dir is not None  # noqa: S101 - always set above
    try:
        lock = lock_state(config.state_dir)
    except (StateInUse, OSError) as exc:
        print(f"relayd-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Imported late: argument errors should not pay for importing Textual.
    from tui.app import RelaydApp  # noqa: PLC0415

    with lock:
        app = RelaydApp(config, signer=loaded.signer, bundle=loaded.bundle)
        app.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
