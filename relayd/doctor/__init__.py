"""`relayd doctor`: check that a relay can work, one line per check, each with its fix.

Checks, in output order:

* ``device``  the radio's device node exists and this user may open it (serial), or the radio
  accepts a TCP connection;
* ``radio``   the device API handshake completes (want_config_id -> config_complete_id), with the
  radio's node id and firmware version;
* ``broker``  the broker answers, and accepts the configured credentials (and TLS);
* ``persist`` the broker keeps what it acknowledges: the relay's retained status is there, and
  (on the broker's machine) Mosquitto is set to save after every change and logs no save error;
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
import time
from pathlib import Path

from relayd.daemon.config import Config
from relayd.doctor.broker import check_broker
from relayd.doctor.local import (
    assess_bundle,
    assess_clock_check,
    assess_disk,
    check_disk,
    check_key,
    check_trust,
)
from relayd.doctor.persist import check_persistence
from relayd.doctor.radio import assess_serial_device, check_radio
from relayd.doctor.results import (
    BUNDLE_WARN_S,
    DEFAULT_TIMEOUT_S,
    DISK_FAIL_BYTES,
    DISK_WARN_BYTES,
    CheckResult,
    Level,
    exit_code,
    fail,
    ok,
    render_json,
    render_text,
    warn,
)

__all__ = [
    "BUNDLE_WARN_S",
    "DEFAULT_TIMEOUT_S",
    "DISK_FAIL_BYTES",
    "DISK_WARN_BYTES",
    "CheckResult",
    "Level",
    "assess_bundle",
    "assess_clock_check",
    "assess_disk",
    "assess_serial_device",
    "check_broker",
    "check_disk",
    "check_key",
    "check_persistence",
    "check_radio",
    "check_trust",
    "exit_code",
    "fail",
    "ok",
    "render_json",
    "render_text",
    "run_checks",
    "warn",
]


async def run_checks(
    config: Config,
    *,
    now_s: float | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    broker_config: Path | None = None,
) -> list[CheckResult]:
    """Every check for `config`, in output order. `now_s` overrides the clock (for tests);
    `broker_config` is the local broker's Mosquitto config, if it is on this machine."""
    now = time.time() if now_s is None else now_s
    radio_checks = [check_radio(radio, timeout_s) for radio in config.radios]
    broker = asyncio.create_task(check_broker(config.mqtt, config.relay_id, timeout_s))
    radios = await asyncio.gather(*radio_checks)
    trust, bundle = check_trust(config, now)
    results = [r for group in radios for r in group]
    broker_result = await broker
    results.append(broker_result)
    if broker_result.level is not Level.FAIL:
        results.append(
            await check_persistence(config.mqtt, config.relay_id, timeout_s, broker_config, config.db_path)
        )
    results.append(check_key(config, bundle))
    results.append(trust)
    results.append(assess_clock_check(now, config.clock_skew_s, bundle))
    results.append(check_disk(config.state_dir))
    return results
