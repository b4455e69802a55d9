"""`relayd doctor`: check that a relay can work, one line per check, each with its fix.

Checks, in output order:

* ``device``  the radio's device node exists and this user may open it (serial), or the radio
  accepts a TCP connection;
* ``radio``   the device API handshake completes (want_config_id -> config_complete_id), with the
  radio's node id and firmware version;
* ``broker``  the broker answers, and accepts the configured credentials (and TLS);
* ``key``     the relay key is 0600, owned by the service user, role ``relay``, listed in the bundle;
* ``trust``   the bundle verifies against the pinned root, and is not expired or about to expire;
* ``clock``   the system clock is plausible (relayd.core.clockrule);
* ``disk``    the state directory is writable and has room.

The assessments (`assess_*`) are pure functions of values; the probes around them do the I/O.
The radio and broker probes run concurrently, each bounded by a timeout, so a dead radio and a
dead broker cost one timeout, not two.

Doctor connects to the radio and the broker as a separate client: a broker session with its
own client id (never the relay's persistent session, which it would otherwise take over), and a
radio connection that a running relay may lose for a moment (the firmware's TCP API serves one
client at a time; relayd reconnects by itself). A serial radio held open by a running relay
is reported as busy, which is a warning, not a failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import grp
import json
import os
import pwd
import shutil
import ssl
import stat
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiomqtt

from relayd import BUILD_EPOCH_S
from relayd.core.clockrule import assess_clock
from relayd.core.model import Role
from relayd.core.trust import TrustBundle, should_replace
from relayd.daemon.config import Config, MqttConfig, RadioConfig
from relayd.errors import RelaydError
from relayd.keystore import load_private_key, load_public_key
from relayd.meshapi.framing import START2, StreamDecoder, encode_frame
from relayd.meshapi.packets import (
    MalformedMessageError,
    from_radio_variant,
    node_id,
    parse_from_radio,
    to_radio_disconnect,
    to_radio_want_config,
)
from relayd.trustfile import load_bundle

DEFAULT_TIMEOUT_S = 5.0
# A trust bundle this close to expiry is a warning: there is still time to get a new one.
BUNDLE_WARN_S = 14 * 86400.0
DISK_WARN_BYTES = 100 * 1024 * 1024
DISK_FAIL_BYTES = 10 * 1024 * 1024
# The account the systemd unit runs relayd as (config/systemd/relayd.service, User=relayd).
SERVICE_USER = "relayd"
# The official client sends this many START2 bytes to wake a sleeping serial API before its
# first frame; the firmware's stream decoder skips them.
_SERIAL_WAKE_BYTES = 32
# CONNACK return codes (MQTT 3.1.1 section 3.2.2.3) and their MQTT 5 reason codes.
_MQTT_BAD_CREDENTIALS = frozenset({4, 134})
_MQTT_NOT_AUTHORIZED = frozenset({5, 135})


class Level(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True)
class CheckResult:
    check: str
    level: Level
    detail: str
    fix: str | None = None

    def line(self) -> str:
        text = f"{self.level.value:<5} {self.check:<10} {self.detail}"
        return f"{text} — {self.fix}" if self.fix else text

    def to_json(self) -> dict[str, str | None]:
        return {"check": self.check, "level": self.level.value, "detail": self.detail, "fix": self.fix}


def ok(check: str, detail: str) -> CheckResult:
    return CheckResult(check, Level.OK, detail)


def warn(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, Level.WARN, detail, fix)


def fail(check: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(check, Level.FAIL, detail, fix)


def exit_code(results: list[CheckResult]) -> int:
    return 1 if any(r.level is Level.FAIL for r in results) else 0


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _days(seconds: float) -> str:
    days = seconds / 86400.0
    return f"{days:.0f} days" if days >= 2 else f"{seconds / 3600.0:.0f} hours"


# --- radio -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RadioInfo:
    node: int | None
    firmware: str | None


class Handshake:
    """The device API handshake as a sans-I/O state machine: feed it bytes, ask if it is done."""

    def __init__(self, nonce: int) -> None:
        self.nonce = nonce
        self._decoder = StreamDecoder()
        self.node: int | None = None
        self.firmware: str | None = None
        self.complete = False

    def request(self) -> bytes:
        return encode_frame(to_radio_want_config(self.nonce))

    def feed(self, data: bytes) -> bool:
        for frame in self._decoder.feed(data):
            try:
                msg = parse_from_radio(frame)
            except MalformedMessageError:
                continue
            variant = from_radio_variant(msg)
            if variant == "my_info":
                self.node = int(msg.my_info.my_node_num)
            elif variant == "metadata":
                self.firmware = str(msg.metadata.firmware_version) or None
            elif variant == "config_complete_id" and int(msg.config_complete_id) == self.nonce:
                self.complete = True
        return self.complete

    @property
    def info(self) -> RadioInfo:
        return RadioInfo(self.node, self.firmware)


class HandshakeTimeoutError(Exception):
    """The radio answered too little (or nothing) within the timeout."""


def assess_serial_device(device: str) -> CheckResult:
    """Does the device node exist, is it a character device, may this user open it?"""
    path = Path(device)
    label = f"serial:{device}"
    try:
        st = path.stat()
    except FileNotFoundError:
        dangling = " (a dangling symlink)" if path.is_symlink() else ""
        return fail(
            "device",
            f"{label} does not exist{dangling}",
            "plug the radio in; `ls -l /dev/meshradio /dev/ttyUSB* /dev/ttyACM*`; "
            "install hardware/udev/99-meshradio.rules (docs/deployment.md, section 4)",
        )
    except PermissionError:
        return fail("device", f"{label}: cannot stat it", f"check the permissions of {path.parent}")
    if not stat.S_ISCHR(st.st_mode):
        return fail(
            "device",
            f"{label} is not a character device (a serial port or pty)",
            "point [[radio]] device at the radio's tty, e.g. serial:///dev/meshradio",
        )
    if not os.access(path, os.R_OK | os.W_OK):
        group = _group_name(st.st_gid)
        return fail(
            "device",
            f"{label} is not readable and writable by this user (owner group {group})",
            f"sudo usermod -aG {group} $USER (then log in again); the service gets it via "
            "SupplementaryGroups=dialout",
        )
    return ok("device", f"{label} is a character device, readable and writable")


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)


async def tcp_handshake(host: str, port: int, timeout_s: float, nonce: int) -> RadioInfo:
    """Connect, send want_config_id and read until config_complete_id. Raises OSError/timeout."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
    try:
        shake = Handshake(nonce)
        writer.write(shake.request())
        await writer.drain()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    data = await reader.read(4096)
                    if not data:
                        raise ConnectionResetError("the radio closed the connection during the handshake")
                    if shake.feed(data):
                        break
        except TimeoutError:
            raise HandshakeTimeoutError from None
        with contextlib.suppress(OSError):
            # Tell the firmware we are done, so it frees the API for the relay at once.
            writer.write(encode_frame(to_radio_disconnect()))
            await writer.drain()
        return shake.info
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class SerialBusyError(Exception):
    """Another process (a running relay, most likely) holds the serial port."""


async def serial_handshake(device: str, timeout_s: float, nonce: int) -> RadioInfo:
    import serial  # noqa: PLC0415 - pyserial only for serial radios

    try:
        port = serial.Serial(device, baudrate=115200, timeout=0, write_timeout=0, exclusive=True)
    except serial.SerialException as exc:
        # pyserial's `exclusive` lock (flock) held by another process, or a busy tty.
        if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EBUSY):
            raise SerialBusyError from exc
        raise ConnectionError(f"cannot open {device}") from exc
    loop = asyncio.get_running_loop()
    fd: int = port.fileno()
    chunks: asyncio.Queue[bytes] = asyncio.Queue()

    def readable() -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
        chunks.put_nowait(data)

    loop.add_reader(fd, readable)
    try:
        shake = Handshake(nonce)
        os.write(fd, bytes([START2]) * _SERIAL_WAKE_BYTES + shake.request())
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    data = await chunks.get()
                    if not data:
                        raise ConnectionResetError("the serial port went away during the handshake")
                    if shake.feed(data):
                        return shake.info
        except TimeoutError:
            raise HandshakeTimeoutError from None
    finally:
        with contextlib.suppress(Exception):
            loop.remove_reader(fd)
        with contextlib.suppress(OSError):
            port.close()


def _radio_ok(radio: RadioConfig, info: RadioInfo) -> CheckResult:
    node = node_id(info.node) if info.node is not None else "unknown"
    firmware = info.firmware or "unknown"
    return ok("radio", f"{radio.label} handshake complete (node {node}, firmware {firmware})")


async def check_radio(radio: RadioConfig, timeout_s: float) -> list[CheckResult]:
    nonce = int.from_bytes(os.urandom(4), "big") or 1
    if radio.kind == "serial":
        access = assess_serial_device(radio.device)
        if access.level is Level.FAIL:
            return [access, fail("radio", f"{radio.label} handshake not tried", "fix the device first")]
        try:
            info = await serial_handshake(radio.device, timeout_s, nonce)
        except SerialBusyError:
            return [
                access,
                warn(
                    "radio",
                    f"{radio.label} is in use by another process (a running relay?)",
                    "fine if relayd is running (`systemctl status relayd`); "
                    "to test the radio itself: sudo systemctl stop relayd, then run doctor again",
                ),
            ]
        except HandshakeTimeoutError:
            return [access, _no_handshake(radio, timeout_s)]
        except (OSError, ConnectionError) as exc:
            return [
                access,
                fail("radio", f"{radio.label}: {exc}", "unplug and replug the radio; check `dmesg | tail`"),
            ]
        return [access, _radio_ok(radio, info)]
    where = f"{radio.host}:{radio.port}"
    try:
        info = await tcp_handshake(radio.host, radio.port, timeout_s, nonce)
    except ConnectionRefusedError:
        return [
            fail(
                "device",
                f"{radio.label} connection refused",
                f"is the radio on and its Wi-Fi/Ethernet API enabled? `ping {radio.host}`; "
                "the API port is 4403",
            ),
            fail("radio", f"{radio.label} handshake not tried", "fix the connection first"),
        ]
    except HandshakeTimeoutError:
        return [ok("device", f"{where} accepts TCP connections"), _no_handshake(radio, timeout_s)]
    except TimeoutError:
        return [
            fail(
                "device",
                f"{radio.label} no answer within {timeout_s:g} s",
                f"wrong address or a firewall? `ping {radio.host}`",
            ),
            fail("radio", f"{radio.label} handshake not tried", "fix the connection first"),
        ]
    except OSError as exc:
        return [
            fail("device", f"{radio.label} cannot connect: {exc.strerror or exc}", "check the address"),
            fail("radio", f"{radio.label} handshake not tried", "fix the connection first"),
        ]
    return [ok("device", f"{where} accepts TCP connections"), _radio_ok(radio, info)]


def _no_handshake(radio: RadioConfig, timeout_s: float) -> CheckResult:
    return fail(
        "radio",
        f"{radio.label} did not complete the API handshake within {timeout_s:g} s",
        "is it a Meshtastic radio with current firmware? Reboot it; "
        "another client (the phone app over Bluetooth, `meshtastic`) may be attached",
    )


# --- broker ----------------------------------------------------------------------------------


def _broker_client(mqtt: MqttConfig, relay_id: str, timeout_s: float) -> aiomqtt.Client:
    tls = (
        aiomqtt.TLSParameters(
            ca_certs=str(mqtt.ca_file) if mqtt.ca_file else None, cert_reqs=ssl.CERT_REQUIRED
        )
        if mqtt.tls
        else None
    )
    return aiomqtt.Client(
        mqtt.host,
        mqtt.port,
        username=mqtt.username,
        password=mqtt.password,
        # Never the relay's own client id: connecting with it would take over (and, with a clean
        # session, wipe) the persistent session that queues alerts for the relay.
        identifier=f"relayd-doctor-{relay_id}-{uuid.uuid4().hex[:8]}",
        clean_session=True,
        protocol=aiomqtt.ProtocolVersion.V311,
        tls_params=tls,
        timeout=timeout_s,
    )


async def check_broker(mqtt: MqttConfig, relay_id: str, timeout_s: float) -> CheckResult:
    where = f"{mqtt.host}:{mqtt.port}"
    scheme = "mqtts" if mqtt.tls else "mqtt"
    # A plain TCP connect first: aiomqtt folds every socket error into one MqttError, so the
    # difference between "refused" and "no answer" is only visible here.
    try:
        async with asyncio.timeout(timeout_s):
            _, writer = await asyncio.open_connection(mqtt.host, mqtt.port)
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    except ConnectionRefusedError:
        return fail(
            "broker",
            f"{where} connection refused",
            "is mosquitto running? systemctl status mosquitto; check [mqtt] url",
        )
    except TimeoutError:
        return fail(
            "broker",
            f"{where} no answer within {timeout_s:g} s",
            "wrong host or a firewall in between? check [mqtt] url and `ping`",
        )
    except OSError as exc:
        return fail("broker", f"{where} cannot connect: {exc.strerror or exc}", "check [mqtt] url")
    user = mqtt.username or "(anonymous)"
    try:
        async with asyncio.timeout(timeout_s + 1.0):
            async with _broker_client(mqtt, relay_id, timeout_s):
                pass
    except aiomqtt.MqttCodeError as exc:
        code = exc.rc if isinstance(exc.rc, int) else getattr(exc.rc, "value", None)
        if code in _MQTT_BAD_CREDENTIALS or code in _MQTT_NOT_AUTHORIZED:
            what = "bad username or password" if code in _MQTT_BAD_CREDENTIALS else "not authorized"
            return fail(
                "broker",
                f"{where} refused user {user}: CONNACK {what}",
                "check [mqtt] username and password_file against the broker's password file "
                "(mosquitto_passwd), then sudo systemctl reload mosquitto",
            )
        return fail("broker", f"{where} refused the connection: {exc}", "read the broker's log")
    except (aiomqtt.MqttError, TimeoutError):
        hint = (
            "is it a TLS port? check ca_file and the certificate's host name"
            if mqtt.tls
            else "is it a TLS port (use mqtts://) or not an MQTT broker?"
        )
        return fail("broker", f"{where} accepted TCP but no MQTT CONNACK within {timeout_s:g} s", hint)
    return ok("broker", f"{scheme}://{where} connected as {user}")


# --- key, trust, clock, disk -----------------------------------------------------------------


def _expected_owner() -> tuple[int, str]:
    """The uid a relay key should belong to: the service user when run as root, else us."""
    uid = os.geteuid()
    if uid == 0:
        with contextlib.suppress(KeyError):
            entry = pwd.getpwnam(SERVICE_USER)
            return entry.pw_uid, SERVICE_USER
    try:
        return uid, pwd.getpwuid(uid).pw_name
    except KeyError:
        return uid, str(uid)


def check_key(config: Config, bundle: TrustBundle | None) -> CheckResult:
    path = config.key_path
    try:
        st = path.stat()
    except FileNotFoundError:
        return fail(
            "key",
            f"{path} does not exist",
            "create it: relayd setup, or relayd keys new --role relay --name "
            f"{config.relay_id} --out {path.parent}",
        )
    except OSError as exc:
        return fail("key", f"{path}: {exc.strerror}", "check the key's directory permissions")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return fail(
            "key",
            f"{path} has permissions {mode:04o}; a private key must be readable by its owner only",
            f"chmod 600 {path}",
        )
    try:
        identity = load_private_key(path, unattended=True)
    except RelaydError as exc:
        return fail("key", str(exc), "restore the key or create a new one and `relayd trust add` it")
    if identity.role is not Role.RELAY:
        return fail(
            "key",
            f"{path} is a {identity.role.value} key; a relay holds only its own relay key",
            f"relayd keys new --role relay --name {config.relay_id} --out {path.parent}",
        )
    key_id = identity.key_id.hex()
    uid, owner = _expected_owner()
    if st.st_uid != uid:
        return warn(
            "key",
            f"{path} is owned by uid {st.st_uid}, not {owner}: relayd running as {owner} cannot read it",
            f"sudo chown {owner}: {path}",
        )
    if bundle is not None:
        if bundle.is_revoked(identity.key_id):
            return fail(
                "key",
                f"relay key {key_id} is revoked in the trust bundle",
                "this relay needs a new key: relayd keys new --role relay, then `relayd trust add` it",
            )
        if bundle.key(identity.key_id) is None:
            return warn(
                "key",
                f"relay key {key_id} ({path}) is not in the trust bundle: peers will drop its reports",
                f"send {path.with_suffix('.pub')} to your admin: relayd trust add --role relay --pub ...",
            )
    return ok("key", f"{path} 0600 {owner}, role relay, key id {key_id}")


def check_trust(config: Config, now_s: float) -> tuple[CheckResult, TrustBundle | None]:
    try:
        root = load_public_key(config.root_pub)
    except RelaydError as exc:
        return fail("trust", str(exc), "copy the network root's .pub file from your admin"), None
    try:
        signed = load_bundle(config.bundle_path, pinned_root=root.public_key)
    except RelaydError as exc:
        return fail("trust", str(exc), "get the current bundle from your admin (relayd trust show)"), None
    bundle, path = signed.bundle, config.bundle_path
    # Like the daemon: a newer bundle received over MQTT and kept in the state directory wins.
    saved_path = config.state_dir / "trust.json"
    with contextlib.suppress(RelaydError):
        if saved_path.exists():
            saved = load_bundle(saved_path, pinned_root=root.public_key).bundle
            if should_replace(bundle, saved) is None:
                bundle, path = saved, saved_path
    return assess_bundle(bundle, path, now_s), bundle


def assess_bundle(bundle: TrustBundle, path: Path, now_s: float) -> CheckResult:
    summary = f"{path} version {bundle.version}, {len(bundle.keys)} keys, root {bundle.root_key_id.hex()}"
    left_s = bundle.expires_at_s - now_s
    fix = "ask your admin for a renewed bundle (relayd trust init/add re-signs it) and publish it"
    if left_s <= 0:
        return fail("trust", f"{summary}: expired {_iso(bundle.expires_at_s)}", fix)
    if left_s < BUNDLE_WARN_S:
        return warn("trust", f"{summary}: expires {_iso(bundle.expires_at_s)}, in {_days(left_s)}", fix)
    return ok("trust", f"{summary}, signature valid, expires {_iso(bundle.expires_at_s)}")


def assess_clock_check(now_s: float, skew_s: float, bundle: TrustBundle | None) -> CheckResult:
    # The bundle's issue time is a root-signed lower bound on the real time, like the newest
    # verified alert the daemon uses.
    newest = float(bundle.issued_at_s) if bundle is not None else None
    verdict = assess_clock(now_s, BUILD_EPOCH_S, newest, skew_s)
    if not verdict.plausible:
        return fail(
            "clock",
            f"system clock reads {_iso(now_s)}: {verdict.warning}",
            "timedatectl; sudo systemctl restart systemd-timesyncd; without internet, fit an RTC",
        )
    return ok("clock", f"{_iso(now_s)} is plausible (after this build's date {_iso(BUILD_EPOCH_S)})")


def assess_disk(path: Path, free_bytes: int) -> CheckResult:
    free_mb = free_bytes / (1024 * 1024)
    fix = f"free space on the file system of {path} (journal: journalctl --vacuum-size=16M)"
    if free_bytes < DISK_FAIL_BYTES:
        return fail("disk", f"{path} writable, only {free_mb:.1f} MB free", fix)
    if free_bytes < DISK_WARN_BYTES:
        return warn("disk", f"{path} writable, only {free_mb:.0f} MB free", fix)
    return ok("disk", f"{path} writable, {free_mb:.0f} MB free")


def check_disk(state_dir: Path) -> CheckResult:
    if not state_dir.is_dir():
        return fail(
            "disk",
            f"state directory {state_dir} does not exist",
            f"sudo install -d -o {SERVICE_USER} -g {SERVICE_USER} -m 0700 {state_dir} "
            "(the systemd unit's StateDirectory= also creates it)",
        )
    try:
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".doctor-"):
            pass
    except OSError as exc:
        return fail(
            "disk",
            f"state directory {state_dir} is not writable: {exc.strerror}",
            f"sudo chown {SERVICE_USER}: {state_dir}; read-only file system? `findmnt -T {state_dir}`",
        )
    return assess_disk(state_dir, shutil.disk_usage(state_dir).free)


# --- all together ----------------------------------------------------------------------------


async def run_checks(
    config: Config, *, now_s: float | None = None, timeout_s: float = DEFAULT_TIMEOUT_S
) -> list[CheckResult]:
    """Every check for `config`, in output order. `now_s` overrides the clock (for tests)."""
    now = time.time() if now_s is None else now_s
    radio_checks = [check_radio(radio, timeout_s) for radio in config.radios]
    broker = asyncio.create_task(check_broker(config.mqtt, config.relay_id, timeout_s))
    radios = await asyncio.gather(*radio_checks)
    trust, bundle = check_trust(config, now)
    results = [r for group in radios for r in group]
    results.append(await broker)
    results.append(check_key(config, bundle))
    results.append(trust)
    results.append(assess_clock_check(now, config.clock_skew_s, bundle))
    results.append(check_disk(config.state_dir))
    return results


def render_text(results: list[CheckResult]) -> str:
    return "\n".join(r.line() for r in results)


def render_json(results: list[CheckResult]) -> str:
    doc = {"ok": exit_code(results) == 0, "checks": [r.to_json() for r in results]}
    return json.dumps(doc, indent=2, ensure_ascii=False)
