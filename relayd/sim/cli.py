"""``relayd sim SCENARIO.toml``: run a simulated neighborhood until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

from relayd.sim.control import ControlServer
from relayd.sim.fwbackend import FirmwareNeighborhood
from relayd.sim.neighborhood import Neighborhood
from relayd.sim.scenario import Scenario, ScenarioError, load_scenario


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "sim",
        help="run a simulated neighborhood of Meshtastic radios",
        description="Run virtual Meshtastic radios that speak the real device API (TCP and pty) over a "
        "modelled LoRa medium. Runs until SIGINT/SIGTERM.",
    )
    add_arguments(p)
    p.set_defaults(func=run_from_args)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", type=Path, help="scenario TOML file (see config/sim/)")
    p.add_argument(
        "--time-scale",
        type=float,
        default=1.0,
        help="sim seconds per wall second (10 = ten times faster; 0 = as fast as possible)",
    )
    p.add_argument("--handheld-log", type=Path, default=None, help="append what handhelds display (JSONL)")
    p.add_argument("--summary", action="store_true", help="print medium counters at exit")
    p.add_argument(
        "--control-port", type=int, default=None, help="JSON-lines control port on 127.0.0.1 (0 = free)"
    )
    p.add_argument(
        "--firmware",
        type=Path,
        default=None,
        metavar="PATH",
        help="run every radio on the real Meshtastic firmware: PATH is meshtasticd (Linux native build, "
        "SimRadio); relayd's medium carries the frames between them. Wall time only (time scale 1).",
    )


def run_from_args(args: argparse.Namespace) -> int:
    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"relayd sim: {exc}", file=sys.stderr)
        return 2
    if args.time_scale < 0:
        print("relayd sim: --time-scale must be >= 0", file=sys.stderr)
        return 2
    if args.firmware is not None:
        if args.time_scale != 1.0:
            print("relayd sim: --firmware runs in wall time; leave --time-scale at 1", file=sys.stderr)
            return 2
        if args.control_port is not None:
            print("relayd sim: --control-port is not available with --firmware", file=sys.stderr)
            return 2
        if not (args.firmware.is_file() and os.access(args.firmware, os.X_OK)):
            print(f"relayd sim: --firmware {args.firmware}: not an executable meshtasticd", file=sys.stderr)
            return 2
        return asyncio.run(_serve_firmware(scenario, args))
    return asyncio.run(_serve(scenario, args))


async def _serve_firmware(scenario: Scenario, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"relayd sim: starting {len(scenario.nodes)} meshtasticd nodes ({args.firmware})", flush=True)
    async with FirmwareNeighborhood(
        scenario, binary=args.firmware.resolve(), handheld_log_path=args.handheld_log
    ) as hood:
        print(f"relayd sim: scenario {scenario.name!r} ({scenario.preset.name}) on real firmware")
        for ep in hood.endpoints.values():
            print("  " + ep.describe())
        print("ready", flush=True)
        try:
            await stop.wait()
        finally:
            if args.summary:
                print(hood.summary(), flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    return 0


async def _serve(scenario: Scenario, args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with Neighborhood(
        scenario, time_scale=args.time_scale, handheld_log_path=args.handheld_log
    ) as hood:
        control: ControlServer | None = None
        if args.control_port is not None:
            control = ControlServer(hood, port=args.control_port)
            await control.start()
        print(
            f"relayd sim: scenario {scenario.name!r} ({scenario.preset.name}, time scale {args.time_scale:g})"
        )
        for ep in hood.endpoints.values():
            print("  " + ep.describe())
        if control is not None:
            print(f"  control port 127.0.0.1:{control.port}")
        print("ready", flush=True)
        try:
            await stop.wait()
        finally:
            if control is not None:
                await control.stop()
            if args.summary:
                print(hood.summary(), flush=True)
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(sig)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relayd sim")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
