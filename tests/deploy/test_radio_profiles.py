"""hardware/profiles/*.yaml: valid `meshtastic --configure` input that sets what relayd needs.

`meshtastic --configure` silently skips a key it does not know, so a typo in a profile would
leave the radio unconfigured without a word. These tests check every key and enum value
against the firmware's own protobufs, which the meshtastic package ships.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from meshtastic.protobuf import clientonly_pb2, config_pb2, localonly_pb2

from tests.deploy.deploy_support import PROFILES_DIR

PROFILES = sorted(PROFILES_DIR.glob("*.yaml"))
RELAY = PROFILES_DIR / "relay-node.yaml"
HANDHELD = PROFILES_DIR / "handheld.yaml"
# Top-level keys the CLI's --configure understands besides config/module_config.
_TOP_LEVEL = {
    "owner",
    "owner_short",
    "ownerShort",
    "canned_messages",
    "ringtone",
    "location",
    "config",
    "module_config",
}


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: not a YAML mapping"
    return data


def _check_section(descriptor: Descriptor, values: dict[str, Any], where: str) -> list[str]:
    problems: list[str] = []
    for key, value in values.items():
        field = descriptor.fields_by_name.get(_snake(key))
        if field is None:
            problems.append(f"{where}.{key}: no such field in {descriptor.full_name}")
        elif field.message_type is not None:
            if isinstance(value, dict):
                problems += _check_section(field.message_type, value, f"{where}.{key}")
            else:
                problems.append(f"{where}.{key}: expected a mapping")
        elif field.enum_type is not None:
            if value not in field.enum_type.values_by_name:
                problems.append(
                    f"{where}.{key}: {value!r} is not one of {sorted(field.enum_type.values_by_name)}"
                )
        elif field.type == FieldDescriptor.TYPE_BOOL:
            if not isinstance(value, bool):
                problems.append(f"{where}.{key}: expected true/false, got {value!r}")
        elif field.type == FieldDescriptor.TYPE_STRING:
            if not isinstance(value, str):
                problems.append(f"{where}.{key}: expected a string, got {value!r}")
        elif not isinstance(value, int) or isinstance(value, bool):
            problems.append(f"{where}.{key}: expected an integer, got {value!r}")
    return problems


def _build(path: Path) -> clientonly_pb2.DeviceProfile:
    """The DeviceProfile the official CLI builds from a profile (its --configure parser)."""
    cli = pytest.importorskip("meshtastic.__main__")
    # A private helper, but exactly the code `meshtastic --configure` runs (meshtastic >= 2.7).
    from_yaml = getattr(cli, "_profile_from_yaml", None)
    if from_yaml is None:
        pytest.skip("this meshtastic CLI has no _profile_from_yaml; the key checks still ran")
    profile: clientonly_pb2.DeviceProfile = from_yaml(_load(path))
    return profile


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profile_keys_and_values_are_known_to_the_firmware(path: Path) -> None:
    data = _load(path)
    assert set(data) <= _TOP_LEVEL, f"keys --configure ignores: {set(data) - _TOP_LEVEL}"
    problems = _check_section(localonly_pb2.LocalConfig.DESCRIPTOR, data.get("config", {}), "config")
    problems += _check_section(
        localonly_pb2.LocalModuleConfig.DESCRIPTOR, data.get("module_config", {}), "module_config"
    )
    assert problems == []


@pytest.mark.parametrize("path", PROFILES, ids=lambda p: p.name)
def test_profile_carries_no_secrets(path: Path) -> None:
    # Channel keys travel inside a channel URL; device keys in the security section.
    data = _load(path)
    assert "channel_url" not in data
    assert "channelUrl" not in data
    security = {_snake(k) for k in data.get("config", {}).get("security", {})}
    assert not security & {"private_key", "public_key", "admin_key"}
    assert "base64:" not in path.read_text()


def test_both_profiles_are_on_the_same_radio_channel() -> None:
    relay, handheld = _build(RELAY).config.lora, _build(HANDHELD).config.lora
    assert (relay.region, relay.modem_preset, relay.use_preset) == (
        handheld.region,
        handheld.modem_preset,
        handheld.use_preset,
    )
    assert relay.region == config_pb2.Config.LoRaConfig.RegionCode.EU_868
    assert relay.modem_preset == config_pb2.Config.LoRaConfig.ModemPreset.LONG_FAST
    assert relay.use_preset


def test_relay_profile_keeps_the_serial_api_and_stays_off_public_mqtt() -> None:
    profile = _build(RELAY)
    assert profile.config.device.role == config_pb2.Config.DeviceConfig.Role.CLIENT
    assert profile.config.security.serial_enabled
    assert not profile.config.power.is_power_saving
    assert profile.config.lora.ignore_mqtt
    assert not profile.config.lora.config_ok_to_mqtt
    assert not profile.config.lora.override_duty_cycle
    assert not profile.module_config.mqtt.enabled


def test_handheld_profile_rings_the_bell_for_urgent_alerts_only() -> None:
    notification = _build(HANDHELD).module_config.external_notification
    assert notification.enabled
    assert notification.alert_bell
    assert notification.alert_bell_buzzer
    assert not notification.alert_message


def test_handheld_profile_does_not_share_positions() -> None:
    position = _build(HANDHELD).config.position
    assert position.gps_mode == config_pb2.Config.PositionConfig.GpsMode.DISABLED
