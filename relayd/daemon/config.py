"""The daemon's configuration: a TOML file parsed into frozen, validated dataclasses.

Every error names the file, the key and the fix (ConfigError). No `dict[str, Any]` leaves
this module.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from relayd.core.airtime import LoRaPreset, preset_by_name
from relayd.core.model import Role, Severity
from relayd.core.ratelimit import RateLimit
from relayd.core.scheduler import FIRMWARE_TEXT_INTERVAL_S
from relayd.core.timefmt import parse_duration_s
from relayd.core.topics import DEFAULT_ROOT, valid_relay_id
from relayd.errors import ConfigError


@dataclass(frozen=True, slots=True)
class RadioConfig:
    name: str
    kind: str  # "tcp" or "serial"
    host: str = ""
    port: int = 4403
    device: str = ""
    # Simulator only: the simulated mesh runs this many times faster than real time, so
    # airtime, the firmware's text interval and suppression slots shrink by this factor.
    time_scale: float = 1.0

    @property
    def label(self) -> str:
        return f"tcp:{self.host}:{self.port}" if self.kind == "tcp" else f"serial:{self.device}"


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    tls: bool = False
    ca_file: Path | None = None
    username: str | None = None
    password: str | None = None
    topic_root: str = DEFAULT_ROOT
    client_id: str | None = None
    keepalive_s: int = 30


@dataclass(frozen=True, slots=True)
class AirtimeConfig:
    preset: LoRaPreset
    duty_cycle: float = 0.10
    min_text_interval_s: float = FIRMWARE_TEXT_INTERVAL_S
    window_s: float = 3600.0
    # After each frame, wait for its flood where we are (relayd/core/earshot.py); false: only
    # the text interval (the old behaviour, kept for comparison benchmarks).
    pace_to_air: bool = True
    # Alerts this severe or more go on air once more, later, under the same packet id, for the
    # handhelds that missed them (relayd/core/repeat.py); None: no late repeats.
    late_repeat: Severity | None = Severity.URGENT


@dataclass(frozen=True, slots=True)
class SuppressionConfig:
    enabled: bool = True
    # None: four max-size frames' airtime plus a margin (see relay.SLOT_FRAMES).
    slot_s: float | None = None
    jitter_s: float = 0.2
    margin_s: float = 1.0
    # "rf": rank among RF neighbours (relayd.core.suppression.rank_peers); "broker": among
    # every online relay on the broker (the old behaviour, kept for comparison benchmarks).
    rank_among: str = "rf"


@dataclass(frozen=True, slots=True)
class Config:
    path: Path
    relay_id: str
    key_path: Path
    state_dir: Path
    root_pub: Path
    bundle_path: Path
    radios: tuple[RadioConfig, ...]
    mqtt: MqttConfig
    airtime: AirtimeConfig
    suppression: SuppressionConfig
    report_prefix: str = "!r "
    alerts_channel: int = 0
    reports_channel: int | None = 1
    history_retention_s: float = 72 * 3600.0
    clock_skew_s: float = 300.0
    metrics_host: str | None = "127.0.0.1"
    metrics_port: int | None = 9108
    status_interval_s: float = 30.0
    # A handheld silent this long and then heard again is sent the active alerts it missed,
    # by DM (relayd/core/catchup.py); 0 turns that off.
    catchup_after_s: float = 1800.0
    ack_text: str = "relayd: report received, thank you"
    rate_limits: tuple[tuple[Role, RateLimit], ...] = ()

    @property
    def db_path(self) -> Path:
        return self.state_dir / "relayd.sqlite3"


class _Section:
    """Typed access to one TOML table, with errors naming file and dotted key."""

    def __init__(self, path: Path, prefix: str, data: dict[str, object]) -> None:
        self.path = path
        self.prefix = prefix
        self.data = data
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def error(self, name: str, problem: str) -> ConfigError:
        return ConfigError(str(self.path), self.key(name), problem)

    def _get(self, name: str) -> object | None:
        self.used.add(name)
        return self.data.get(name)

    def str_(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._get(name)
        if value is None:
            if required:
                raise self.error(name, 'is missing; add it, e.g. name = "value"')
            return default
        if not isinstance(value, str):
            raise self.error(name, f"must be a string (in quotes), not {value!r}")
        return value

    def req_str(self, name: str) -> str:
        value = self.str_(name, required=True)
        assert value is not None  # noqa: S101 - required=True raised otherwise
        return value

    def path_(self, name: str, default: Path | None = None, *, required: bool = False) -> Path | None:
        value = self.str_(name, None, required=required)
        if value is None:
            return default
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.path.parent / p)

    def req_path(self, name: str) -> Path:
        value = self.path_(name, required=True)
        assert value is not None  # noqa: S101 - required=True raised otherwise
        return value

    def int_(self, name: str, default: int, lo: int, hi: int) -> int:
        value = self._get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.error(name, f"must be a whole number from {lo} to {hi}, not {value!r}")
        return value

    def float_(self, name: str, default: float, lo: float, hi: float) -> float:
        value = self._get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
            raise self.error(name, f"must be a number from {lo} to {hi}, not {value!r}")
        return float(value)

    def bool_(self, name: str, default: bool) -> bool:
        value = self._get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(name, f"must be true or false, not {value!r}")
        return value

    def duration(self, name: str, default_s: float) -> float:
        value = self._get(name)
        if value is None:
            return default_s
        if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
            return float(value)
        if isinstance(value, str):
            try:
                return float(parse_duration_s(value))
            except ValueError:
                pass
            try:
                return float(value.rstrip("s")) if value.endswith("s") else float("nan")
            except ValueError:
                pass
        raise self.error(
            name, f'must be a duration such as "30s", "5m", "72h" or a number of seconds, not {value!r}'
        )

    def table(self, name: str) -> _Section:
        value = self._get(name)
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise self.error(name, f"must be a table ([{self.key(name)}])")
        return _Section(self.path, self.key(name), value)

    def check_unknown(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.error(
                unknown[0], "is not a known setting; check the spelling against config/relayd.example.toml"
            )


def _parse_radio(path: Path, index: int, data: object, time_scale_default: float) -> RadioConfig:
    prefix = f"radio[{index}]"
    if not isinstance(data, dict):
        raise ConfigError(str(path), prefix, "must be a table ([[radio]])")
    sec = _Section(path, prefix, data)
    name = sec.str_("name", f"radio{index}") or f"radio{index}"
    url = sec.req_str("device")
    time_scale = sec.float_("time_scale", time_scale_default, 0.001, 10_000.0)
    sec.check_unknown()
    parts = urlsplit(url)
    if parts.scheme == "tcp":
        if not parts.hostname:
            raise sec.error("device", f'{url!r} needs a host: "tcp://192.168.4.1:4403"')
        try:
            port = parts.port or 4403
        except ValueError:
            raise sec.error("device", f"{url!r} has an invalid port") from None
        return RadioConfig(name, "tcp", host=parts.hostname, port=port, time_scale=time_scale)
    if parts.scheme == "serial" or (not parts.scheme and url.startswith("/")):
        device = unquote(parts.path) if parts.scheme else url
        if not device:
            raise sec.error("device", f'{url!r} needs a device path: "serial:///dev/meshradio"')
        return RadioConfig(name, "serial", device=device, time_scale=time_scale)
    raise sec.error("device", f'{url!r} must be "serial:///dev/meshradio" or "tcp://HOST:PORT"')


# `[airtime] late_repeat`: what it may say, and the least severe alert each repeats.
LATE_REPEAT_CHOICES = {"off": None, "urgent": Severity.URGENT, "warning": Severity.WARNING}


def _late_repeat(air: _Section) -> Severity | None:
    value = air.str_("late_repeat", "urgent") or "urgent"
    if value not in LATE_REPEAT_CHOICES:
        choices = ", ".join(f'"{c}"' for c in LATE_REPEAT_CHOICES)
        raise air.error("late_repeat", f"must be one of {choices}, not {value!r}")
    return LATE_REPEAT_CHOICES[value]


def _parse_mqtt(sec: _Section, relay_id: str) -> MqttConfig:
    url = sec.str_("url", "mqtt://127.0.0.1:1883") or "mqtt://127.0.0.1:1883"
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise sec.error("url", f'{url!r} must look like "mqtt://HOST:PORT" or "mqtts://HOST:PORT"')
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise sec.error("url", f"{url!r} has an invalid port") from None
    username = sec.str_("username")
    password: str | None = None
    password_file = sec.path_("password_file")
    if password_file is not None:
        try:
            password = password_file.read_text().strip()
        except OSError as exc:
            raise sec.error("password_file", f"cannot read {password_file}: {exc.strerror}") from None
    if sec.str_("password") is not None:
        raise sec.error(
            "password", "do not put passwords in the config; use password_file = PATH (mode 0600)"
        )
    ca_file = sec.path_("ca_file")
    if ca_file is not None and not ca_file.is_file():
        raise sec.error("ca_file", f"{ca_file} does not exist")
    root = sec.str_("topic_root", DEFAULT_ROOT) or DEFAULT_ROOT
    if any(c in root for c in "+#") or root.startswith("/") or root.endswith("/"):
        raise sec.error("topic_root", f"{root!r} must not contain + or # or start/end with /")
    client_id = sec.str_("client_id", f"relayd-{relay_id}")
    keepalive = sec.int_("keepalive", 30, 5, 3600)
    sec.check_unknown()
    return MqttConfig(
        host=parts.hostname,
        port=port,
        tls=tls,
        ca_file=ca_file,
        username=username,
        password=password,
        topic_root=root,
        client_id=client_id,
        keepalive_s=keepalive,
    )


def load_config(path: Path) -> Config:
    """Read and validate a config file. Raises ConfigError (never KeyError or TypeError)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            str(path), "-", "file does not exist; start from config/relayd.example.toml"
        ) from None
    except OSError as exc:
        raise ConfigError(str(path), "-", f"cannot read: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(str(path), "-", "is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), "-", f"is not valid TOML: {exc}") from None
    top = _Section(path, "", data)
    relay = top.table("relay")
    relay_id = relay.req_str("id")
    if not valid_relay_id(relay_id):
        raise relay.error("id", f"{relay_id!r} may use only letters, digits, '.', '_' and '-' (max 64)")
    state_dir = relay.path_("state_dir", Path("/var/lib/relayd")) or Path("/var/lib/relayd")
    key_path = relay.path_("key", state_dir / "relay.key") or state_dir / "relay.key"
    report_prefix = relay.str_("report_prefix", "!r ") or "!r "
    alerts_channel = relay.int_("alerts_channel", 0, 0, 7)
    reports_channel_raw = relay.int_("reports_channel", 1, -1, 7)
    retention = relay.duration("history_retention", 72 * 3600.0)
    ack_text = relay.str_("ack_text", "relayd: report received, thank you") or ""
    status_interval = relay.duration("status_interval", 30.0)
    catchup_after = relay.duration("catchup_after", 1800.0)
    relay.check_unknown()

    trust = top.table("trust")
    root_pub = trust.req_path("root")
    bundle_path = trust.req_path("bundle")
    skew = trust.duration("clock_skew", 300.0)
    trust.check_unknown()

    radios_raw = data.get("radio", [])
    top.used.add("radio")
    if isinstance(radios_raw, dict):
        radios_raw = [radios_raw]
    if not isinstance(radios_raw, list) or not radios_raw:
        raise ConfigError(
            str(path), "radio", 'add at least one [[radio]] table with device = "serial:///dev/meshradio"'
        )
    radios = tuple(_parse_radio(path, i, r, 1.0) for i, r in enumerate(radios_raw))
    if len({r.name for r in radios}) != len(radios):
        raise ConfigError(str(path), "radio", "radio names must be unique")

    mqtt = _parse_mqtt(top.table("mqtt"), relay_id)

    air = top.table("airtime")
    try:
        preset = preset_by_name(air.str_("preset", "LONG_FAST") or "LONG_FAST")
    except ValueError as exc:
        raise air.error("preset", str(exc)) from None
    airtime = AirtimeConfig(
        preset=preset,
        duty_cycle=air.float_("duty_cycle", 0.10, 0.001, 1.0),
        min_text_interval_s=air.duration("min_text_interval", FIRMWARE_TEXT_INTERVAL_S),
        window_s=air.duration("window", 3600.0),
        pace_to_air=air.bool_("pace_to_air", True),
        late_repeat=_late_repeat(air),
    )
    air.check_unknown()

    sup = top.table("suppression")
    slot_raw = sup._get("slot")
    slot_s: float | None = None
    if slot_raw is not None and slot_raw != "auto":
        slot_s = sup.duration("slot", 0.0)
    suppression = SuppressionConfig(
        enabled=sup.bool_("enabled", True),
        slot_s=slot_s,
        jitter_s=sup.duration("jitter", 0.2),
        margin_s=sup.duration("margin", 1.0),
        rank_among=sup.str_("rank_among", "rf") or "rf",
    )
    if suppression.rank_among not in ("rf", "broker"):
        raise sup.error("rank_among", f'must be "rf" or "broker", not {suppression.rank_among!r}')
    sup.check_unknown()

    limits_sec = top.table("rate_limits")
    rate_limits: list[tuple[Role, RateLimit]] = []
    for role in Role:
        if role.value not in limits_sec.data:
            continue
        entry = limits_sec.table(role.value)
        burst = entry.int_("burst", 10, 1, 1_000_000)
        per_minute = entry.float_("per_minute", 10.0, 0.001, 1_000_000.0)
        entry.check_unknown()
        rate_limits.append((role, RateLimit(burst=burst, per_s=per_minute / 60.0)))
    limits_sec.check_unknown()

    metrics = top.table("metrics")
    listen = metrics.str_("listen", "127.0.0.1:9108")
    metrics.check_unknown()
    metrics_host: str | None = None
    metrics_port: int | None = None
    if listen:
        host, _, port_s = listen.rpartition(":")
        if not host or not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
            raise metrics.error("listen", f'{listen!r} must be "127.0.0.1:9108", or "" to turn metrics off')
        metrics_host, metrics_port = host.strip("[]"), int(port_s)
    top.check_unknown()
    return Config(
        path=path,
        relay_id=relay_id,
        key_path=key_path,
        state_dir=state_dir,
        root_pub=root_pub,
        bundle_path=bundle_path,
        radios=radios,
        mqtt=mqtt,
        airtime=airtime,
        suppression=suppression,
        report_prefix=report_prefix,
        alerts_channel=alerts_channel,
        reports_channel=None if reports_channel_raw < 0 else reports_channel_raw,
        history_retention_s=retention,
        clock_skew_s=skew,
        metrics_host=metrics_host,
        metrics_port=metrics_port,
        status_interval_s=status_interval,
        catchup_after_s=catchup_after,
        ack_text=ack_text,
        rate_limits=tuple(rate_limits),
    )
