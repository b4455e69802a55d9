"""The want_config handshake of a simulated radio: the FromRadio messages a firmware 2.8 radio
sends its client after want_config_id, in PhoneAPI's state order (src/mesh/PhoneAPI.cpp
getFromRadio). The client session (relayd.sim.phoneapi) emits them; the radio
(relayd.sim.firmware.SimRadio) and its settings (relayd.sim.settings) are what they report.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from meshtastic.protobuf import mesh_pb2

from relayd.sim.scenario import NodeSpec
from relayd.sim.settings import user_for

if TYPE_CHECKING:
    from relayd.sim.firmware import SimRadio

MIN_APP_VERSION = 30200
# want_config_id nonces with a meaning (PhoneAPI SPECIAL_NONCE_ONLY_CONFIG / _ONLY_NODES).
NONCE_ONLY_CONFIG = 69420
NONCE_ONLY_NODES = 69421
# FromRadio.region_presets (field 19) and ModuleConfig field 17 are newer than the protobufs of
# the `meshtastic` package: they are carried as raw fields, with the content firmware 2.8.0 sends
# for its defaults (the region -> legal presets map; the mesh beacon module, off).
_FROMRADIO_REGION_PRESETS = bytes.fromhex(
    "9a01ef010a0c0a0a000103040506070809100a0d0a0b000103040506070a0b0c0d0a0f0a0b000103040506070a0b"
    "0c0d100a0a0f0a0b000103040506070a0b0c0d100d0a080a020e0f100e18010a080a020c0d100d18011202080112"
    "0208021204080310011204081d100212040820100312020804120208051202080612020816120208091202080712"
    "0208081202080a1202080b1202080c1202080e120208101202081112020812120208131202081412020815120208"
    "1712020818120208191202081a1204081b10041204081c1004120408211004120408251005120408221005120408"
    "2310051204082410051202080d"
)
_MODULECONFIG_MESH_BEACON = bytes.fromhex("8a01020805")
# The state files a 2.8 radio lists in its handshake file manifest (FromRadio.fileInfo).
_PREFS_FILES = (
    "/prefs/device.proto",
    "/prefs/nodes.proto",
    "/prefs/channels.proto",
    "/prefs/config.proto",
    "/prefs/module.proto",
)


def _node_info(radio: SimRadio, spec: NodeSpec) -> Any:
    fr = mesh_pb2.FromRadio()
    if spec.num == radio.num:
        fr.node_info.num = radio.num
        fr.node_info.user.CopyFrom(radio.settings.owner)
        fr.node_info.last_heard = int(radio.wall_clock())
        fr.node_info.is_favorite = True
        return fr
    fr.node_info.num = spec.num
    fr.node_info.user.CopyFrom(user_for(spec))
    heard = radio.last_heard.get(spec.num)
    if heard is not None:
        fr.node_info.last_heard = int(heard[0])
        fr.node_info.snr = heard[1]
        fr.node_info.hops_away = heard[2]  # NodeDB: hop_start - hop_limit of the last packet
    return fr


def config_stream(radio: SimRadio, nonce: int) -> list[Any]:
    """The FromRadio sequence of the want_config handshake, in PhoneAPI's state order (2.8):
    my_info, deviceuiConfig, own node_info, metadata, region presets, 8 channels, 10 config
    sections, 17 module sections, the other node_infos, the file manifest, config_complete_id.
    Nonce 69420 leaves out the other node_infos; 69421 sends only the node_infos."""
    sc = radio.scenario
    out: list[Any] = []
    others = [n for n in sc.nodes if n.num != radio.num]
    complete = mesh_pb2.FromRadio()
    complete.config_complete_id = nonce
    if nonce == NONCE_ONLY_NODES:
        return [_node_info(radio, radio.spec), *(_node_info(radio, n) for n in others), complete]

    fr = mesh_pb2.FromRadio()
    fr.my_info.my_node_num = radio.num
    fr.my_info.reboot_count = radio.reboot_count
    fr.my_info.min_app_version = MIN_APP_VERSION
    fr.my_info.device_id = radio.num.to_bytes(4, "big") * 4
    fr.my_info.pio_env = "relayd-sim"
    fr.my_info.nodedb_count = len(sc.nodes)
    out.append(fr)

    fr = mesh_pb2.FromRadio()
    fr.deviceuiConfig.screen_brightness = 153
    fr.deviceuiConfig.screen_timeout = 30
    out.append(fr)

    out.append(_node_info(radio, radio.spec))

    fr = mesh_pb2.FromRadio()
    fr.metadata.CopyFrom(radio.metadata())
    out.append(fr)

    fr = mesh_pb2.FromRadio()
    fr.MergeFromString(_FROMRADIO_REGION_PRESETS)
    out.append(fr)

    for ch in radio.settings.channels:
        fr = mesh_pb2.FromRadio()
        fr.channel.CopyFrom(ch)
        out.append(fr)
    for section in radio.settings.config.values():
        fr = mesh_pb2.FromRadio()
        fr.config.CopyFrom(section)
        out.append(fr)
    for module in radio.settings.module_config.values():
        fr = mesh_pb2.FromRadio()
        fr.moduleConfig.CopyFrom(module)
        out.append(fr)
    fr = mesh_pb2.FromRadio()
    fr.moduleConfig.MergeFromString(_MODULECONFIG_MESH_BEACON)
    out.append(fr)

    if nonce != NONCE_ONLY_CONFIG:
        out.extend(_node_info(radio, n) for n in others)

    for name in _PREFS_FILES:
        fr = mesh_pb2.FromRadio()
        fr.fileInfo.file_name = name
        fr.fileInfo.size_bytes = 100
        out.append(fr)

    out.append(complete)
    return out
