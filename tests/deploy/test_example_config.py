"""config/relayd.example.toml stays a valid config that documents every setting and its default."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from relayd.core.model import Role, Severity
from relayd.core.verify import DEFAULT_RATE_LIMITS
from relayd.daemon.config import Config, load_config
from relayd.errors import ConfigError
from relayd.testing.keys import make_network
from tests.deploy.deploy_support import REPO_ROOT

EXAMPLE = REPO_ROOT / "config" / "relayd.example.toml"

# Every setting relayd/daemon/config.py reads, by table.
SETTINGS = {
    "relay": (
        "id key state_dir report_prefix alerts_channel reports_channel history_retention ack_text "
        "status_interval"
    ),
    "trust": "root bundle clock_skew",
    "radio": "name device time_scale",
    "mqtt": "url username password_file ca_file topic_root client_id keepalive",
    "airtime": "preset duty_cycle min_text_interval window pace_to_air late_repeat",
    "suppression": "enabled slot jitter margin",
    "rate_limits.dispatcher": "burst per_minute",
    "metrics": "listen",
}


def _sections(text: str) -> dict[str, list[str]]:
    """Table name -> the lines in it (commented-out settings included)."""
    out: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        header = re.fullmatch(r"\[\[?([\w.]+)\]\]?", line.strip())
        if header:
            current = header.group(1)
            out.setdefault(current, [])
        else:
            out.setdefault(current, []).append(line)
    return out


def _has_comment_above(lines: list[str], index: int) -> bool:
    """A comment right above the setting, or above the group of settings it belongs to (burst,
    per_minute). Blank lines end a group; a commented-out setting counts as a setting."""
    for line in reversed(lines[:index]):
        text = line.strip()
        if not text:
            return False
        if not re.match(r"^#? ?\w+ = ", text):
            return text.startswith("#")
    return False


def installed_example(tmp_path: Path) -> Path:
    """The example with its /etc and /var paths pointed at real files under tmp_path."""
    network = make_network(tmp_path / "keys", {"relay-north": Role.RELAY})
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "mqtt.password").write_text("secret\n")
    (etc / "root.pub").write_bytes(network.pub_path("root").read_bytes())
    (etc / "trust.json").write_bytes(network.bundle_path.read_bytes())
    text = EXAMPLE.read_text()
    assert "/etc/relayd/" in text
    assert "/var/lib/relayd" in text
    text = text.replace("/etc/relayd/", f"{etc}/").replace("/var/lib/relayd", str(tmp_path / "state"))
    config = etc / "relayd.toml"
    config.write_text(text)
    return config


def test_example_config_loads(tmp_path: Path) -> None:
    config = load_config(installed_example(tmp_path))
    assert config.relay_id == "relay-north"
    assert config.radios[0].kind == "serial"
    assert config.radios[0].device == "/dev/meshradio"
    assert config.mqtt.username == "relay-north"
    assert config.mqtt.password == "secret"


def test_example_config_documents_every_setting() -> None:
    sections = _sections(EXAMPLE.read_text())
    for table, names in SETTINGS.items():
        lines = sections.get(table)
        assert lines is not None, f"[{table}] is missing"
        for name in names.split():
            pattern = re.compile(rf"^#? ?{name} = ")
            index = next((i for i, line in enumerate(lines) if pattern.match(line)), None)
            assert index is not None, f"{table}.{name} is not in the example"
            # Each setting carries an explanation: a comment line right above it (or above the
            # group of settings it belongs to, as for burst/per_minute).
            assert _has_comment_above(lines, index), f"{table}.{name} has no comment above it"


def test_example_values_are_the_defaults(tmp_path: Path) -> None:
    """Loading the example gives the same settings as leaving everything optional out."""
    example = load_config(installed_example(tmp_path))
    etc = tmp_path / "etc"
    minimal_path = etc / "minimal.toml"
    minimal_path.write_text(
        f"""\
[relay]
id = "relay-north"
key = "{example.key_path}"
state_dir = "{example.state_dir}"

[trust]
root = "root.pub"
bundle = "trust.json"

[[radio]]
name = "main"
device = "serial:///dev/meshradio"

[mqtt]
username = "relay-north"
password_file = "mqtt.password"
"""
    )
    minimal = load_config(minimal_path)
    ignore = {"path", "rate_limits"}
    for field in dataclasses.fields(Config):
        if field.name not in ignore:
            assert getattr(example, field.name) == getattr(minimal, field.name), field.name
    assert dict(example.rate_limits) == DEFAULT_RATE_LIMITS


def test_late_repeat_takes_a_severity_or_off_and_names_the_fix(tmp_path: Path) -> None:
    config = installed_example(tmp_path)
    text = config.read_text()
    for value, expected in (("off", None), ("warning", Severity.WARNING), ("urgent", Severity.URGENT)):
        config.write_text(text.replace('late_repeat = "urgent"', f'late_repeat = "{value}"'))
        assert load_config(config).airtime.late_repeat is expected
    config.write_text(text.replace('late_repeat = "urgent"', 'late_repeat = "always"'))
    with pytest.raises(ConfigError) as err:
        load_config(config)
    message = str(err.value)
    assert str(config) in message
    assert "airtime.late_repeat" in message
    assert '"off", "urgent", "warning"' in message
