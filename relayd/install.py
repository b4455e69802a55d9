"""`relayd setup`: install a relay on a Raspberry Pi in one command.

    sudo /opt/relayd/venv/bin/relayd setup --relay-id relay-north --root-pub root.pub --bundle trust.json

writes /etc/relayd/relayd.toml, copies the network root's public key and the trust bundle next to
it, creates the MQTT password file (if missing) and the relay's signing key (0600, in the state
directory), installs the systemd unit and enables it. Every path is an option, so tests (and
unusual layouts) can install into any directory.

The work is split into a plan (`plan_setup`: pure, validated, nothing written) and its
application (`apply_plan`), which is what `--dry-run` shows.

Overwriting: an existing config, bundle or unit is replaced only with `--force`. An existing key
is never replaced, not even with `--force` (it is kept and reused): replacing a relay key means
revoking the old one in the trust bundle, which is a deliberate act (delete the key first).
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from relayd.core.identity import Identity
from relayd.core.model import Role
from relayd.core.topics import valid_relay_id
from relayd.daemon.config import load_config
from relayd.errors import RelaydError
from relayd.keystore import load_private_key, load_public_key, write_private_key, write_public_key
from relayd.trustfile import load_bundle

DEFAULT_ETC = Path("/etc/relayd")
DEFAULT_STATE = Path("/var/lib/relayd")
DEFAULT_UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_DEVICE = "serial:///dev/meshradio"
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
DEFAULT_USER = "relayd"
# Where docs/deployment.md installs relayd; the unit's ExecStart points here by default.
DEFAULT_RELAYD_BIN = Path("/opt/relayd/venv/bin/relayd")
UNIT_NAME = "relayd.service"
# The ExecStart line of UNIT_TEMPLATE that `render_unit` rewrites.
_EXEC_START = "ExecStart=/opt/relayd/venv/bin/relayd run -c /etc/relayd/relayd.toml\n"

# A copy of config/systemd/relayd.service, kept identical by tests/deploy/test_setup.py. It
# lives here as a string so that an installed wheel carries it (package data is TOML only).
UNIT_TEMPLATE = """\
# relayd: signed-alert relay between a Meshtastic LoRa radio and MQTT.
#
# Installed by `relayd setup` (or by hand: copy to /etc/systemd/system/, then
# `systemctl daemon-reload && systemctl enable --now relayd`). See docs/deployment.md.
#
# Local changes belong in a drop-in (`systemctl edit relayd`), not in this file, so that
# upgrades can replace it. Check the sandbox with `systemd-analyze security relayd`.

[Unit]
Description=relayd mesh alert relay
# The local broker should be up first; relayd still reconnects by itself (with backoff) if it
# is not, and queues accepted alerts in SQLite meanwhile, so this is ordering, not a hard need.
After=network-online.target mosquitto.service
Wants=network-online.target

[Service]
# relayd sends READY=1 once its store is open and its tasks are started (radio and broker links
# then connect and reconnect on their own), and WATCHDOG=1 from its event loop every
# WatchdogSec/2 (15 s). A wedged event loop stops the pings, and systemd restarts the service.
Type=notify
NotifyAccess=main
WatchdogSec=30
ExecStart=/opt/relayd/venv/bin/relayd run -c /etc/relayd/relayd.toml
Restart=on-failure
RestartSec=5
# SIGTERM starts a graceful shutdown (flush the outbox to SQLite, publish "offline", close the
# radio); after 10 s systemd sends SIGKILL. SQLite WAL keeps the store consistent even then.
TimeoutStopSec=10
# The venv is read-only under ProtectSystem=strict; don't try to write __pycache__ into it.
Environment=PYTHONDONTWRITEBYTECODE=1

# --- identity and files ---------------------------------------------------------------------
User=relayd
Group=relayd
# dialout owns /dev/ttyUSB*, /dev/ttyACM* and the /dev/meshradio symlink's target (see
# hardware/udev/99-meshradio.rules).
SupplementaryGroups=dialout
# /var/lib/relayd: the relay key (0600), the SQLite store (WAL) with dedup state and the outbox.
StateDirectory=relayd
StateDirectoryMode=0700
# /etc/relayd: relayd.toml, the MQTT password file and the network root's public key.
# Read-only for the service. Unlike StateDirectory, systemd leaves it owned by root (mode 0755);
# the secrets in it are protected by their own modes: root:relayd 0640.
ConfigurationDirectory=relayd
# No LogsDirectory: relayd logs to stderr, which journald collects (in RAM with Storage=volatile).
UMask=0077

# --- sandbox ----------------------------------------------------------------------------------
NoNewPrivileges=true
CapabilityBoundingSet=
AmbientCapabilities=
ProtectSystem=strict
ProtectHome=true
PrivateTmp=true
ProtectKernelTunables=true
ProtectKernelModules=true
ProtectKernelLogs=true
ProtectControlGroups=true
ProtectClock=true
ProtectHostname=true
ProtectProc=invisible
# Not ProcSubset=pid: prometheus_client's process collector reads /proc/stat (boot time).
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=true
RestrictRealtime=true
RestrictSUIDSGID=true
LockPersonality=true
RemoveIPC=true
# Safe for relayd's dependency set: PyNaCl is a cffi *API-mode* extension (no ffi.callback, which
# is the one cffi feature that needs W+X memory), protobuf's upb and sqlite3 are plain C, CPython
# 3.11-3.13 has no JIT enabled by default, and ctypes callbacks use libffi's static trampolines
# (libffi >= 3.4, Bookworm ships 3.4.4). tests/deploy verifies this by running the imports and a
# sign/verify under the kernel's equivalent PR_SET_MDWE. If a future dependency fails with
# "Cannot allocate write+execute memory", override this in a drop-in rather than here.
MemoryDenyWriteExecute=true
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
# Not PrivateUsers=true: inside a user namespace the dialout group is unmapped and access to the
# radio's device node becomes unreliable. Not PrivateDevices=true: it hides the tty devices.

# --- devices ----------------------------------------------------------------------------------
# DevicePolicy=closed still allows /dev/null, /dev/zero, /dev/random, /dev/urandom, /dev/full, ...
DevicePolicy=closed
# A path in DeviceAllow is resolved to major:minor when the service *starts*: if the radio is
# unplugged at that moment the rule silently matches nothing, and a radio replugged later (it
# may also come back as ttyUSB1) would be refused. The char-* rules allow the whole USB-serial
# (ttyUSB: CP210x, CH34x, CH9102) and CDC-ACM (ttyACM: nRF52, ESP32-S3 native USB) majors, so
# hot-plug keeps working; file permissions (group dialout) still apply on top.
DeviceAllow=/dev/meshradio rw
DeviceAllow=char-ttyUSB rw
DeviceAllow=char-ttyACM rw

# --- resources --------------------------------------------------------------------------------
# A Pi Zero 2 W has 512 MB. relayd normally needs ~60-90 MB; cap it so a leak cannot take the
# local broker (and SSH) down with it. systemd restarts the service if it is killed.
MemoryHigh=192M
MemoryMax=256M
TasksMax=64

[Install]
WantedBy=multi-user.target
"""


class SetupError(RelaydError):
    """`relayd setup` cannot go on; the message says why and what to do."""


def render_unit(relayd_bin: Path, config_path: Path) -> str:
    """The unit with ExecStart pointing at this relayd and this config."""
    if _EXEC_START not in UNIT_TEMPLATE:  # pragma: no cover - guarded by a test
        raise SetupError("the built-in unit has no ExecStart line to rewrite")
    return UNIT_TEMPLATE.replace(_EXEC_START, f"ExecStart={relayd_bin} run -c {config_path}\n")


def _toml_str(value: str) -> str:
    # JSON string escapes are a subset of TOML basic-string escapes.
    return json.dumps(value, ensure_ascii=False)


def render_config(
    *,
    relay_id: str,
    key_path: Path,
    state_dir: Path,
    root_pub: Path,
    bundle: Path,
    device: str,
    broker: str,
    mqtt_user: str,
    password_file: Path,
) -> str:
    return f"""\
# relayd configuration, written by `relayd setup`. Every setting, with its default and what it
# does: config/relayd.example.toml in the relayd repository (and docs/daemon.md).
# Check it with: relayd check -c THIS_FILE && relayd doctor -c THIS_FILE

[relay]
# = the MQTT username with the shipped broker ACL; unique city-wide
id = {_toml_str(relay_id)}
# the key, relayd.sqlite3 (WAL), newer trust bundles
state_dir = {_toml_str(str(state_dir))}
key = {_toml_str(str(key_path))}

[trust]
# the network root's public key (pinned)
root = {_toml_str(str(root_pub))}
# newer bundles arrive on relayd/trust and are kept in state_dir
bundle = {_toml_str(str(bundle))}

[[radio]]
name = "main"
# or "tcp://10.0.0.23:4403" for a radio on Wi-Fi
device = {_toml_str(device)}

[mqtt]
url = {_toml_str(broker)}
username = {_toml_str(mqtt_user)}
password_file = {_toml_str(str(password_file))}
"""


@dataclass(frozen=True, slots=True)
class SetupOptions:
    relay_id: str
    root_pub: Path
    bundle: Path
    device: str = DEFAULT_DEVICE
    broker: str = DEFAULT_BROKER
    mqtt_user: str | None = None
    password_file: Path | None = None
    etc: Path = DEFAULT_ETC
    state: Path = DEFAULT_STATE
    unit_dir: Path = DEFAULT_UNIT_DIR
    relayd_bin: Path = DEFAULT_RELAYD_BIN
    user: str = DEFAULT_USER
    force: bool = False
    enable: bool = True


@dataclass(frozen=True, slots=True)
class FileAction:
    """Write `content` to `path` with `mode`; `private` files belong to the service user."""

    path: Path
    content: bytes
    mode: int
    owner: str  # "root", "service" (the service user) or "root:service" (root, service's group)
    what: str


@dataclass
class Plan:
    options: SetupOptions
    config_path: Path
    key_path: Path
    pub_path: Path
    password_file: Path
    dirs: list[tuple[Path, int, str]] = field(default_factory=list)
    files: list[FileAction] = field(default_factory=list)
    identity: Identity | None = None  # None: an existing key is kept
    existing_key_id: str | None = None
    new_password: bool = False
    create_user: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def key_id(self) -> str:
        if self.identity is not None:
            return self.identity.key_id.hex()
        return self.existing_key_id or "?"

    def describe(self) -> list[str]:
        lines = []
        if self.create_user:
            lines.append(f"create system user {self.options.user} (group {self.options.user}, in dialout)")
        lines += [f"create directory {p} ({mode:04o} {self._owner_label(o)})" for p, mode, o in self.dirs]
        if self.identity is not None:
            lines.append(f"create relay key {self.key_path} (0600 {self.options.user}) and {self.pub_path}")
        else:
            lines.append(f"keep existing relay key {self.key_path} (key id {self.key_id})")
        for action in self.files:
            lines.append(
                f"write {action.path} ({action.mode:04o} {self._owner_label(action.owner)}): {action.what}"
            )
        if self.will_enable:
            lines.append(f"systemctl daemon-reload && systemctl enable {UNIT_NAME}")
        return lines

    def _owner_label(self, owner: str) -> str:
        return owner.replace("service", self.options.user)

    @property
    def will_enable(self) -> bool:
        return (
            self.options.enable
            and self.options.unit_dir == DEFAULT_UNIT_DIR
            and os.geteuid() == 0
            and shutil.which("systemctl") is not None
        )


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def plan_setup(options: SetupOptions) -> Plan:
    """Validate everything and decide what to write. Writes nothing."""
    if not valid_relay_id(options.relay_id):
        raise SetupError(
            f"--relay-id {options.relay_id!r} may use only letters, digits, '.', '_' and '-' (max 64)"
        )
    try:
        root = load_public_key(options.root_pub)
    except RelaydError as exc:
        raise SetupError(f"--root-pub: {exc}") from exc
    if root.role is not Role.ROOT:
        raise SetupError(f"--root-pub {options.root_pub} is a {root.role.value} key, not the network root")
    try:
        bundle = load_bundle(options.bundle, pinned_root=root.public_key)
    except RelaydError as exc:
        raise SetupError(f"--bundle: {exc}") from exc

    etc, state = options.etc, options.state
    config_path = etc / "relayd.toml"
    key_path = state / f"{options.relay_id}.key"
    pub_path = state / f"{options.relay_id}.pub"
    password_file = options.password_file or etc / "mqtt.password"
    plan = Plan(options, config_path, key_path, pub_path, password_file)
    plan.create_user = os.geteuid() == 0 and not _user_exists(options.user)
    plan.dirs = [(etc, 0o755, "root"), (state, 0o700, "service"), (options.unit_dir, 0o755, "root")]

    if key_path.exists():
        if not options.force:
            raise SetupError(
                f"{key_path} already exists; run again with --force to keep that key and rewrite the "
                "config and unit, or delete the key (and revoke it: relayd trust revoke) for a new one"
            )
        try:
            existing = load_private_key(key_path, unattended=True)
        except RelaydError as exc:
            raise SetupError(f"existing key: {exc}") from exc
        if existing.role is not Role.RELAY:
            raise SetupError(f"{key_path} is a {existing.role.value} key; a relay holds only a relay key")
        plan.existing_key_id = existing.key_id.hex()
    else:
        plan.identity = Identity.generate(options.relay_id, Role.RELAY)

    targets = {
        config_path: "config",
        etc / "root.pub": "root public key",
        etc / "trust.json": "trust bundle",
        options.unit_dir / UNIT_NAME: "systemd unit",
    }
    existing_files = [str(p) for p in targets if p.exists()]
    if existing_files and not options.force:
        raise SetupError(f"{', '.join(existing_files)} already exist(s); run again with --force to overwrite")

    if not password_file.exists():
        plan.new_password = True
        plan.files.append(
            FileAction(
                password_file,
                (secrets.token_urlsafe(24) + "\n").encode(),
                0o640,
                "root:service",
                "a new random MQTT password",
            )
        )
    config_text = render_config(
        relay_id=options.relay_id,
        key_path=key_path,
        state_dir=state,
        root_pub=etc / "root.pub",
        bundle=etc / "trust.json",
        device=options.device,
        broker=options.broker,
        mqtt_user=options.mqtt_user or options.relay_id,
        password_file=password_file,
    )
    plan.files += [
        FileAction(config_path, config_text.encode(), 0o640, "root:service", "relay config"),
        FileAction(etc / "root.pub", options.root_pub.read_bytes(), 0o644, "root", "network root public key"),
        FileAction(
            etc / "trust.json",
            options.bundle.read_bytes(),
            0o644,
            "root",
            f"trust bundle v{bundle.bundle.version}",
        ),
        FileAction(
            options.unit_dir / UNIT_NAME,
            render_unit(options.relayd_bin, config_path).encode(),
            0o644,
            "root",
            "systemd unit",
        ),
    ]
    if plan.identity is not None and bundle.bundle.key(plan.identity.key_id) is None:
        plan.notes.append("the new relay key is not in the trust bundle yet: step 1 below")
    if state != DEFAULT_STATE:
        plan.notes.append(
            f"the unit's sandbox (ProtectSystem=strict) lets relayd write only {DEFAULT_STATE}; "
            f"for state in {state}, add ReadWritePaths={state} with `systemctl edit relayd`"
        )
    return plan


def _ids(owner: str, user: str) -> tuple[int, int] | None:
    """(uid, gid) for an owner spec, or None when not running as root (files stay ours)."""
    if os.geteuid() != 0:
        return None
    service = pwd.getpwnam(user)
    if owner == "service":
        return service.pw_uid, service.pw_gid
    if owner == "root:service":
        return 0, service.pw_gid
    return 0, 0


def _create_user(user: str, home: Path) -> None:
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    subprocess.run(  # noqa: S603 - fixed argv, validated user name
        [
            useradd,
            "--system",
            "--user-group",
            "--home-dir",
            str(home),
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            user,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    with contextlib.suppress(KeyError):
        grp.getgrnam("dialout")
        usermod = shutil.which("usermod") or "/usr/sbin/usermod"
        subprocess.run(  # noqa: S603 - fixed argv
            [usermod, "-aG", "dialout", user], check=True, capture_output=True, timeout=30
        )


def _write_file(action: FileAction, user: str) -> None:
    tmp = action.path.with_name(f".{action.path.name}.setup-tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    # O_EXCL and the final mode from the start: a secret is never readable by others, not even
    # between write and chmod.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, action.mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(action.content)
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(tmp, action.mode)
    ids = _ids(action.owner, user)
    if ids is not None:
        os.chown(tmp, *ids)
    tmp.replace(action.path)


def apply_plan(plan: Plan) -> None:
    options = plan.options
    if plan.create_user:
        _create_user(options.user, options.state)
    for path, mode, owner in plan.dirs:
        path.mkdir(parents=True, exist_ok=True, mode=mode)
        if owner == "service":
            # Not for shared directories such as /etc/systemd/system: only ours get a mode.
            os.chmod(path, mode)
        ids = _ids(owner, options.user)
        if ids is not None and owner == "service":
            os.chown(path, *ids)
    for action in plan.files:
        _write_file(action, options.user)
    if plan.identity is not None:
        write_private_key(plan.identity, plan.key_path)
        write_public_key(plan.identity.public, plan.pub_path)
        ids = _ids("service", options.user)
        if ids is not None:
            os.chown(plan.key_path, *ids)
            os.chown(plan.pub_path, *ids)
    # The config names files we just wrote; a config that does not load is a bug here.
    load_config(plan.config_path)
    if plan.will_enable:
        for args in (["daemon-reload"], ["enable", UNIT_NAME]):
            subprocess.run(["systemctl", *args], check=True, timeout=60)  # noqa: S603, S607 - fixed argv


def next_steps(plan: Plan) -> list[str]:
    """What the admin does after setup: the key id to trust, the broker password, the checks."""
    user = plan.options.mqtt_user or plan.options.relay_id
    pw = plan.password_file
    add = f"relayd trust add --bundle trust.json --root-key root.key --role relay --pub {plan.pub_path.name}"
    lines = [
        f"relay key id: {plan.key_id}",
        f"relay public key: {plan.pub_path}",
        "next:",
        "  1. on the root machine, add the relay key to the bundle and publish it (docs/deployment.md):",
        f"     {add}",
    ]
    if plan.new_password:
        lines += [
            f"  2. give the broker user {user} the new password in {pw}:",
            f'     sudo mosquitto_passwd -b /etc/mosquitto/relayd.passwd {user} "$(sudo cat {pw})"',
            f"     plus a `user {user}` block in /etc/mosquitto/relayd.acl; sudo systemctl reload mosquitto",
        ]
    else:
        lines.append(f"  2. the broker must know user {user} with the password in {pw}")
    lines.append(f"  3. relayd doctor -c {plan.config_path}")
    if plan.will_enable:
        lines.append("  4. sudo systemctl start relayd")
    else:
        unit = plan.options.unit_dir / UNIT_NAME
        lines.append(f"  4. install {unit} as /etc/systemd/system/{UNIT_NAME}, then:")
        lines.append("     sudo systemctl daemon-reload && sudo systemctl enable --now relayd")
    return lines


def default_relayd_bin() -> Path:
    """The `relayd` next to this interpreter (the venv's), else the documented location."""
    candidate = Path(sys.executable).parent / "relayd"
    return candidate if candidate.is_file() else DEFAULT_RELAYD_BIN
