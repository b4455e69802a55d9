"""hardware/udev/99-meshradio.rules: well-formed udev syntax, and every radio chip we document
gets the /dev/meshradio symlink with group dialout."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import pytest

from tests.deploy.deploy_support import UDEV_RULE, find_tool

# udev(7): keys that only match, keys that only assign, and keys that can do both.
_MATCH_ONLY = {
    "ACTION", "DEVPATH", "KERNEL", "KERNELS", "SUBSYSTEM", "SUBSYSTEMS", "DRIVER", "DRIVERS",
    "ATTRS", "TAGS", "TEST", "PROGRAM", "RESULT", "CONST",
}  # fmt: skip
_ASSIGN_ONLY = {"OWNER", "GROUP", "MODE", "SECLABEL", "RUN", "LABEL", "GOTO", "OPTIONS", "IMPORT"}
_EITHER = {"NAME", "SYMLINK", "ENV", "ATTR", "SYSCTL", "TAG"}
_MATCH_OPS = {"==", "!="}
_ASSIGN_OPS = {"=", "+=", "-=", ":="}
_PAIR = re.compile(
    r'\s*(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]+)\})?\s*(?P<op>==|!=|\+=|-=|:=|=)\s*"(?P<value>(?:[^"\\]|\\.)*)"\s*'
)

# (idVendor, idProduct or None for any) of the USB-serial chips hardware/README.md lists.
REQUIRED_CHIPS = {
    ("10c4", "ea60"),  # Silicon Labs CP210x
    ("1a86", "55d4"),  # WCH CH9102
    ("1a86", "7523"),  # WCH CH340
    ("239a", None),  # nRF52840 native USB (Adafruit bootloader VID), any product id
    ("303a", "1001"),  # ESP32-S3 native USB
}


@dataclass(frozen=True)
class Pair:
    key: str
    attr: str | None
    op: str
    value: str


def _rules() -> list[tuple[int, list[Pair]]]:
    """(line number, key/op/value pairs) per rule; fails on anything udev would not parse."""
    rules: list[tuple[int, list[Pair]]] = []
    pending = ""
    for number, raw in enumerate(UDEV_RULE.read_text().splitlines(), start=1):
        line = pending + raw
        if line.endswith("\\"):
            pending = line[:-1]
            continue
        pending = ""
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        pairs: list[Pair] = []
        for chunk in line.split('",'):
            text = chunk if chunk.endswith('"') else chunk + '"'
            match = _PAIR.fullmatch(text)
            assert match, f"line {number}: cannot parse {text.strip()!r}"
            pairs.append(Pair(match["key"], match["attr"], match["op"], match["value"]))
        for pair in pairs:
            if pair.key in _MATCH_ONLY:
                assert pair.op in _MATCH_OPS, f"line {number}: {pair.key} can only be matched"
            elif pair.key in _ASSIGN_ONLY:
                assert pair.op in _ASSIGN_OPS, f"line {number}: {pair.key} can only be assigned"
            else:
                assert pair.key in _EITHER, f"line {number}: unknown udev key {pair.key}"
        rules.append((number, pairs))
    assert not pending, "the file ends in a line continuation"
    return rules


def test_udev_rule_parses() -> None:
    rules = _rules()
    labels = {p.value for _, pairs in rules for p in pairs if p.key == "LABEL"}
    gotos = {p.value for _, pairs in rules for p in pairs if p.key == "GOTO"}
    assert rules
    assert gotos <= labels, f"GOTO without a LABEL: {gotos - labels}"


def test_udev_rule_links_every_documented_radio_chip_to_dev_meshradio() -> None:
    covered: set[tuple[str, str | None]] = set()
    for number, pairs in _rules():
        matches = {(p.key, p.attr): p.value for p in pairs if p.op == "=="}
        vendor = matches.get(("ATTRS", "idVendor"))
        if vendor is None:
            continue
        assignments = {(p.key, p.op, p.value) for p in pairs}
        assert ("SYMLINK", "+=", "meshradio") in assignments, f"line {number}"
        assert ("GROUP", "=", "dialout") in assignments, f"line {number}"
        assert ("MODE", "=", "0660") in assignments, f"line {number}"
        covered.add((vendor, matches.get(("ATTRS", "idProduct"))))
    assert covered >= REQUIRED_CHIPS, f"not covered: {REQUIRED_CHIPS - covered}"


def test_udev_rule_only_applies_to_tty_devices() -> None:
    # The radio rules must sit behind the tty guard, or a USB mass-storage or HID device with
    # the same vendor id (nRF52 bootloaders present a UF2 drive) would get the symlink.
    rules = _rules()
    guard_lines = [
        number
        for number, pairs in rules
        if any(p.key == "SUBSYSTEM" and p.op == "!=" and p.value == "tty" for p in pairs)
        and any(p.key == "GOTO" for p in pairs)
    ]
    symlink_lines = [number for number, pairs in rules if any(p.key == "SYMLINK" for p in pairs)]
    assert guard_lines
    assert min(guard_lines) < min(symlink_lines)


def test_udevadm_verify_accepts_the_rule() -> None:
    udevadm = find_tool("udevadm")
    if udevadm is None:
        pytest.skip("udevadm is not installed (apt-get install udev); the syntax tests above still ran")
    probe = subprocess.run([udevadm, "verify", "--help"], capture_output=True, timeout=10, check=False)
    if probe.returncode != 0:
        pytest.skip("this udevadm has no `verify` (systemd < 254); the syntax tests above still ran")
    result = subprocess.run(
        [udevadm, "verify", "--resolve-names=never", str(UDEV_RULE)],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
