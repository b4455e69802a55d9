"""Responders' replies to an alert: what a handheld's short answer means, and which alert it
answers. Pure: the relay passes texts, packet ids and the time.

A responder carries a stock Meshtastic handheld, so a reply is either a short keyword typed
as a message (`!y`, `!omw`, `!here`, `!n`; docs/protocol.md section 9b) or the app's own
reply / tapback, which carries `Data.reply_id`: the packet id under which the alert was on
air. Only a relay knows that id: the one that transmitted the alert (its radio's packet id)
and every relay that heard it on RF (a rebroadcast keeps the id). `PacketAlerts` remembers it.

A keyword without a reply id answers the newest alert still active that the relay knows.
The relay wraps the answer into a report referring to that alert (signed by the relay, like
any report) so dispatchers can count who is responding; it never goes back on RF.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from relayd.core.dedup import BoundedMap
from relayd.core.model import DropReason
from relayd.core.ratelimit import RateLimit

# Packet ids remembered for tapbacks: an alert's packets for a busy night, a few KB.
PACKET_ALERTS_MAX = 4096
# A responder may change their mind (yes, then on my way, then here): a burst of 4, then one
# a minute. Beyond that the reply is dropped and counted `rate_limited`.
REPLIES_PER_HANDHELD = RateLimit(burst=4, per_s=1 / 60)
# Handhelds with a bucket: bounded, the oldest forgotten (a forgotten one starts full).
REPLY_SENDERS_MAX = 4096


class ReplyWord(enum.Enum):
    """What a responder says about an alert. The value is the canonical keyword, which is also
    the text of the wrapped report."""

    YES = "!y"  # I can respond
    ON_MY_WAY = "!omw"
    HERE = "!here"  # on scene
    NO = "!n"  # I cannot respond

    @property
    def responding(self) -> bool:
        """Counts towards "how many are responding"."""
        return self is not ReplyWord.NO

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    ReplyWord.YES: "can respond",
    ReplyWord.ON_MY_WAY: "on my way",
    ReplyWord.HERE: "on scene",
    ReplyWord.NO: "cannot respond",
}

# Every spelling accepted, lower-case, without surrounding spaces.
KEYWORDS: dict[str, ReplyWord] = {
    "!y": ReplyWord.YES,
    "!yes": ReplyWord.YES,
    "!omw": ReplyWord.ON_MY_WAY,
    "!here": ReplyWord.HERE,
    "!n": ReplyWord.NO,
    "!no": ReplyWord.NO,
}

# Tapbacks (Data.emoji set): the emoji the Meshtastic apps offer first. Any other emoji is
# not an answer anyone could count on, so it is ignored.
TAPBACKS: dict[str, ReplyWord] = {
    "\U0001f44d": ReplyWord.YES,  # thumbs up
    "\u2705": ReplyWord.YES,  # check mark
    "\U0001f3c3": ReplyWord.ON_MY_WAY,  # runner
    "\U0001f697": ReplyWord.ON_MY_WAY,  # car
    "\U0001f4cd": ReplyWord.HERE,  # pin
    "\U0001f44e": ReplyWord.NO,  # thumbs down
    "\u274c": ReplyWord.NO,  # cross
}


def parse_reply(text: str, *, emoji: bool = False) -> ReplyWord | None:
    """The answer a handheld's text gives, or None if it is not one.

    A keyword must be the whole message (a report `!r …` or chat mentioning `!y` is not an
    answer); case and surrounding spaces do not matter. A tapback's payload is one emoji,
    possibly with a variation selector (U+FE0F) or a skin tone.
    """
    if emoji:
        core = "".join(c for c in text.strip() if c != "\ufe0f" and not "\U0001f3fb" <= c <= "\U0001f3ff")
        return TAPBACKS.get(core)
    return KEYWORDS.get(text.strip().casefold())


class Answerable(Protocol):
    """An alert a reply may answer: active, not a report, as the relay knows it (the relay's
    catch-up frames, relayd/core/catchup.py `ActiveFrame`, are such)."""

    @property
    def alert_id(self) -> bytes: ...
    @property
    def issued_at_s(self) -> int: ...
    @property
    def expires_at_s(self) -> int: ...


class PacketAlerts:
    """Packet id -> alert id, for the alerts this relay put on air or heard on RF. Bounded."""

    def __init__(self, max_entries: int = PACKET_ALERTS_MAX) -> None:
        self._map: BoundedMap[int, bytes] = BoundedMap(max_entries)

    def note(self, packet_id: int, alert_id: bytes) -> None:
        if packet_id:
            self._map.put(packet_id, alert_id)

    def alert_for(self, packet_id: int) -> bytes | None:
        return self._map.get(packet_id)

    def __len__(self) -> int:
        return len(self._map)


def answered_alert(
    reply_id: int, packets: PacketAlerts, active: Iterable[Answerable], now_s: float
) -> bytes | None:
    """Which alert a reply answers, or None when none can be named.

    With a reply id (a Meshtastic reply or tapback), only the alert under that packet id, and
    only while it is active: a tapback on a chat message or an expired alert answers nothing.
    Without one, the newest active alert.
    """
    live = [a for a in active if now_s < a.expires_at_s]
    if reply_id:
        alert_id = packets.alert_for(reply_id)
        if alert_id is None:
            return None
        return alert_id if any(a.alert_id == alert_id for a in live) else None
    if not live:
        return None
    return max(live, key=lambda a: (a.issued_at_s, a.alert_id)).alert_id


@dataclass(frozen=True, slots=True)
class WrappedReply:
    """What the relay publishes: a report referring to `ref` whose text is the keyword."""

    ref: bytes
    word: ReplyWord

    @property
    def text(self) -> str:
        return self.word.value


def reply_of_report(text: str, ref: bytes | None) -> ReplyWord | None:
    """A wrapped report read back (by a console): the answer it carries, if it is a reply.

    A reply is a report that refers to an alert and whose text is a canonical keyword; any
    other report is a field report."""
    if ref is None:
        return None
    word = KEYWORDS.get(text)
    return word if word is not None and word.value == text else None


class ReplyLimiter:
    """A token bucket per handheld (REPLIES_PER_HANDHELD) in a bounded table.

    `time_scale` is the simulator's mesh time per wall second (1 on a real mesh)."""

    def __init__(self, limit: RateLimit = REPLIES_PER_HANDHELD, max_senders: int = REPLY_SENDERS_MAX) -> None:
        self.limit = limit
        self._buckets: BoundedMap[int, tuple[float, float]] = BoundedMap(max_senders)

    def allow(self, node: int, now_s: float, time_scale: float = 1.0) -> bool:
        burst = float(self.limit.burst)
        tokens, at = self._buckets.get(node) or (burst, now_s)
        tokens = min(burst, tokens + max(0.0, now_s - at) * self.limit.per_s * time_scale)
        allowed = tokens >= 1.0
        self._buckets.put(node, (tokens - 1.0 if allowed else tokens, now_s))
        return allowed


@dataclass(frozen=True, slots=True)
class ReplyOutcome:
    """A handheld's text that is an answer: wrapped for dispatchers, or dropped with a reason."""

    wrapped: WrappedReply | None
    drop: DropReason | None = None
    detail: str = ""


# Replies wrapped and waiting for the relay's turn to publish them, by handheld packet.
PENDING_REPLIES_MAX = 1024


class ReplyDesk:
    """One per relay: recognises answers, names the alert they answer, limits each handheld,
    and keeps each wrapped answer until the relay publishes it (by handheld packet)."""

    def __init__(self) -> None:
        self.packets = PacketAlerts()
        self.limiter = ReplyLimiter()
        self._pending: BoundedMap[tuple[int, int], WrappedReply] = BoundedMap(PENDING_REPLIES_MAX)
        self.wrapped = 0  # answers wrapped for publishing (the relay's `replies` counter)

    def consider(
        self,
        node: int,
        packet_id: int,
        text: str,
        *,
        reply_id: int,
        emoji: bool,
        active: Iterable[Answerable],
        now_s: float,
        time_scale: float = 1.0,
    ) -> ReplyOutcome | None:
        """None when `text` is not an answer (the caller goes on: report, alert, chat)."""
        word = parse_reply(text, emoji=emoji)
        if word is None:
            return None
        ref = answered_alert(reply_id, self.packets, active, now_s)
        if ref is None:
            what = "a reply to a packet that is no active alert" if reply_id else "no active alert"
            return ReplyOutcome(None, DropReason.UNKNOWN_REFERENCE, f"answer {word.value}: {what}")
        if not self.limiter.allow(node, now_s, time_scale):
            return ReplyOutcome(None, DropReason.RATE_LIMITED, "answers from a handheld over its limit")
        wrapped = WrappedReply(ref, word)
        self._pending.put((node, packet_id), wrapped)
        return ReplyOutcome(wrapped)

    def take(self, node: int, packet_id: int) -> WrappedReply | None:
        """The wrapped answer for a handheld packet the relay is about to publish, if it is one."""
        wrapped = self._pending.pop((node, packet_id))
        if wrapped is not None:
            self.wrapped += 1
        return wrapped
