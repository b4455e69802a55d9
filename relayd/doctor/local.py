"""Doctor's checks of the relay's own machine: key, trust bundle, clock and state disk."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

from relayd import BUILD_EPOCH_S
from relayd.core.clockrule import assess_clock
from relayd.core.model import Role
from relayd.core.trust import TrustBundle, should_replace
from relayd.daemon.config import Config
from relayd.doctor.results import (
    BUNDLE_WARN_S,
    DISK_FAIL_BYTES,
    DISK_WARN_BYTES,
    SERVICE_USER,
    CheckResult,
    days,
    fail,
    iso,
    ok,
    warn,
)
from relayd.errors import RelaydError
from relayd.keystore import load_private_key, load_public_key
from relayd.trustfile import load_bundle

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
        return fail("trust", f"{summary}: expired {iso(bundle.expires_at_s)}", fix)
    if left_s < BUNDLE_WARN_S:
        return warn("trust", f"{summary}: expires {iso(bundle.expires_at_s)}, in {days(left_s)}", fix)
    return ok("trust", f"{summary}, signature valid, expires {iso(bundle.expires_at_s)}")


def assess_clock_check(now_s: float, skew_s: float, bundle: TrustBundle | None) -> CheckResult:
    # The bundle's issue time is a root-signed lower bound on the real time, like the newest
    # verified alert the daemon uses.
    newest = float(bundle.issued_at_s) if bundle is not None else None
    verdict = assess_clock(now_s, BUILD_EPOCH_S, newest, skew_s)
    if not verdict.plausible:
        return fail(
            "clock",
            f"system clock reads {iso(now_s)}: {verdict.warning}",
            "timedatectl; sudo systemctl restart systemd-timesyncd; without internet, fit an RTC",
        )
    return ok("clock", f"{iso(now_s)} is plausible (after this build's date {iso(BUILD_EPOCH_S)})")


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
