"""Notices about forgeries heard on RF: when, what they say, and their abuse bounds."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from relayd.core.model import DropReason
from relayd.core.notice import NOTICE_PREFIX, ForgeryNotices, NoticePolicy, claims_to_be_an_alert
from tests.core.protocol_support import Net

TOKEN = "A" * 100


def forged(text: str) -> str:
    return f"{text}\n{TOKEN}"


def test_frames_that_ring_or_carry_a_token_claim_to_be_alerts_and_chat_does_not() -> None:
    assert claims_to_be_an_alert("\x07Police raid at 5th")
    assert claims_to_be_an_alert(forged("Police raid at 5th"))
    assert not claims_to_be_an_alert("anyone up for coffee?")
    assert not claims_to_be_an_alert("two lines\nof chat")


def test_a_forgery_gets_one_short_clean_notice() -> None:
    notices = ForgeryNotices()
    text = forged("\x07Police raid at 5th & Main, everyone\x1b[2J out now")
    notice = notices.consider(text, DropReason.BAD_SIGNATURE, 1000.0)
    quote = "Police raid at 5th & Mai"
    assert notice == f'{NOTICE_PREFIX}: the message starting "{quote}" is not a verified alert.'
    assert len(notice.encode()) < 120
    assert notices.consider(text, DropReason.BAD_SIGNATURE, 5000.0) is None  # once per text


def test_genuine_alerts_replays_and_limits_get_no_notice() -> None:
    notices = ForgeryNotices()
    reasons = (DropReason.REPLAY, DropReason.DUPLICATE, DropReason.EXPIRED, DropReason.RATE_LIMITED, None)
    for reason in reasons:
        assert notices.consider(forged("Police at 5th"), reason, 0.0) is None


def test_a_forgery_that_copies_a_genuine_alerts_opening_is_never_disowned(net: Net) -> None:
    notices = ForgeryNotices()
    genuine = net.frame("dispatcher", "Police at 5th & Main: observers needed").onair
    notices.genuine(genuine)
    copy = forged("Police at 5th & Main: observers needed NOW")
    assert notices.consider(copy, DropReason.BAD_SIGNATURE, 0.0) is None
    assert notices.withheld == 1


def test_notices_are_rate_limited_per_relay() -> None:
    policy = NoticePolicy(min_interval_s=120.0, max_per_hour=3)
    notices = ForgeryNotices(policy)
    sent = [
        notices.consider(forged(f"Raid number {i} at Oak"), DropReason.UNKNOWN_KEY, i * 60.0)
        for i in range(12)
    ]
    times = [i * 60.0 for i, n in enumerate(sent) if n is not None]
    assert len(times) <= 3 + 1  # the hour's window slides by the end
    assert all(b - a >= 120.0 for a, b in itertools.pairwise(times))


@given(st.lists(st.tuples(st.text(min_size=1, max_size=60), st.floats(0, 7200)), max_size=60))
def test_never_more_notices_than_the_bounds_allow(frames: list[tuple[str, float]]) -> None:
    policy = NoticePolicy()
    notices = ForgeryNotices(policy)
    times = []
    for text, now in sorted(frames, key=lambda f: f[1]):
        if notices.consider(forged("\x07" + text), DropReason.BAD_SIGNATURE, now) is not None:
            times.append(now)
    assert all(b - a >= policy.min_interval_s for a, b in itertools.pairwise(times))
    for t in times:
        assert sum(1 for u in times if t <= u < t + 3600.0) <= policy.max_per_hour
