"""The values the simulated medium (relayd.sim.medium) trades with its caller: the frame a radio
puts on air (`AirPacket`), and the events and statistics the medium hands back.

The neighborhood turns each event into a call on a radio's firmware model (a delivery, an implicit
ACK, a frame on air, a timer); the statistics feed the benchmarks and the control port.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from relayd.meshapi.packets import BROADCAST_NUM


@dataclass(frozen=True, slots=True)
class AirPacket:
    """What one LoRa frame carries (the 16-byte header fields + the Data protobuf)."""

    from_num: int
    to_num: int
    packet_id: int
    channel_index: int
    hop_limit: int
    hop_start: int
    want_ack: bool
    data: bytes  # encoded meshtastic Data protobuf (portnum, payload, ...)
    relay_node: int = 0  # last byte of the transmitting node (header field; real-firmware backend)

    @property
    def key(self) -> tuple[int, int]:
        return (self.from_num, self.packet_id)

    @property
    def is_broadcast(self) -> bool:
        return self.to_num == BROADCAST_NUM


class LossReason(Enum):
    """Why a node that was in range of a frame did not demodulate it."""

    HALF_DUPLEX = "half_duplex"  # the receiver was itself transmitting
    COLLISION = "collision"  # another frame overlapped it at the receiver
    LINK_LOSS = "link_loss"  # the link's random loss
    FADE = "fade"  # every copy lost to a fade a test injected (Medium.fade_for)


@dataclass(frozen=True, slots=True)
class AirLoss:
    """A copy of `packet` a node was in range of and lost on the air."""

    packet: AirPacket
    reason: LossReason


@dataclass(frozen=True, slots=True)
class Delivery:
    """A new packet addressed to `node` (or broadcast) arrived; hand it to the node's firmware."""

    at_s: float
    node: str
    packet: AirPacket
    snr_db: float
    rssi_dbm: int
    relayed_by: str  # the node whose transmission carried it (== sender's name on the first hop)


@dataclass(frozen=True, slots=True)
class EchoHeard:
    """`node` heard someone rebroadcast a packet it originated: firmware's implicit ACK."""

    at_s: float
    node: str
    packet_id: int


@dataclass(frozen=True, slots=True)
class Transmitted:
    at_s: float
    node: str
    packet: AirPacket
    airtime_s: float
    rebroadcast: bool


@dataclass(frozen=True, slots=True)
class TimerFired:
    at_s: float
    token: int


MediumEvent = Delivery | EchoHeard | Transmitted | TimerFired


@dataclass(frozen=True, slots=True)
class NodeStats:
    frames_sent: int
    airtime_s: float
    busy_s: float  # time this node's channel was busy (own + heard transmissions)
    deliveries: int
    rebroadcasts: int
    cancelled_rebroadcasts: int
    duplicates_heard: int


@dataclass(frozen=True, slots=True)
class MediumStats:
    now_s: float
    frames_sent: int
    rebroadcasts: int
    cancelled_rebroadcasts: int
    receptions: int  # frames successfully demodulated (including duplicates)
    deliveries: int  # new packets handed to firmware (unique per node)
    collisions: int  # receptions lost to overlap
    lost: int  # receptions lost to link loss
    half_duplex_misses: int  # receptions missed because the receiver was transmitting
    queue_full_drops: int
    total_airtime_s: float
    nodes: dict[str, NodeStats]

    def channel_utilization(self, node: str) -> float:
        """Fraction of elapsed sim time the channel was busy as `node` saw it."""
        return self.nodes[node].busy_s / self.now_s if self.now_s > 0 else 0.0

    @property
    def max_channel_utilization(self) -> float:
        return max((self.channel_utilization(n) for n in self.nodes), default=0.0)
