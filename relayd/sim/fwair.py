"""What the real-firmware backend saw go on air: one record per frame a node transmitted.

A SimRadio node's SIMULATOR_APP frame carries a `Compressed` protobuf: the original portnum and
payload, or portnum UNKNOWN_APP and the ciphertext for a packet the node could not decrypt (a PKI
direct message it relays). Tests and benchmarks count these records against what relays claim.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import DecodeError
from meshtastic.protobuf import mesh_pb2

from relayd.sim.medium import AirPacket

AIR_LOG_MAX = 20_000


@dataclass(frozen=True, slots=True)
class OnAir:
    at_s: float  # backend time (wall seconds since the neighborhood started)
    node: str  # the radio that transmitted it
    from_num: int  # the packet's origin (another node's number for a repeat)
    packet_id: int
    hop_limit: int
    portnum: int  # 0 (UNKNOWN_APP) for a frame carried as ciphertext, or one that did not parse
    payload: bytes


def on_air_record(at_s: float, node: str, air: AirPacket) -> OnAir:
    portnum, payload = 0, b""
    try:
        inner = mesh_pb2.Compressed.FromString(air.data)
    except DecodeError:
        pass
    else:
        portnum, payload = int(inner.portnum), bytes(inner.data)
    return OnAir(at_s, node, air.from_num, air.packet_id, air.hop_limit, portnum, payload)


__all__ = ["AIR_LOG_MAX", "OnAir", "on_air_record"]
