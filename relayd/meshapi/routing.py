"""What the firmware's answers to a sent packet mean, decided without I/O.

The firmware answers every packet a client hands it with a ``QueueStatus`` (``res`` is an
``ErrorCode`` or a ``Routing.Error`` code) and, for failures and for ``want_ack`` packets, a
``Routing`` message to the packet's ``from`` with ``request_id`` = the packet id. Sources
(meshtastic/firmware 2.8): ``PhoneAPI::handleToRadioPacket`` (text rate limit: ``res = 0``
*plus* RATE_LIMIT_EXCEEDED), ``Router::send`` / ``perhapsEncode`` (TOO_LARGE, NO_CHANNEL,
PKI_SEND_FAIL_PUBLIC_KEY), ``RadioLibInterface::send`` (queue full: ``ERRNO_UNKNOWN``),
``ReliableRouter`` (implicit ACK on hearing a rebroadcast; MAX_RETRANSMIT after 3 tries).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

# meshtastic.protobuf.mesh_pb2.Routing.Error
NONE = 0
NO_ROUTE = 1
GOT_NAK = 2
TIMEOUT = 3
NO_INTERFACE = 4
MAX_RETRANSMIT = 5
NO_CHANNEL = 6
TOO_LARGE = 7
NO_RESPONSE = 8
DUTY_CYCLE_LIMIT = 9
BAD_REQUEST = 32
NOT_AUTHORIZED = 33
PKI_FAILED = 34
PKI_UNKNOWN_PUBKEY = 35
RATE_LIMIT_EXCEEDED = 38
PKI_SEND_FAIL_PUBLIC_KEY = 39

# firmware ErrorCode.h, as they appear in QueueStatus.res
ERRNO_OK = 0
ERRNO_UNKNOWN = 32  # RadioLibInterface::send: the transmit queue was full
ERRNO_NO_INTERFACES = 33
ERRNO_DISABLED = 34  # radio disabled (e.g. no region set)

_ROUTING_NAMES = {
    NONE: "NONE",
    NO_ROUTE: "NO_ROUTE",
    GOT_NAK: "GOT_NAK",
    TIMEOUT: "TIMEOUT",
    NO_INTERFACE: "NO_INTERFACE",
    MAX_RETRANSMIT: "MAX_RETRANSMIT",
    NO_CHANNEL: "NO_CHANNEL",
    TOO_LARGE: "TOO_LARGE",
    NO_RESPONSE: "NO_RESPONSE",
    DUTY_CYCLE_LIMIT: "DUTY_CYCLE_LIMIT",
    BAD_REQUEST: "BAD_REQUEST",
    NOT_AUTHORIZED: "NOT_AUTHORIZED",
    PKI_FAILED: "PKI_FAILED",
    PKI_UNKNOWN_PUBKEY: "PKI_UNKNOWN_PUBKEY",
    RATE_LIMIT_EXCEEDED: "RATE_LIMIT_EXCEEDED",
    PKI_SEND_FAIL_PUBLIC_KEY: "PKI_SEND_FAIL_PUBLIC_KEY",
}
_QUEUE_NAMES = {
    ERRNO_UNKNOWN: "QUEUE_FULL",
    ERRNO_NO_INTERFACES: "NO_INTERFACES",
    ERRNO_DISABLED: "RADIO_DISABLED",
}


class Disposition(enum.Enum):
    """What to do with a packet after the firmware's answer."""

    ON_AIR = "on_air"  # the firmware transmitted it (implicit ACK, or tried 3 times)
    RETRY = "retry"  # not sent; the same frame can go later (rate limit, duty cycle, queue full)
    FINAL = "final"  # not sent, and sending it again cannot help (too large, no channel)
    OTHER_PATH = "other_path"  # not sent this way (no PKI key for a DM): needs another route


@dataclass(frozen=True, slots=True)
class Answer:
    code: int
    name: str
    disposition: Disposition
    retry_after_s: float = 0.0

    @property
    def sent(self) -> bool:
        return self.disposition is Disposition.ON_AIR


# How long to wait before offering the radio a refused frame again. The text rate limit
# clears 2 s after the last accepted text; the duty-cycle limit clears as the hour's window
# slides, so a short wait only earns another refusal; a full queue drains at about one
# max-size LongFast frame (~2.2 s) per slot.
RATE_LIMIT_RETRY_S = 2.5
DUTY_CYCLE_RETRY_S = 60.0
QUEUE_FULL_RETRY_S = 5.0
NO_INTERFACE_RETRY_S = 30.0


def routing_name(code: int) -> str:
    return _ROUTING_NAMES.get(code, f"ROUTING_{code}")


def classify_routing(code: int, *, broadcast: bool) -> Answer:
    """A ``Routing.error_reason`` our radio sent us about one of our packets."""
    name = routing_name(code)
    if code == NONE:
        # An ACK: for a broadcast, the implicit ACK of hearing a neighbour repeat it.
        return Answer(code, name, Disposition.ON_AIR)
    if code == MAX_RETRANSMIT and broadcast:
        # ReliableRouter put it on air NUM_RELIABLE_RETX times and heard no one repeat it.
        return Answer(code, name, Disposition.ON_AIR)
    if code == RATE_LIMIT_EXCEEDED:
        return Answer(code, name, Disposition.RETRY, RATE_LIMIT_RETRY_S)
    if code == DUTY_CYCLE_LIMIT:
        return Answer(code, name, Disposition.RETRY, DUTY_CYCLE_RETRY_S)
    if code == NO_INTERFACE:
        return Answer(code, name, Disposition.RETRY, NO_INTERFACE_RETRY_S)
    if code in (PKI_SEND_FAIL_PUBLIC_KEY, PKI_UNKNOWN_PUBKEY, PKI_FAILED):
        return Answer(code, name, Disposition.OTHER_PATH)
    # TOO_LARGE, NO_CHANNEL, BAD_REQUEST, NOT_AUTHORIZED, and for DMs NO_ROUTE, GOT_NAK,
    # TIMEOUT, MAX_RETRANSMIT, NO_RESPONSE: the same frame would meet the same answer.
    return Answer(code, name, Disposition.FINAL)


def classify_queue_result(res: int, *, broadcast: bool) -> Answer | None:
    """``QueueStatus.res`` for our packet: None when the radio queued it (``res = 0``).

    ``res = 0`` is not proof of acceptance: the text rate limit answers ``res = 0`` and then
    a Routing error, so the caller keeps listening for one."""
    if res == ERRNO_OK:
        return None
    if res == ERRNO_UNKNOWN:
        return Answer(res, _QUEUE_NAMES[res], Disposition.RETRY, QUEUE_FULL_RETRY_S)
    if res in (ERRNO_NO_INTERFACES, ERRNO_DISABLED):
        return Answer(res, _QUEUE_NAMES[res], Disposition.RETRY, NO_INTERFACE_RETRY_S)
    return classify_routing(res, broadcast=broadcast)
