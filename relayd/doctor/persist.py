"""Doctor's persistence check: will the broker still hold the relay's queued alerts after a crash?

What can be observed is judged in relayd/core/brokersave.py. Here:

* over MQTT (any broker): whether the relay's retained status is there, read by its exact
  topic. A relay that has run leaves one (its last will at least); a missing one means the
  broker lost its retained messages since, or the relay never ran against this broker;
* on the broker's machine, when its Mosquitto config is readable (`--broker-config`, default
  /etc/mosquitto/mosquitto.conf for a broker on this host): its persistence settings, that
  the save folder exists, and the last save errors in its log file.

Nothing over MQTT says whether a save succeeded: a remote broker's disk is judged only by
what it lost, so this check says which of the two it could do.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import aiomqtt

from relayd.core.brokersave import (
    STATUS_LEFT_META,
    SaveSettings,
    assess_settings,
    parse_mosquitto_config,
    persistence_errors,
)
from relayd.core.topics import Topics
from relayd.daemon.config import MqttConfig
from relayd.doctor.broker import broker_client
from relayd.doctor.results import CheckResult, Level, fail, ok, warn

DEFAULT_MOSQUITTO_CONFIG = Path("/etc/mosquitto/mosquitto.conf")
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})
_LOG_TAIL_BYTES = 64 * 1024


def read_mosquitto_settings(path: Path) -> SaveSettings:
    """The config and the `*.conf` files of its include_dir(s), in Mosquitto's order."""
    lines = path.read_text(errors="replace").splitlines()
    settings = parse_mosquitto_config(lines)
    for folder in settings.include_dirs:
        with contextlib.suppress(OSError):
            for extra in sorted(Path(folder).glob("*.conf")):
                lines += extra.read_text(errors="replace").splitlines()
    return parse_mosquitto_config(lines)


def _log_tail(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - _LOG_TAIL_BYTES))
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def relay_has_left_status(db_path: Path) -> bool:
    """Whether this relay has left a retained status on a broker (its state database says so;
    relayd/daemon/sync.py records it). Read-only: doctor never writes the relay's state."""
    if not db_path.exists():
        return False
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=1.0)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (STATUS_LEFT_META,)).fetchone()
    except sqlite3.Error:
        return False
    return row is not None and row[0] == "1"


def assess_local_broker(path: Path, port: int) -> CheckResult | None:
    """The broker's own config and log: is it set to save, and has a save failed? None if
    the config is not for the broker on `port` (another broker on this machine)."""
    try:
        settings = read_mosquitto_settings(path)
    except OSError as exc:
        return warn("persist", f"cannot read {path}: {exc.strerror or exc}", "run doctor as root")
    if port not in settings.ports:
        return None
    verdict = assess_settings(settings)
    if not verdict.ok:
        return fail("persist", f"{path}: {verdict.detail}", verdict.fix or "")
    if settings.location is not None and not Path(settings.location).is_dir():
        return fail(
            "persist",
            f"{path}: persistence_location {settings.location} does not exist: nothing can be saved",
            f"create it, owned by the broker's user: install -d -o mosquitto {settings.location}",
        )
    for log_file in settings.log_files:
        errors = persistence_errors(_log_tail(Path(log_file)))
        if errors:
            return fail(
                "persist",
                f"the broker's log says it cannot save: {errors[-1]}",
                "free space on / check ownership of the persistence_location "
                "(the broker's user must write it), then restart mosquitto",
            )
    return ok("persist", f"{path}: {verdict.detail}")


async def probe_retained_status(
    mqtt: MqttConfig, relay_id: str, timeout_s: float, *, has_run: bool
) -> CheckResult:
    """Is the relay's retained status on the broker? (Read by its exact topic: brokers that
    do not deliver retained messages through wildcards still answer this.)"""
    topic = Topics(mqtt.topic_root).status(relay_id)
    try:
        async with asyncio.timeout(timeout_s + 1.0), broker_client(mqtt, relay_id, timeout_s) as client:
            await client.subscribe(topic, qos=1)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(timeout_s, 2.0)):
                    async for message in client.messages:
                        if message.retain and message.payload:
                            return ok("persist", f"the broker holds this relay's retained status ({topic})")
    except (aiomqtt.MqttError, TimeoutError):
        return warn("persist", "not checked: the broker is unavailable", "see the broker check")
    if not has_run:
        return ok("persist", "no retained status yet: this relay has not run against a broker")
    return warn(
        "persist",
        f"no retained status for this relay on the broker ({topic}), though the relay left "
        "one: unless it moved brokers, the broker lost its retained messages - and with them the queued "
        "alerts of offline relays - since (restarted without persistence, or could not save)",
        "run doctor on the broker's machine (--broker-config), or read the broker's log",
    )


async def check_persistence(
    mqtt: MqttConfig, relay_id: str, timeout_s: float, broker_config: Path | None, db_path: Path
) -> CheckResult:
    local_default = mqtt.host in _LOOPBACK and DEFAULT_MOSQUITTO_CONFIG.exists()  # noqa: ASYNC240 - a stat
    if broker_config is None and local_default:
        broker_config = DEFAULT_MOSQUITTO_CONFIG
    remote = await probe_retained_status(mqtt, relay_id, timeout_s, has_run=relay_has_left_status(db_path))
    if broker_config is None:
        return remote
    local = assess_local_broker(broker_config, mqtt.port)
    if local is None:
        return remote
    if local.level is not Level.OK:
        return local
    # Set to save, and no save error logged: a missing status is a relay that moved brokers.
    return ok("persist", f"{local.detail}; {remote.detail.split(':', 1)[0]}")
