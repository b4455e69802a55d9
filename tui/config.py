"""Typed configuration for the TUI: plain validated data, no I/O beyond parsing."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from relayd.core.topics import DEFAULT_ROOT

DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883


class ConfigError(ValueError):
    """A command-line value that cannot be used; the message says what to pass instead."""


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where the broker is and how to talk to it."""

    host: str
    port: int = DEFAULT_MQTT_PORT
    root: str = DEFAULT_ROOT
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    client_id: str = field(default_factory=lambda: f"relayd-tui-{uuid.uuid4().hex[:8]}")
    keepalive_s: int = 30
    # Reconnect backoff: first retry after `retry_initial_s`, doubling (with jitter) up to the cap.
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0
    tls: bool = False  # mqtts://: the broker's certificate is checked (system CAs or ca_file)
    ca_file: Path | None = None

    @classmethod
    def from_url(cls, url: str, *, root: str = DEFAULT_ROOT) -> MqttConfig:
        """Parse `mqtt[s]://[user[:password]@]host[:port]` (a password is better in a file)."""
        if "://" not in url:
            url = "mqtt://" + url
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "tcp", "mqtts"):
            raise ConfigError(f"broker URL {url!r}: use mqtt://HOST:PORT or mqtts://HOST:PORT")
        if not parts.hostname:
            raise ConfigError(f"broker URL {url!r} has no host; use mqtt://HOST:PORT")
        tls = parts.scheme == "mqtts"
        try:
            port = parts.port or (DEFAULT_MQTTS_PORT if tls else DEFAULT_MQTT_PORT)
        except ValueError:
            raise ConfigError(f"broker URL {url!r} has an invalid port") from None
        root = root.strip("/")
        if not root or any(c in root for c in "+#"):
            raise ConfigError(f"topic root {root!r} must be non-empty and contain no '+' or '#'")
        return cls(parts.hostname, port, root, parts.username, parts.password, tls=tls)

    @property
    def display(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port} ({self.root})"


@dataclass(frozen=True, slots=True)
class TuiConfig:
    """Everything `relayd-tui` was started with. `mqtt=None` runs without a broker (tests, demos)."""

    mqtt: MqttConfig | None
    key_path: Path | None = None
    trust_path: Path | None = None
    bell: bool = False
    dark: bool = True
    # Snapshot tests freeze the cursor; an operator gets the normal blinking cursor.
    cursor_blink: bool = True
    # Where the console keeps what must survive a restart (the outbox). None: memory only.
    state_dir: Path | None = None

    @property
    def outbox_dir(self) -> Path | None:
        return self.state_dir / "outbox" if self.state_dir is not None else None


def default_state_dir() -> Path:
    """$XDG_STATE_HOME/relayd-tui, else ~/.local/state/relayd-tui."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "relayd-tui"
