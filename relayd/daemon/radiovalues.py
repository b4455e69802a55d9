"""What relayd's radio link hands its callers: a received text, and why a send did not happen."""

from __future__ import annotations

from dataclasses import dataclass

from relayd.meshapi.packets import BROADCAST_NUM, node_id
from relayd.meshapi.routing import Answer


class RadioUnavailableError(Exception):
    """The radio is not connected, dropped while sending, or stopped answering."""


class PacketIgnoredError(Exception):
    """The radio answers heartbeats but said nothing about this packet.

    The firmware ignores, without any answer, a client packet whose id it saw recently
    (``PhoneAPI::wasSeenRecently``): a resend of a frame it already has. Its fate arrives
    later as an ACK or MAX_RETRANSMIT for that id."""

    def __init__(self, packet_id: int) -> None:
        super().__init__(f"radio ignored packet {packet_id:#x} (id seen recently)")
        self.packet_id = packet_id


class SendRejectedError(Exception):
    """The radio refused a packet; ``answer`` says why and whether a retry can help."""

    def __init__(self, packet_id: int, answer: Answer) -> None:
        super().__init__(f"radio refused packet {packet_id:#x}: {answer.name}")
        self.packet_id = packet_id
        self.answer = answer

    @property
    def code(self) -> int:
        return self.answer.code


@dataclass(frozen=True, slots=True)
class ReceivedText:
    radio: str
    from_node: int
    to_node: int
    packet_id: int
    channel: int
    payload: bytes
    rx_time_s: float
    hop_start: int
    hop_limit: int
    # Received by the radio before we connected (while relayd restarted or the cable was
    # out): not news to relay, but still evidence of what went on air meanwhile.
    backlog: bool = False
    # A Meshtastic reply or tapback: the packet id it answers (0: none), and whether the
    # payload is an emoji (relayd/core/replies.py reads both).
    reply_id: int = 0
    emoji: bool = False

    @property
    def is_direct(self) -> bool:
        return self.to_node != BROADCAST_NUM

    @property
    def from_id(self) -> str:
        return node_id(self.from_node)


__all__ = ["PacketIgnoredError", "RadioUnavailableError", "ReceivedText", "SendRejectedError"]
