"""The outbound core (relayd/core/outbound.py) under any interleaving of what can happen to
an alert on its way to the air, against a model of two radios that keep the frames they
took (and lose them on a reboot) and of the relay's persisted queue across restarts.

Invariants, checked after every step:
- each accepted alert has exactly one terminal outcome once it has left, none before;
- a frame goes to a radio again only after that radio refused or lost it (or the relay
  restarted), and a frame a radio may still hold goes again only under the same packet id;
- nothing is handed to a radio at or after its expiry, or after its cancel;
- an alert heard on RF before it was accepted is never handed to a radio.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from relayd.core.outbound import (
    MAX_SEND_ATTEMPTS,
    Effect,
    GaveUp,
    OnAir,
    Outbound,
    Outcome,
    QueuedAlert,
    Refusal,
    Retrying,
    Send,
    Taken,
    Terminal,
    Withdrawn,
)
from relayd.core.scheduler import AirtimeScheduler, QueueItem, Ready
from relayd.core.suppression import Suppressor

RADIOS = ("radio-a", "radio-b")
IDS = [bytes([i]) * 8 for i in range(4)]
SLOT_S = 1.0
ACK_WAIT_S = 20.0
RATE_LIMIT = Refusal("RATE_LIMIT_EXCEEDED", retry=True, retry_after_s=2.5)
TOO_LARGE = Refusal("TOO_LARGE", retry=False)


def make_outbound(radios: tuple[str, ...] = RADIOS) -> Outbound:
    return Outbound(
        Suppressor("relay-north", SLOT_S, jitter_s=0.0, rng=random.Random(0)),
        {r: AirtimeScheduler(duty_cycle=1.0, window_s=3600.0, min_interval_s=0.0) for r in radios},
        ack_wait_s=ACK_WAIT_S,
        refusal_grace_s=1.0,
        airtime_s=lambda _text: 0.2,
        channel=0,
    )


def test_an_alert_goes_once_per_radio_and_ends_transmitted() -> None:
    out = make_outbound()
    alert = QueuedAlert(IDS[0], "ALERT", 0, 0, 600, release_at_s=1.0)
    assert out.hold(alert, 0.0) == []
    out.due(1.0)
    sends: list[Send] = []
    for radio in RADIOS:
        action = out.next_action(radio, 1.0)
        assert isinstance(action, Ready)
        send = out.send(radio, action.item, lambda: 7)
        assert not send.write_ahead  # a first hand-over: its id is the alert's own
        assert out.taken(send, 1.0) == [Taken(radio, IDS[0], send.packet_id)]
        sends.append(send)
    first = out.answered(RADIOS[0], sends[0].packet_id, None, "ACK", 2.0)
    item = sends[0].item
    # The other radio still has it.
    assert first == [OnAir(RADIOS[0], IDS[0], "ACK", sends[0].packet_id, item)]
    last = out.answered(RADIOS[1], sends[1].packet_id, None, "ACK", 2.0)
    assert last == [
        OnAir(RADIOS[1], IDS[0], "ACK", sends[1].packet_id, item),
        Terminal(IDS[0], Outcome.TRANSMITTED),
    ]
    assert IDS[0] not in out


def test_a_cancel_cannot_call_back_a_taken_frame_and_the_radio_s_word_decides() -> None:
    out = make_outbound()
    out.hold(QueuedAlert(IDS[0], "ALERT", 0, 0, 600, release_at_s=0.0), 0.0)
    out.due(0.0)
    action = out.next_action(RADIOS[0], 0.0)
    assert isinstance(action, Ready)
    send = out.send(RADIOS[0], action.item, lambda: 9)
    out.taken(send, 0.0)
    # radio-b's copy is unqueued; radio-a holds a frame: the row goes, the outcome waits.
    assert out.cancel(IDS[0]) == [Withdrawn(IDS[0], "cancelled")]
    assert out.answered(RADIOS[0], send.packet_id, RATE_LIMIT, "RATE_LIMIT_EXCEEDED", 1.0) == [
        Terminal(IDS[0], Outcome.CANCELLED)
    ]
    assert len(out.schedulers[RADIOS[0]]) == 0  # not retried after its cancel


def test_an_in_doubt_frame_is_moot_once_another_relay_is_heard_sending_it() -> None:
    out = make_outbound()
    out.hold(QueuedAlert(IDS[0], "ALERT", 0, 0, 600, release_at_s=0.0), 0.0)
    out.due(0.0)
    for radio in RADIOS:
        action = out.next_action(radio, 0.0)
        assert isinstance(action, Ready)
        out.taken(out.send(radio, action.item, lambda: 9), 0.0)
    assert out.heard(IDS[0]) == []  # both radios hold it: nothing to take back
    assert out.radio_lost(RADIOS[0], 1.0) == [Withdrawn(IDS[0], "suppressed")]
    assert out.radio_lost(RADIOS[1], 1.0) == [Terminal(IDS[0], Outcome.SUPPRESSED)]


@dataclass
class FakeRadio:
    """What a Meshtastic radio does with the frames a client writes: it keeps a taken frame
    until it answers for it, ignores a write that reuses an id it holds, and forgets
    everything on a reboot."""

    holding: dict[int, bytes] = field(default_factory=dict)  # packet id -> alert id


class OutboundMachine(RuleBasedStateMachine):
    names: tuple[str, ...] = RADIOS

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.out = make_outbound(self.names)
        self.radios = {r: FakeRadio() for r in self.names}
        self.rows: dict[bytes, QueuedAlert] = {}  # the persisted queue
        self.accepted: set[bytes] = set()
        self.terminals: dict[bytes, list[Terminal]] = {}
        self.cancelled: set[bytes] = set()
        self.heard_first: set[bytes] = set()
        self.heard: set[bytes] = set()
        self.heard_since_restart: set[bytes] = set()
        # (alert, radio) handed over and not since refused, lost or forgotten by a restart.
        self.handed: dict[tuple[bytes, str], int] = {}
        self.next_id = 100
        self.aired: set[bytes] = set()  # alerts a radio confirmed on air
        self.writing: dict[str, Send] = {}  # a write under way, by radio
        self.restarted = False
        # Withdrawn from the persisted queue, the radio's word still to come: the history
        # keeps the provisional outcome if a restart comes first.
        self.withdrawn: dict[bytes, str] = {}

    # -- the model of what the relay persists and reports --------------------------------

    def apply(self, effects: list[Effect]) -> None:
        for effect in effects:
            if isinstance(effect, Terminal):
                assert effect.alert_id in self.accepted, effect
                self.terminals.setdefault(effect.alert_id, []).append(effect)
                self.rows.pop(effect.alert_id, None)
                if effect.outcome is Outcome.TRANSMITTED:
                    assert effect.alert_id not in self.heard_first
                    assert effect.alert_id in self.aired, "transmitted without a radio's word"
            elif isinstance(effect, Withdrawn):
                assert effect.alert_id in self.rows, effect
                self.rows.pop(effect.alert_id)
                self.withdrawn[effect.alert_id] = effect.outcome
            elif isinstance(effect, OnAir):
                assert effect.alert_id not in self.heard_first
            elif isinstance(effect, (Taken, Retrying, GaveUp)):
                pass

    def fresh_id(self) -> int:
        self.next_id += 1
        return self.next_id

    # -- rules ----------------------------------------------------------------------------

    @rule(
        i=st.integers(0, len(IDS) - 1),
        lifetime=st.sampled_from([2.0, 60.0, 600.0]),
        delay=st.sampled_from([0.0, 0.0, 2.0]),
    )
    def accept(self, i: int, lifetime: float, delay: float) -> None:
        alert_id = IDS[i]
        if alert_id in self.accepted:
            return
        if alert_id in self.heard and alert_id not in self.heard_since_restart:
            # The relay's dedup (persisted) knows the RF copy: the MQTT copy is a duplicate,
            # which is evidence, never a new alert to hold.
            self.apply(self.out.heard(alert_id))
            return
        alert = QueuedAlert(
            alert_id, f"ALERT {i}", i % 3, int(self.now), int(self.now + lifetime), self.now + delay
        )
        self.accepted.add(alert_id)
        self.rows[alert_id] = alert
        self.apply(self.out.hold(alert, self.now))

    @rule(i=st.integers(0, len(IDS) - 1))
    def heard_on_rf(self, i: int) -> None:
        """The RF copy (or an honoured peer's "transmitted")."""
        alert_id = IDS[i]
        if alert_id not in self.accepted:
            self.heard_first.add(alert_id)
        self.heard.add(alert_id)
        self.heard_since_restart.add(alert_id)
        self.apply(self.out.heard(alert_id))

    @rule(i=st.integers(0, len(IDS) - 1))
    def cancel(self, i: int) -> None:
        if IDS[i] in self.accepted:
            self.cancelled.add(IDS[i])
        self.apply(self.out.cancel(IDS[i]))

    @rule(seconds=st.sampled_from([0.5, 3.0, 25.0, 120.0]))
    def time_passes(self, seconds: float) -> None:
        self.now += seconds
        self.out.due(self.now)
        self.apply(self.out.expire(self.now))
        before = set(self.out.in_flight.values())
        self.apply(self.out.sweep(self.now))
        for flight in before - set(self.out.in_flight.values()):
            # No answer in time: the relay takes it as lost by the radio (in doubt).
            self.handed.pop((flight.item.alert_id, flight.radio), None)

    @rule(radio=st.sampled_from(RADIOS[:1]))
    def write(self, radio: str) -> None:
        """The transmit loop takes the next frame and starts writing it to `radio`; other
        things may happen before the write's result (`written`)."""
        if radio in self.writing:
            return
        self.out.due(self.now)
        self.apply(self.out.expire(self.now))
        action = self.out.next_action(radio, self.now)
        if not isinstance(action, Ready):
            return
        item = action.item
        send = self.out.send(radio, item, self.fresh_id)
        self.check_send(send)
        if send.write_ahead and item.alert_id in self.rows:
            self.rows[item.alert_id] = _with_packet_id(self.rows[item.alert_id], send.packet_id)
        self.writing[radio] = send

    @rule(
        radio=st.sampled_from(RADIOS[:1]),
        what=st.sampled_from(["taken", "taken", "not_taken", "refused_retry", "refused_final"]),
    )
    def written(self, radio: str, what: str) -> None:
        send = self.writing.pop(radio, None)
        if send is None:
            return
        item = send.item
        held = self.radios[radio].holding
        if what == "not_taken":
            self.apply(self.out.not_taken(send))
        elif send.packet_id in held:
            self.apply(self.out.taken(send, self.now, ignored=True))
            self.handed[(item.alert_id, radio)] = send.packet_id
        elif what == "taken":
            held[send.packet_id] = item.alert_id
            self.handed[(item.alert_id, radio)] = send.packet_id
            self.apply(self.out.taken(send, self.now))
        else:
            refusal = RATE_LIMIT if what == "refused_retry" else TOO_LARGE
            self.apply(self.out.refused(radio, item, refusal, self.now))

    def transmit(self, radio: str, what: str) -> None:
        """One turn of the transmit loop, the write's result coming at once."""
        self.write(radio)
        self.written(radio, what)

    def check_send(self, send: Send) -> None:
        alert_id = send.item.alert_id
        assert self.now < send.item.expires_at_s, "handed to a radio after its expiry"
        assert alert_id not in self.cancelled, "handed to a radio after its cancel"
        assert alert_id not in self.heard_first, "sent an alert already heard on RF"
        assert (alert_id, send.radio) not in self.handed, "handed again before a refusal or loss"
        if self.restarted and len(self.radios) > 1:
            # One write-ahead id per alert survives a restart (relayd/core/outbound.py).
            return
        for packet_id, held in self.radios[send.radio].holding.items():
            if held == alert_id:
                assert send.packet_id == packet_id, "a frame the radio may hold, under a new id"

    @precondition(lambda self: bool(self.out.in_flight))
    @rule(data=st.data(), verdict=st.sampled_from(["on_air", "on_air", "retry", "final"]))
    def radio_answers(self, data: st.DataObject, verdict: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.out.in_flight)))
        flight = self.out.in_flight[key]
        packet_id = key[1]
        self.radios[flight.radio].holding.pop(packet_id, None)
        self.handed.pop((flight.item.alert_id, flight.radio), None)
        refusal = {"on_air": None, "retry": RATE_LIMIT, "final": TOO_LARGE}[verdict]
        alert_id = flight.item.alert_id
        if refusal is None:
            self.aired.add(alert_id)
        self.apply(self.out.answered(flight.radio, packet_id, refusal, verdict, self.now))
        if refusal is None:
            # Say only what is true: an alert a radio put on air ends "transmitted".
            ends = self.terminals.get(alert_id, [])
            assert all(t.outcome is Outcome.TRANSMITTED for t in ends), ends

    @rule(radio=st.sampled_from(RADIOS[:1]), rebooted=st.booleans())
    def radio_lost(self, radio: str, rebooted: bool) -> None:
        if radio in self.writing:
            self.written(radio, "not_taken")  # the link dropped under the write
        if rebooted:
            self.radios[radio].holding.clear()  # a reboot empties its transmit queue
        for key in [k for k in self.handed if k[1] == radio]:
            del self.handed[key]
        self.apply(self.out.radio_lost(radio, self.now))

    @rule()
    def restart(self) -> None:
        """The relay restarts: only the persisted queue survives; the radios keep theirs
        (and a write under way may have reached its radio)."""
        for radio, send in self.writing.items():
            self.radios[radio].holding[send.packet_id] = send.item.alert_id
        self.writing.clear()
        self.out = make_outbound(self.names)
        for alert_id, outcome in self.withdrawn.items():
            if alert_id not in self.terminals:
                self.terminals[alert_id] = [Terminal(alert_id, Outcome(outcome))]
        self.withdrawn.clear()
        self.handed.clear()
        self.heard_since_restart.clear()
        self.restarted = True
        for row in list(self.rows.values()):
            self.apply(self.out.restore(row, self.now))

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def one_outcome_once_gone(self) -> None:
        for alert_id in self.accepted:
            ends = self.terminals.get(alert_id, [])
            assert len(ends) <= 1, ends
            assert (alert_id in self.out) != bool(ends), (alert_id.hex(), ends)

    @invariant()
    def persisted_queue_is_what_is_still_to_send(self) -> None:
        assert set(self.rows) == {q.alert_id for q in self.out.queued()}

    def teardown(self) -> None:
        """Given time, everything ends: held and queued alerts expire, frames in doubt too."""
        for radio in list(self.writing):
            self.written(radio, "taken")
        self.now += 10_000.0
        self.out.due(self.now)
        self.apply(self.out.expire(self.now))
        self.apply(self.out.sweep(self.now))
        for alert_id in self.accepted:
            assert len(self.terminals.get(alert_id, [])) == 1, alert_id.hex()
        assert not self.out.queued()


def _with_packet_id(alert: QueuedAlert, packet_id: int) -> QueuedAlert:
    return QueuedAlert(
        alert.alert_id,
        alert.onair,
        alert.severity_rank,
        alert.issued_at_s,
        alert.expires_at_s,
        alert.release_at_s,
        packet_id,
    )


class TwoRadiosMachine(OutboundMachine):
    """A relay with two radios: each takes, refuses and loses frames on its own."""

    @rule(radio=st.sampled_from(RADIOS[1:]))
    def write_b(self, radio: str) -> None:
        self.write(radio)

    @rule(
        radio=st.sampled_from(RADIOS[1:]),
        what=st.sampled_from(["taken", "not_taken", "refused_retry", "refused_final"]),
    )
    def written_b(self, radio: str, what: str) -> None:
        self.written(radio, what)

    @rule(radio=st.sampled_from(RADIOS[1:]), rebooted=st.booleans())
    def radio_b_lost(self, radio: str, rebooted: bool) -> None:
        self.radio_lost(radio, rebooted)


class OneRadioMachine(OutboundMachine):
    names = RADIOS[:1]


TestOneRadio = OneRadioMachine.TestCase
TestOneRadio.settings = settings(max_examples=400, stateful_step_count=40, deadline=None)
TestTwoRadios = TwoRadiosMachine.TestCase
TestTwoRadios.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)


def test_a_frame_refused_too_often_is_given_up() -> None:
    out = make_outbound()
    out.hold(QueuedAlert(IDS[0], "ALERT", 0, 0, 600, release_at_s=0.0), 0.0)
    out.cancel(IDS[0])
    out.hold(QueuedAlert(IDS[1], "ALERT", 0, 0, 600, release_at_s=0.0), 0.0)
    out.due(0.0)
    now = 0.0
    effects: list[Effect] = []
    for _ in range(MAX_SEND_ATTEMPTS):
        now += 10.0
        action = out.next_action(RADIOS[0], now)
        assert isinstance(action, Ready)
        item: QueueItem = action.item
        effects = out.refused(RADIOS[0], item, RATE_LIMIT, now)
    assert isinstance(effects[0], GaveUp)
    assert effects[0].attempts == MAX_SEND_ATTEMPTS
    assert IDS[1] in out  # radio-b still has it queued
