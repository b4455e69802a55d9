"""`relayd run` (the daemon) and `relayd check` (validate a config)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from relayd.cli.statelock import StateLock
from relayd.daemon.config import Config, load_config
from relayd.errors import RelaydError
from relayd.keystore import check_private_permissions, load_private_key, load_public_key
from relayd.trustfile import load_bundle

log = logging.getLogger("relayd")
# SIGTERM drains and stops within this deadline; then tasks are cancelled.
SHUTDOWN_DEADLINE_S = 5.0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the relay daemon",
        description=(
            "Run the relay: bridge its radio(s) and the MQTT broker, verify, deduplicate and put "
            "alerts on air. Logs at INFO to stderr (journald under systemd). One relayd per state "
            "folder: a second one on the same folder refuses and names the PID holding it. "
            "SIGTERM drains the queue and stops within 5 s."
        ),
    )
    run.add_argument(
        "-c", "--config", required=True, type=Path, metavar="FILE",
        help="the relay's TOML config (see config/relayd.example.toml); `relayd check` validates it",
    )  # fmt: skip
    run.set_defaults(func=cmd_run)
    check = subparsers.add_parser(
        "check",
        help="validate a config file and the files it names",
        description=(
            "Validate a relay config and the files it names (relay key, root key, trust bundle) "
            "without connecting to anything. Exit 0 and one summary line when all is well, 1 and "
            "one line per problem otherwise."
        ),
    )
    check.add_argument(
        "-c", "--config", required=True, type=Path, metavar="FILE", help="the relay's TOML config to validate"
    )
    check.set_defaults(func=cmd_check)


def validate(config: Config) -> list[str]:
    """Problems with the files a valid config names; empty when all is well."""
    problems: list[str] = []
    try:
        check_private_permissions(config.key_path)
        identity = load_private_key(config.key_path, unattended=True)
        if identity.role.value != "relay":
            problems.append(
                f"{config.path}: relay.key: {config.key_path} is a {identity.role.value} key; "
                "a relay holds only its own relay key (create one with `relayd keys new --role relay`)"
            )
    except RelaydError as exc:
        problems.append(f"{config.path}: relay.key: {exc}")
    try:
        root = load_public_key(config.root_pub)
        load_bundle(config.bundle_path, pinned_root=root.public_key)
    except RelaydError as exc:
        problems.append(f"{config.path}: trust: {exc}")
    return problems


def cmd_check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    problems = validate(config)
    for problem in problems:
        print(f"relayd: error: {problem}", file=sys.stderr)
    if problems:
        return 1
    broker = f"{config.mqtt.host}:{config.mqtt.port}"
    print(f"{args.config}: ok (relay {config.relay_id}, {len(config.radios)} radio(s), broker {broker})")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    # The daemon's log is for operators: INFO by default, -v debug, -q warnings only.
    verbose, quiet = getattr(args, "verbose", 0), getattr(args, "quiet", 0)
    logging.getLogger().setLevel(
        max(logging.DEBUG, min(logging.ERROR, logging.INFO - 10 * verbose + 10 * quiet))
    )
    problems = validate(config)
    if problems:
        for problem in problems:
            print(f"relayd: error: {problem}", file=sys.stderr)
        return 1
    with StateLock(config.state_dir):
        return asyncio.run(serve(config))


async def serve(config: Config) -> int:
    from relayd.daemon.relay import Relay  # noqa: PLC0415 - `relayd check` stays light

    os.umask(0o077)
    relay = Relay(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    interrupts = 0

    def on_signal(signum: int) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            # Second signal: the operator means it.
            os._exit(130)
        log.info("signal %d: draining", signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    runner = asyncio.create_task(relay.run(stop), name="relay")
    stopper = asyncio.create_task(stop.wait(), name="stop")
    await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if runner.done():
        runner.result()  # a crashed task group: surface its error
        return 0
    try:
        await asyncio.wait_for(asyncio.shield(runner), SHUTDOWN_DEADLINE_S)
    except TimeoutError:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner
    log.info("relay %s stopped", config.relay_id)
    return 0
