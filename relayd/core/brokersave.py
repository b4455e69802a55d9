"""Does the broker keep what it acknowledges? What a relay and `relayd doctor` can observe.

A broker that cannot save (persistence off, its save file unwritable, a full disk) works
normally until it restarts; then every persistent session, every queued alert for an offline
relay and every retained message is gone, silently. From outside, over MQTT alone, that is
not observable before the restart: neither Mosquitto's `$SYS` tree nor any MQTT 3.1.1 packet
says whether a save succeeded. What is observable, and judged here without I/O:

* after a restart: a relay that had left a retained status finds it missing when it
  subscribes again (the broker lost its retained messages, or never delivers retained
  messages through a wildcard, as RabbitMQ 3.x does);
* on the broker's own machine (a relay's local Mosquitto): its config (`persistence`,
  `autosave_on_changes`, `autosave_interval`) and its log, where Mosquitto writes
  "Error saving in-memory database" for a failed save (persist_write.c).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

# Mosquitto logs a failed save as "Error saving in-memory database, unable to open ... for
# writing." and/or "Error: <strerror>." (persist_write.c), a failed load as "Error ...
# persistent database". Only file-system errors: a bridge's "Error: Connection refused" while
# its remote is down is normal.
PERSISTENCE_ERRORS = re.compile(
    r"in-memory database|persist|for writing|Error: (Permission denied|Is a directory"
    r"|No space left on device|Read-only file system|Unable to open log file)",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class SaveSettings:
    """The persistence options of a Mosquitto config (the last value of each wins)."""

    persistence: bool = False  # Mosquitto's default
    location: str | None = None
    autosave_on_changes: bool = False
    autosave_interval: int = 1800  # Mosquitto's default, in seconds (or changes)
    log_files: tuple[str, ...] = ()
    include_dirs: tuple[str, ...] = ()
    ports: tuple[int, ...] = (1883,)  # its listeners (Mosquitto's default without any)


def parse_mosquitto_config(lines: Iterable[str]) -> SaveSettings:
    """The options that decide what a Mosquitto broker keeps across a crash."""
    s: dict[str, str] = {}
    logs: list[str] = []
    includes: list[str] = []
    ports: list[int] = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        value = value.strip()
        if key == "log_dest" and value.startswith("file "):
            logs.append(value[5:].strip())
        elif key in ("listener", "port") and value.split()[0].isdigit():
            ports.append(int(value.split()[0]))
        elif key == "include_dir":
            includes.append(value)
        elif key in ("persistence", "persistence_location", "autosave_on_changes", "autosave_interval"):
            s[key] = value
    try:
        interval = int(s.get("autosave_interval", "1800"))
    except ValueError:
        interval = 1800
    return SaveSettings(
        persistence=s.get("persistence", "false").lower() == "true",
        location=s.get("persistence_location"),
        autosave_on_changes=s.get("autosave_on_changes", "false").lower() == "true",
        autosave_interval=interval,
        log_files=tuple(logs),
        include_dirs=tuple(includes),
        ports=tuple(ports) or (1883,),
    )


@dataclass(frozen=True, slots=True)
class SaveVerdict:
    ok: bool
    detail: str
    fix: str | None = None


def assess_settings(settings: SaveSettings) -> SaveVerdict:
    if not settings.persistence:
        return SaveVerdict(
            False,
            "persistence is off: a broker restart loses every queued alert and retained message",
            "set `persistence true` (config/mosquitto/local.conf)",
        )
    if not settings.autosave_on_changes and settings.autosave_interval > 1:
        return SaveVerdict(
            False,
            f"saves every {settings.autosave_interval} s: a crash loses what it acknowledged since",
            "set `autosave_on_changes true` and `autosave_interval 1` (config/mosquitto/local.conf)",
        )
    if settings.autosave_interval > 1:
        return SaveVerdict(
            True,
            f"saves after every {settings.autosave_interval} changes: a crash may lose up to "
            f"{settings.autosave_interval - 1}",
        )
    return SaveVerdict(True, "persistence on, saved after every change")


def persistence_errors(log_text: str) -> list[str]:
    """Lines of a Mosquitto log that say a save (or load) failed, oldest first."""
    return [line.strip() for line in log_text.splitlines() if PERSISTENCE_ERRORS.search(line)]


@dataclass
class RetainedWatch:
    """After a reconnect, does the broker still hold this relay's retained status?

    `expect` when a connection is made and a retained status was left on an earlier one;
    `seen` when it arrives (with the retain flag: a live echo of our own publish does not
    count). `due` says, once per connection and only after `grace_s`, that it never came.
    """

    grace_s: float = 5.0
    _expect_since: float | None = None
    _seen: bool = False
    _reported: bool = False

    def expect(self, now_s: float) -> None:
        self._expect_since, self._seen, self._reported = now_s, False, False

    def seen(self) -> None:
        self._seen = True

    def due(self, now_s: float) -> bool:
        since = self._expect_since
        if since is None or self._seen or self._reported or now_s - since < self.grace_s:
            return False
        self._reported = True
        return True


# The relay's storage meta key saying it has left a retained status on a broker.
STATUS_LEFT_META = "retained_status_left"

LOST_RETAINED = (
    "the broker did not return this relay's retained status after a reconnect: it lost its "
    "retained messages (and so, likely, the queued alerts of offline relays) - it restarted "
    "without persistence or could not save - or it does not deliver retained messages through "
    "wildcards (RabbitMQ 3.x). Run `relayd doctor` on the broker's machine"
)
