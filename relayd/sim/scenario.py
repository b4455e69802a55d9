"""Scenario files: TOML in, frozen typed values out.

A scenario names the radios of a simulated neighborhood, who hears whom (links), the modem
preset and the scripted handheld messages. See docs/simulator.md for the format.
"""

from __future__ import annotations

import base64
import binascii
import math
import tomllib
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from relayd.core.airtime import LONG_FAST, LoRaPreset, preset_by_name
from relayd.meshapi.packets import BROADCAST_NUM

# Meshtastic's "default key" is the one-byte PSK 0x01 (expanded by the firmware to the
# well-known AES key); channels with it are effectively public.
DEFAULT_PSK = b"\x01"
DEFAULT_HOP_LIMIT = 3  # firmware default config.lora.hop_limit
MAX_HOP_LIMIT = 7  # three bits in the LoRa header
MAX_CHANNELS = 8  # firmware MAX_NUM_CHANNELS
# Node numbers 0..3 are reserved by the firmware (NODENUM_BROADCAST_NO_LORA etc.).
_MIN_NODE_NUM = 4


class Role(StrEnum):
    RELAY = "relay"  # a radio with a client (the relay daemon, or the official client) attached
    HANDHELD = "handheld"  # a stock handheld: no client, a person reads its screen


class ScenarioError(ValueError):
    """A scenario file is malformed; the message names the file, the key and what was expected."""

    def __init__(self, source: str, key: str, expected: str, got: object = None) -> None:
        detail = f"{source}: {key}: expected {expected}"
        if got is not None:
            detail += f", got {got!r}"
        super().__init__(detail)
        self.source = source
        self.key = key
        self.expected = expected


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    name: str
    psk: bytes = DEFAULT_PSK


DEVICE_ROLES = ("CLIENT", "ROUTER_LATE")


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    num: int
    role: Role
    long_name: str
    short_name: str
    tcp_port: int | None = None  # 0 = pick a free loopback port
    pty: bool = False
    # Meshtastic device role. A relay's radio is best set to ROUTER_LATE: it always
    # rebroadcasts, after everyone else, instead of cancelling when it overhears a copy.
    device_role: str = "CLIENT"

    @property
    def has_api(self) -> bool:
        return self.tcp_port is not None or self.pty


@dataclass(frozen=True, slots=True)
class LinkSpec:
    a: str
    b: str
    snr_db: float = 8.0
    rssi_dbm: int = -90
    loss: float = 0.0  # probability in [0, 1) that a frame a->b is not received
    bidirectional: bool = True


@dataclass(frozen=True, slots=True)
class ScriptedMessage:
    at_s: float
    sender: str
    text: str
    channel_index: int = 0
    to: str | None = None  # a node name for a DM; None = broadcast on the channel


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    nodes: tuple[NodeSpec, ...]
    links: tuple[LinkSpec, ...]
    channels: tuple[ChannelSpec, ...] = (ChannelSpec("alerts"), ChannelSpec("reports"))
    messages: tuple[ScriptedMessage, ...] = ()
    preset: LoRaPreset = LONG_FAST
    seed: int = 1
    hop_limit: int = DEFAULT_HOP_LIMIT
    collisions: bool = False
    # Relay an originator's copy of a packet already seen once more (the firmware does; see
    # relayd.sim.medium.Medium and docs/simulator.md, "Differences from the firmware").
    relay_origin_copies: bool = False
    region: str = "EU_868"
    source: str = "<memory>"
    _by_name: dict[str, NodeSpec] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._by_name.update({n.name: n for n in self.nodes})

    def node(self, name: str) -> NodeSpec:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no node named {name!r} in scenario {self.name!r}") from None

    def channel_index(self, name_or_index: str | int) -> int:
        if isinstance(name_or_index, int):
            return name_or_index
        for i, ch in enumerate(self.channels):
            if ch.name == name_or_index:
                return i
        raise KeyError(f"no channel named {name_or_index!r}")


def derive_node_num(name: str) -> int:
    """A stable node number from a node name (real radios derive it from their MAC)."""
    num = zlib.crc32(name.encode("utf-8")) & 0xFFFFFFFF
    if num < _MIN_NODE_NUM or num == BROADCAST_NUM:
        num = (num + 0x1000) & 0x7FFFFFFF
    return num


def default_short_name(name: str) -> str:
    parts = [p for p in name.replace("_", "-").split("-") if p]
    letters = "".join(p[0] for p in parts) if len(parts) > 1 else name
    return letters[:4].upper()


def make_node(
    name: str,
    role: Role,
    *,
    num: int | None = None,
    tcp_port: int | None = None,
    pty: bool = False,
    long_name: str | None = None,
    short_name: str | None = None,
    device_role: str = "CLIENT",
) -> NodeSpec:
    if role is Role.RELAY and tcp_port is None and not pty:
        tcp_port = 0
    return NodeSpec(
        name=name,
        num=derive_node_num(name) if num is None else num,
        role=role,
        long_name=long_name or name,
        short_name=short_name or default_short_name(name),
        tcp_port=tcp_port,
        pty=pty,
        device_role=device_role,
    )


def chain_scenario(
    length: int,
    *,
    relay_ends: bool = True,
    hop_limit: int = DEFAULT_HOP_LIMIT,
    snr_db: float = 6.0,
    seed: int = 1,
    collisions: bool = False,
) -> Scenario:
    """``n0 - n1 - ... - n{length-1}``: each node hears only its neighbours.

    With `relay_ends` the two ends are relay radios with a TCP API (so a client can be
    attached at each end); the middle nodes are handhelds.
    """
    nodes = []
    for i in range(length):
        end = i in (0, length - 1)
        role = Role.RELAY if (relay_ends and end) else Role.HANDHELD
        nodes.append(make_node(f"n{i}", role))
    links = tuple(LinkSpec(f"n{i}", f"n{i + 1}", snr_db=snr_db) for i in range(length - 1))
    return Scenario(
        name=f"chain-{length}",
        nodes=tuple(nodes),
        links=links,
        hop_limit=hop_limit,
        seed=seed,
        collisions=collisions,
    )


def grid_scenario(
    width: int, height: int, *, seed: int = 1, hop_limit: int = DEFAULT_HOP_LIMIT, collisions: bool = True
) -> Scenario:
    """A width x height grid of handhelds; each hears its 8 neighbours (diagonals weaker)."""
    nodes = tuple(make_node(f"g{x}-{y}", Role.HANDHELD) for y in range(height) for x in range(width))
    links: list[LinkSpec] = []
    for y in range(height):
        for x in range(width):
            for dx, dy in ((1, 0), (0, 1), (1, 1), (1, -1)):
                nx, ny = x + dx, y + dy
                if 0 <= nx < width and 0 <= ny < height:
                    diagonal = dx != 0 and dy != 0
                    links.append(
                        LinkSpec(
                            f"g{x}-{y}",
                            f"g{nx}-{ny}",
                            snr_db=-2.0 if diagonal else 7.0,
                            rssi_dbm=-115 if diagonal else -95,
                            loss=0.1 if diagonal else 0.02,
                        )
                    )
    return Scenario(
        name=f"grid-{width}x{height}",
        nodes=nodes,
        links=tuple(links),
        seed=seed,
        hop_limit=hop_limit,
        collisions=collisions,
    )


# --- TOML loading ---------------------------------------------------------------------------------


class _Reader:
    """Typed accessors over one TOML table that raise ScenarioError naming the key."""

    def __init__(self, source: str, prefix: str, table: object) -> None:
        if not isinstance(table, dict):
            raise ScenarioError(source, prefix or "<root>", "a table", table)
        self.source = source
        self.prefix = prefix
        self.table: dict[str, Any] = table

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def has(self, name: str) -> bool:
        return name in self.table

    def get_str(self, name: str, default: str | None = None) -> str:
        v = self.table.get(name, default)
        if not isinstance(v, str) or not v:
            raise ScenarioError(self.source, self.key(name), "a non-empty string", v)
        return v

    def get_int(
        self, name: str, default: int | None = None, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        v = self.table.get(name, default)
        if (
            not isinstance(v, int)
            or isinstance(v, bool)
            or (lo is not None and v < lo)
            or (hi is not None and v > hi)
        ):
            bounds = f" in {lo}..{hi}" if lo is not None and hi is not None else ""
            raise ScenarioError(self.source, self.key(name), f"an integer{bounds}", v)
        return v

    def get_float(
        self, name: str, default: float, *, lo: float | None = None, hi: float | None = None
    ) -> float:
        v = self.table.get(name, default)
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
            raise ScenarioError(self.source, self.key(name), "a number", v)
        f = float(v)
        if (lo is not None and f < lo) or (hi is not None and f > hi):
            raise ScenarioError(self.source, self.key(name), f"a number in [{lo}, {hi}]", v)
        return f

    def get_bool(self, name: str, default: bool) -> bool:
        v = self.table.get(name, default)
        if not isinstance(v, bool):
            raise ScenarioError(self.source, self.key(name), "true or false", v)
        return v

    def array(self, name: str) -> list[_Reader]:
        v = self.table.get(name, [])
        if not isinstance(v, list):
            raise ScenarioError(self.source, self.key(name), "an array of tables", v)
        return [_Reader(self.source, f"{self.key(name)}[{i}]", item) for i, item in enumerate(v)]

    def reject_unknown(self, allowed: set[str]) -> None:
        for k in self.table:
            if k not in allowed:
                raise ScenarioError(
                    self.source, self.key(k), f"one of the keys {', '.join(sorted(allowed))}", k
                )


_ROOT_KEYS = {
    "name",
    "preset",
    "seed",
    "hop_limit",
    "collisions",
    "region",
    "channels",
    "nodes",
    "links",
    "messages",
}
_NODE_KEYS = {"name", "num", "role", "long_name", "short_name", "tcp_port", "pty", "device_role"}
_LINK_KEYS = {"a", "b", "snr", "rssi", "loss", "bidirectional"}
_MSG_KEYS = {"at", "from", "text", "channel", "to"}
_CHANNEL_KEYS = {"name", "psk"}


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario TOML file."""
    p = Path(path)
    source = str(p)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ScenarioError(source, "<file>", "a readable file", exc.strerror) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, "<file>", "valid TOML", str(exc)) from exc
    return parse_scenario(raw, source=source, default_name=p.stem)


def parse_scenario(
    raw: dict[str, Any], *, source: str = "<memory>", default_name: str = "scenario"
) -> Scenario:
    root = _Reader(source, "", raw)
    root.reject_unknown(_ROOT_KEYS)
    name = root.get_str("name", default_name)
    preset_name = root.get_str("preset", "LONG_FAST")
    try:
        preset = preset_by_name(preset_name)
    except ValueError:
        raise ScenarioError(
            source, "preset", "a Meshtastic modem preset such as LONG_FAST", preset_name
        ) from None
    seed = root.get_int("seed", 1)
    hop_limit = root.get_int("hop_limit", DEFAULT_HOP_LIMIT, lo=0, hi=MAX_HOP_LIMIT)
    collisions = root.get_bool("collisions", False)
    region = root.get_str("region", "EU_868")

    channels = _parse_channels(root)
    nodes = _parse_nodes(root)
    names = {n.name for n in nodes}
    links = _parse_links(root, names)
    scenario_channel_names = [c.name for c in channels]
    messages = _parse_messages(root, nodes, scenario_channel_names)
    return Scenario(
        name=name,
        nodes=nodes,
        links=links,
        channels=channels,
        messages=messages,
        preset=preset,
        seed=seed,
        hop_limit=hop_limit,
        collisions=collisions,
        region=region,
        source=source,
    )


def _parse_channels(root: _Reader) -> tuple[ChannelSpec, ...]:
    if not root.has("channels"):
        return (ChannelSpec("alerts"), ChannelSpec("reports"))
    out: list[ChannelSpec] = []
    items = root.array("channels")
    if not 1 <= len(items) <= MAX_CHANNELS:
        raise ScenarioError(root.source, "channels", f"1..{MAX_CHANNELS} channel tables", len(items))
    for r in items:
        r.reject_unknown(_CHANNEL_KEYS)
        ch_name = r.get_str("name")
        psk_text = r.get_str("psk", "AQ==")
        try:
            psk = base64.b64decode(psk_text, validate=True)
        except binascii.Error:
            raise ScenarioError(r.source, r.key("psk"), "base64 of 0, 1, 16 or 32 bytes", psk_text) from None
        if len(psk) not in (0, 1, 16, 32):
            raise ScenarioError(r.source, r.key("psk"), "base64 of 0, 1, 16 or 32 bytes", psk_text)
        out.append(ChannelSpec(ch_name, psk))
    return tuple(out)


def _parse_nodes(root: _Reader) -> tuple[NodeSpec, ...]:
    items = root.array("nodes")
    if not items:
        raise ScenarioError(root.source, "nodes", "at least one [[nodes]] table")
    nodes: list[NodeSpec] = []
    seen_names: set[str] = set()
    seen_nums: set[int] = set()
    for r in items:
        r.reject_unknown(_NODE_KEYS)
        node_name = r.get_str("name")
        if node_name in seen_names:
            raise ScenarioError(r.source, r.key("name"), "a unique node name", node_name)
        role_text = r.get_str("role", "handheld")
        try:
            role = Role(role_text)
        except ValueError:
            raise ScenarioError(r.source, r.key("role"), '"relay" or "handheld"', role_text) from None
        num = r.get_int("num", lo=_MIN_NODE_NUM, hi=BROADCAST_NUM - 1) if r.has("num") else None
        tcp_port = r.get_int("tcp_port", lo=0, hi=65535) if r.has("tcp_port") else None
        pty = r.get_bool("pty", False)
        device_role = (r.get_str("device_role", "CLIENT") or "CLIENT").upper()
        if device_role not in DEVICE_ROLES:
            raise ScenarioError(r.source, r.key("device_role"), " or ".join(DEVICE_ROLES), device_role)
        if role is Role.HANDHELD and (tcp_port is not None or pty):
            raise ScenarioError(r.source, r.key("role"), '"relay" for a node with tcp_port or pty', role_text)
        spec = make_node(
            node_name,
            role,
            num=num,
            tcp_port=tcp_port,
            pty=pty,
            device_role=device_role,
            long_name=r.get_str("long_name") if r.has("long_name") else None,
            short_name=r.get_str("short_name") if r.has("short_name") else None,
        )
        if spec.num in seen_nums:
            raise ScenarioError(r.source, r.key("num"), "a node number unique in the scenario", spec.num)
        seen_names.add(node_name)
        seen_nums.add(spec.num)
        nodes.append(spec)
    return tuple(nodes)


def _parse_links(root: _Reader, names: set[str]) -> tuple[LinkSpec, ...]:
    links: list[LinkSpec] = []
    for r in root.array("links"):
        r.reject_unknown(_LINK_KEYS)
        a = r.get_str("a")
        b = r.get_str("b")
        for k, v in (("a", a), ("b", b)):
            if v not in names:
                raise ScenarioError(r.source, r.key(k), "the name of a node in [[nodes]]", v)
        if a == b:
            raise ScenarioError(r.source, r.key("b"), "a node other than a", b)
        links.append(
            LinkSpec(
                a=a,
                b=b,
                snr_db=r.get_float("snr", 8.0, lo=-30.0, hi=30.0),
                rssi_dbm=int(r.get_float("rssi", -90.0, lo=-150.0, hi=0.0)),
                loss=r.get_float("loss", 0.0, lo=0.0, hi=1.0),
                bidirectional=r.get_bool("bidirectional", True),
            )
        )
    return tuple(links)


def _parse_messages(
    root: _Reader, nodes: tuple[NodeSpec, ...], channel_names: list[str]
) -> tuple[ScriptedMessage, ...]:
    by_name = {n.name: n for n in nodes}
    out: list[ScriptedMessage] = []
    for r in root.array("messages"):
        r.reject_unknown(_MSG_KEYS)
        sender = r.get_str("from")
        if sender not in by_name:
            raise ScenarioError(r.source, r.key("from"), "the name of a node in [[nodes]]", sender)
        text = r.table.get("text")
        if not isinstance(text, str):
            raise ScenarioError(r.source, r.key("text"), "a string", text)
        channel_raw = r.table.get("channel", 0)
        if isinstance(channel_raw, str) and channel_raw in channel_names:
            channel_index = channel_names.index(channel_raw)
        elif (
            isinstance(channel_raw, int)
            and not isinstance(channel_raw, bool)
            and 0 <= channel_raw < len(channel_names)
        ):
            channel_index = channel_raw
        else:
            raise ScenarioError(
                r.source,
                r.key("channel"),
                f"a channel index 0..{len(channel_names) - 1} or one of {channel_names}",
                channel_raw,
            )
        to = r.get_str("to") if r.has("to") else None
        if to is not None and to not in by_name:
            raise ScenarioError(r.source, r.key("to"), "the name of a node in [[nodes]]", to)
        out.append(
            ScriptedMessage(
                at_s=r.get_float("at", 0.0, lo=0.0),
                sender=sender,
                text=text,
                channel_index=channel_index,
                to=to,
            )
        )
    return tuple(sorted(out, key=lambda m: m.at_s))
