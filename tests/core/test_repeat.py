"""Late repeats (relayd/core/repeat.py): when an urgent alert may go on air once more."""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from relayd.core.model import Severity
from relayd.core.repeat import (
    GONE_EXPIRED,
    GONE_HISTORY,
    GONE_INACTIVE,
    GONE_RESTART,
    HISTORY_MARGIN,
    RECENT_CLIENT_IDS,
    REPEAT_BUDGET_SHARE,
    ClientIds,
    LateRepeats,
    Repeat,
)

RADIO = "lora0"


def repeat(n: int, *, rank: int = Severity.URGENT.rank, expires: int = 3600, traffic: int = 0) -> Repeat:
    return Repeat(bytes([n]) * 8, 1000 + n, f"ALERT {n}", rank, expires, traffic)


def air(repeats: LateRepeats, r: Repeat, radio: str = RADIO, *, crowded: bool = True) -> None:
    """The radio took the frame (in a burst unless told otherwise), then confirmed it on air."""
    repeats.handed(radio, r.alert_id, crowded=crowded)
    repeats.aired(radio, r)


def next_for(
    repeats: LateRepeats,
    ids: ClientIds,
    *,
    now: float = 10.0,
    traffic: int = 0,
    budget: float = 0.0,
    active: frozenset[bytes] | None = None,
) -> Repeat | None:
    return repeats.next_for(
        RADIO,
        now,
        traffic_now=traffic,
        budget_used=budget,
        remembers=ids.remembers,
        still_active=(lambda _a: True) if active is None else active.__contains__,
    )


def test_the_radio_remembers_the_last_20_distinct_ids_and_a_repeated_one_does_not_refresh() -> None:
    ids = ClientIds()
    assert ids.wrote(1)
    assert not ids.wrote(1)  # the radio ignores it
    for n in range(2, RECENT_CLIENT_IDS + 1):
        assert ids.wrote(n)
    assert ids.remembers(1)
    assert ids.wrote(99)  # the 21st distinct id pushes the oldest out
    assert not ids.remembers(1)
    assert ids.wrote(0)
    assert not ids.remembers(0)


def test_a_repeat_waits_until_its_id_has_left_the_radio_s_memory() -> None:
    repeats, ids = LateRepeats(Severity.URGENT.rank), ClientIds()
    first = repeat(1)
    ids.wrote(first.packet_id)
    air(repeats, first)
    for n in range(RECENT_CLIENT_IDS - 1):
        ids.wrote(5000 + n)
        assert next_for(repeats, ids) is None
    ids.wrote(6000)
    assert next_for(repeats, ids) == first
    assert next_for(repeats, ids) is None  # once only
    assert repeats.waiting(RADIO) == 0


def test_only_alerts_as_severe_as_configured_are_repeated() -> None:
    ids = ClientIds()
    urgent_only = LateRepeats(Severity.URGENT.rank)
    air(urgent_only, repeat(1, rank=Severity.WARNING.rank))
    assert urgent_only.waiting(RADIO) == 0
    with_warnings = LateRepeats(Severity.WARNING.rank)
    air(with_warnings, repeat(1, rank=Severity.WARNING.rank))
    assert next_for(with_warnings, ids) is not None
    off = LateRepeats(None)
    air(off, repeat(2))
    assert off.waiting(RADIO) == 0


def test_an_expired_cancelled_or_forgotten_alert_is_given_up_with_its_reason() -> None:
    ids = ClientIds()
    repeats = LateRepeats(Severity.URGENT.rank)
    expired, cancelled, forgotten = repeat(1, expires=5), repeat(2), repeat(3, traffic=10)
    for r in (expired, cancelled, forgotten):
        air(repeats, r)
    active = frozenset({expired.alert_id, forgotten.alert_id})
    assert next_for(repeats, ids, now=10.0, traffic=10 + HISTORY_MARGIN, active=active) is None
    assert repeats.given_up == {GONE_EXPIRED: 1, GONE_INACTIVE: 1, GONE_HISTORY: 1}
    assert repeats.waiting(RADIO) == 0


def test_a_repeat_spends_only_spare_airtime_and_the_oldest_goes_first() -> None:
    ids = ClientIds()
    repeats = LateRepeats(Severity.URGENT.rank)
    air(repeats, repeat(1))
    air(repeats, repeat(2))
    assert next_for(repeats, ids, budget=REPEAT_BUDGET_SHARE) is None
    got = next_for(repeats, ids, budget=REPEAT_BUDGET_SHARE - 0.01)
    assert got is not None
    assert got.alert_id == repeat(1).alert_id


def test_a_handheld_announcing_itself_ends_what_was_waiting_on_that_radio() -> None:
    ids = ClientIds()
    repeats = LateRepeats(Severity.URGENT.rank)
    air(repeats, repeat(1))
    air(repeats, repeat(2), "lora1")
    repeats.node_restarted(RADIO)
    assert next_for(repeats, ids) is None
    assert repeats.given_up == {GONE_RESTART: 1}
    assert repeats.waiting("lora1") == 1


def test_an_alert_confirmed_twice_is_repeated_once() -> None:
    ids = ClientIds()
    repeats = LateRepeats(Severity.URGENT.rank)
    air(repeats, repeat(1))
    air(repeats, repeat(1))
    assert next_for(repeats, ids) is not None
    assert next_for(repeats, ids) is None


def test_an_alert_sent_into_a_quiet_channel_is_not_repeated() -> None:
    ids = ClientIds()
    repeats = LateRepeats(Severity.URGENT.rank)
    air(repeats, repeat(1), crowded=False)
    assert repeats.waiting(RADIO) == 0
    assert next_for(repeats, ids) is None


def test_repeats_are_spaced_by_a_flood_and_fresh_frames_are_not_held_by_them() -> None:
    ids = ClientIds()
    repeats = LateRepeats(Severity.URGENT.rank)
    air(repeats, repeat(1))
    air(repeats, repeat(2))
    first = repeats.next_for(
        RADIO,
        10.0,
        traffic_now=0,
        budget_used=0.0,
        remembers=ids.remembers,
        still_active=lambda _a: True,
        spacing_s=20.0,
    )
    assert first is not None
    assert next_for(repeats, ids, now=29.0) is None
    assert next_for(repeats, ids, now=30.0) is not None


class LateRepeatMachine(RuleBasedStateMachine):
    """Whatever the order of airings, writes, traffic and time: a repeat is handed out at most
    once, never while the radio would ignore its id, never once handhelds may have forgotten
    it, never after it expired or ended, never when the airtime is not spare."""

    @initialize()
    def start(self) -> None:
        self.repeats = LateRepeats(Severity.URGENT.rank)
        self.ids = ClientIds()
        self.now = 0.0
        self.traffic = 0
        self.budget = 0.0
        self.active: set[bytes] = set()
        self.aired: dict[bytes, Repeat] = {}
        self.handed: list[bytes] = []
        self.crowded: set[bytes] = set()

    @rule(n=st.integers(0, 30), rank=st.integers(0, 3), life=st.integers(1, 300), crowded=st.booleans())
    def on_air(self, n: int, rank: int, life: int, crowded: bool) -> None:
        r = Repeat(bytes([n]) * 8, 7000 + n, f"A{n}", rank, int(self.now) + life, self.traffic)
        self.ids.wrote(r.packet_id)
        self.traffic += 1
        self.active.add(r.alert_id)
        if r.alert_id not in self.aired:
            self.aired[r.alert_id] = r
        if crowded:
            self.crowded.add(r.alert_id)
        air(self.repeats, r, crowded=crowded)

    @rule(n=st.integers(1, 25))
    def other_frames(self, n: int) -> None:
        for _ in range(n):
            self.ids.wrote(100_000 + self.traffic)
            self.traffic += 1

    @rule(n=st.integers(1, 60))
    def heard(self, n: int) -> None:
        self.traffic += n

    @rule(dt=st.floats(0.0, 120.0))
    def wait(self, dt: float) -> None:
        self.now += dt

    @rule(share=st.floats(0.0, 1.0))
    def airtime(self, share: float) -> None:
        self.budget = share

    @rule(n=st.integers(0, 30))
    def cancel(self, n: int) -> None:
        self.active.discard(bytes([n]) * 8)

    @rule()
    def idle(self) -> None:
        got = next_for(
            self.repeats,
            self.ids,
            now=self.now,
            traffic=self.traffic,
            budget=self.budget,
            active=frozenset(self.active),
        )
        if got is None:
            return
        assert got.alert_id not in self.handed
        assert got.severity_rank == Severity.URGENT.rank
        assert not self.ids.remembers(got.packet_id)
        assert self.now < got.expires_at_s
        assert got.alert_id in self.active
        assert got.alert_id in self.crowded  # only what went out in a burst
        assert self.traffic - got.traffic_then < HISTORY_MARGIN
        assert self.budget < REPEAT_BUDGET_SHARE
        self.handed.append(got.alert_id)
        self.ids.wrote(got.packet_id)

    @invariant()
    def bounded(self) -> None:
        assert self.repeats.waiting(RADIO) <= len(self.aired)


LateRepeatMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
TestLateRepeats = LateRepeatMachine.TestCase
