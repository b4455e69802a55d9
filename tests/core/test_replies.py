"""Responders' answers to alerts (relayd/core/replies.py): parsing, naming the alert, limits."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.model import DropReason
from relayd.core.replies import (
    KEYWORDS,
    REPLIES_PER_HANDHELD,
    PacketAlerts,
    ReplyDesk,
    ReplyOutcome,
    ReplyWord,
    answered_alert,
    parse_reply,
    reply_of_report,
)

NOW_S = 1_800_000_000.0
A1 = bytes.fromhex("a1a1a1a1a1a1a1a1")
A2 = bytes.fromhex("a2a2a2a2a2a2a2a2")


@dataclass(frozen=True)
class Live:
    alert_id: bytes
    issued_at_s: int
    expires_at_s: int


ACTIVE = [Live(A1, int(NOW_S) - 100, int(NOW_S) + 600), Live(A2, int(NOW_S) - 10, int(NOW_S) + 600)]


def test_every_keyword_spelling_parses_case_and_spaces_aside() -> None:
    assert parse_reply("!y") is ReplyWord.YES
    assert parse_reply("  !YES ") is ReplyWord.YES
    assert parse_reply("!OMW") is ReplyWord.ON_MY_WAY
    assert parse_reply("!here") is ReplyWord.HERE
    assert parse_reply("!No") is ReplyWord.NO


def test_a_keyword_inside_a_longer_text_is_not_an_answer() -> None:
    assert parse_reply("!y but only after 9") is None
    assert parse_reply("!r two vans at Oak & 3rd") is None
    assert parse_reply("yes") is None
    assert parse_reply("") is None


def test_tapbacks_map_the_apps_first_emoji_and_ignore_the_rest() -> None:
    assert parse_reply("\U0001f44d", emoji=True) is ReplyWord.YES
    assert parse_reply("\U0001f44d\U0001f3fd", emoji=True) is ReplyWord.YES  # skin tone
    assert parse_reply("\u2705\ufe0f", emoji=True) is ReplyWord.YES  # variation selector
    assert parse_reply("\U0001f44e", emoji=True) is ReplyWord.NO
    assert parse_reply("\u2764", emoji=True) is None  # a heart answers nothing countable
    assert parse_reply("!y", emoji=True) is None  # a tapback's payload is an emoji


def test_only_no_is_not_responding() -> None:
    assert [w for w in ReplyWord if not w.responding] == [ReplyWord.NO]


@given(st.text(max_size=40))
def test_parse_never_raises_and_only_whole_keywords_answer(text: str) -> None:
    word = parse_reply(text)
    assert (word is not None) == (text.strip().casefold() in KEYWORDS)


def test_without_a_reply_id_the_newest_active_alert_is_answered() -> None:
    assert answered_alert(0, PacketAlerts(), ACTIVE, NOW_S) == A2


def test_without_any_active_alert_nothing_is_answered() -> None:
    expired = [Live(A1, int(NOW_S) - 100, int(NOW_S) - 1)]
    assert answered_alert(0, PacketAlerts(), expired, NOW_S) is None
    assert answered_alert(0, PacketAlerts(), [], NOW_S) is None


def test_a_tapback_names_the_alert_under_its_packet_id_only_while_active() -> None:
    packets = PacketAlerts()
    packets.note(0x1234, A1)
    assert answered_alert(0x1234, packets, ACTIVE, NOW_S) == A1  # not the newest: the one tapped
    assert answered_alert(0x9999, packets, ACTIVE, NOW_S) is None  # a chat message's packet
    assert answered_alert(0x1234, packets, ACTIVE[1:], NOW_S) is None  # A1 no longer active


def test_packet_ids_are_bounded() -> None:
    packets = PacketAlerts(max_entries=2)
    for pid in (1, 2, 3):
        packets.note(pid, A1)
    assert len(packets) == 2
    assert packets.alert_for(1) is None
    assert packets.alert_for(3) == A1


def _ask(desk: ReplyDesk, node: int, packet_id: int, text: str) -> ReplyOutcome | None:
    return desk.consider(node, packet_id, text, reply_id=0, emoji=False, active=ACTIVE, now_s=NOW_S)


def test_desk_wraps_limits_and_hands_back_each_answer_once() -> None:
    desk = ReplyDesk()
    outcomes = [_ask(desk, 7, pid, "!omw") for pid in range(1, 7)]
    wrapped = [o for o in outcomes if o is not None and o.wrapped is not None]
    assert len(wrapped) == REPLIES_PER_HANDHELD.burst
    limited = [o for o in outcomes if o is not None and o.drop is DropReason.RATE_LIMITED]
    assert len(limited) == 6 - REPLIES_PER_HANDHELD.burst
    # Another handheld has its own bucket.
    other = _ask(desk, 8, 1, "!y")
    assert other is not None
    assert other.wrapped is not None
    assert other.wrapped.ref == A2
    assert desk.take(7, 1) is not None
    assert desk.take(7, 1) is None
    assert _ask(desk, 7, 99, "!r report") is None


def test_an_answer_to_nothing_is_dropped_as_unknown_reference() -> None:
    outcome = ReplyDesk().consider(7, 1, "!y", reply_id=0, emoji=False, active=[], now_s=NOW_S)
    assert outcome is not None
    assert outcome.drop is DropReason.UNKNOWN_REFERENCE
    assert "!y" in outcome.detail


def test_a_wrapped_report_reads_back_as_a_reply_only_with_a_ref_and_canonical_text() -> None:
    assert reply_of_report("!omw", A1) is ReplyWord.ON_MY_WAY
    assert reply_of_report("!omw", None) is None  # a field report that says "!omw"
    assert reply_of_report("!yes", A1) is None  # the relay writes only canonical keywords
    assert reply_of_report("two vans", A1) is None
