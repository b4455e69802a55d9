"""Catch-up after a gap: a relay back on the broker (or with its radio back) asks its peers
which alerts are active, and puts on air, once, those its area missed.

A persistent MQTT session covers a short absence, but not a broker that lost the session
(restarted without persistence, a session expired, a bridge that dropped its queue) nor
a relay that was switched off for a while. Retained `active/<id>` topics hold the same
facts, but some clustered brokers (RabbitMQ 3.x) never deliver retained messages through a
wildcard and keep them per node, so a relay could not find them. This uses live QoS 1
messages only, which every broker routes cluster-wide:

* the relay publishes a signed request with a fresh nonce on `<root>/relays/<id>/sync`;
* each peer that hears it answers on `<root>/relays/<peer>/sync/<asker>`, so only the asker
  receives it: signed batches of the active alerts it holds, each the alert's signed on-air
  frame (checked by the asker like any other alert) and what the peer knows of it in its own
  area (its radio put it on air, heard another relay's copy, or neither yet);
* the asker decides here, without I/O, per answer: an alert it already has is nothing new
  (unless a neighbour says it put it on air: then stand down), a missed one an RF neighbour
  already put on air is taken without airing it, any other missed one goes on air through
  the usual suppression turn (so two relays that both missed it do not both send it).

A nonce binds each answer to one request, so an answer cannot be replayed into a later
catch-up; answers only go to relays the trust bundle names (the request is sealed) and are
rate limited per asker. The ledger of active alerts lives in memory, bounded, holding
only what went on air anyway: no positions, no handheld ids.
"""

from __future__ import annotations

import enum
import json
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from relayd.core.jsonform import MalformedMessage
from relayd.core.model import Kind, SignedAlert
from relayd.core.status import checked_str, load_json_object
from relayd.core.topics import valid_relay_id

SYNC_FORMAT = "relayd-sync/1"
NONCE_BYTES = 8
LEDGER_MAX = 256
ASKERS_MAX = 256
MAX_ONAIR_CHARS = 1024
MAX_BATCH = 32
# A batch's body stays well under the control plane's 8 KiB message limit once sealed (the body
# travels as an escaped JSON string, and the seal adds about 300 bytes).
BATCH_BODY_BYTES = 5000


class Evidence(enum.Enum):
    """What an answering relay knows of an alert in its own area."""

    AIRED = "aired"  # its radio confirmed it on air
    HEARD = "heard"  # its radio heard another relay's copy
    PENDING = "pending"  # it holds the alert; its area has not had it from it yet


class Action(enum.Enum):
    """What the asker does with one answer."""

    IGNORE = "ignore"  # not for us, too late, or nothing new
    AIR = "air"  # missed here: accept and put on air through the suppression turn
    COVERED = "covered"  # missed by us, but an RF neighbour put it on air: accept, do not air
    STAND_DOWN = "stand_down"  # we have it; an RF neighbour put it on air: stand down if holding


@dataclass(frozen=True, slots=True)
class SyncPolicy:
    answer_window_s: float = 30.0  # how long after a request its answers count
    min_request_interval_s: float = 5.0  # a flapping link does not flood peers
    per_asker_interval_s: float = 10.0  # answers to one relay at most this often
    max_answers: int = 32  # alerts per answer burst, most urgent first


@dataclass(frozen=True, slots=True)
class SyncRequest:
    relay: str
    nonce: str  # hex


@dataclass(frozen=True, slots=True)
class SyncAnswer:
    relay: str  # who answers
    to: str  # who asked
    nonce: str
    onair: str  # the alert's signed on-air frame
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class SyncBatch:
    """Answers from one relay to one request, as one message (fewer signatures to check)."""

    relay: str
    to: str
    nonce: str
    items: tuple[tuple[str, Evidence], ...]  # (signed on-air frame, evidence)

    def answers(self) -> list[SyncAnswer]:
        return [SyncAnswer(self.relay, self.to, self.nonce, onair, ev) for onair, ev in self.items]


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    onair: str
    severity_rank: int
    issued_at_s: int
    expires_at_s: int
    ref: bytes | None
    evidence: Evidence


def _str(value: object, name: str, max_chars: int) -> str:
    if not isinstance(value, str):
        raise MalformedMessage(f"'{name}' must be a string")
    return checked_str(value, name, max_chars)


def _nonce(value: object) -> str:
    text = _str(value, "nonce", 2 * NONCE_BYTES)
    if len(text) != 2 * NONCE_BYTES:
        raise MalformedMessage("'nonce' must be 16 hex digits")
    try:
        bytes.fromhex(text)
    except ValueError:
        raise MalformedMessage("'nonce' must be 16 hex digits") from None
    return text


def _relay(value: object, name: str) -> str:
    text = _str(value, name, 64)
    if not valid_relay_id(text):
        raise MalformedMessage(f"'{name}' is not a relay id")
    return text


def encode_request(req: SyncRequest) -> bytes:
    doc = {"format": SYNC_FORMAT, "type": "request", "relay": req.relay, "nonce": req.nonce}
    return json.dumps(doc, separators=(",", ":")).encode()


def encode_batch(batch: SyncBatch) -> bytes:
    doc = {
        "format": SYNC_FORMAT,
        "type": "answer",
        "relay": batch.relay,
        "to": batch.to,
        "nonce": batch.nonce,
        "alerts": [{"onair": onair, "evidence": ev.value} for onair, ev in batch.items],
    }
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def parse_sync(body: bytes) -> SyncRequest | SyncBatch:
    """A sync body (already unsealed); MalformedMessage for anything else."""
    doc = load_json_object(body)
    if doc.get("format") != SYNC_FORMAT:
        raise MalformedMessage("not a sync message")
    kind = doc.get("type")
    relay = _relay(doc.get("relay"), "relay")
    nonce = _nonce(doc.get("nonce"))
    if kind == "request":
        return SyncRequest(relay, nonce)
    if kind != "answer":
        raise MalformedMessage("'type' must be request or answer")
    alerts = doc.get("alerts")
    if not isinstance(alerts, list) or len(alerts) > MAX_BATCH:
        raise MalformedMessage(f"'alerts' must be a list of at most {MAX_BATCH}")
    items: list[tuple[str, Evidence]] = []
    for entry in alerts:
        if not isinstance(entry, dict):
            raise MalformedMessage("each answer must be an object")
        try:
            evidence = Evidence(entry.get("evidence"))
        except ValueError:
            raise MalformedMessage("unknown 'evidence'") from None
        items.append((_str(entry.get("onair"), "onair", MAX_ONAIR_CHARS), evidence))
    return SyncBatch(relay, _relay(doc.get("to"), "to"), nonce, tuple(items))


def decide(answer_evidence: Evidence, *, known: bool, honoured: bool) -> Action:
    """The asker's decision on one answer about one alert.

    `known`: the asker already has the alert (accepted it, from MQTT or its radio).
    `honoured`: the answerer's radio is one whose transmissions reach the asker's area
    (relayd.core.suppression.honours_evidence): only its own transmission covers us; its
    having heard a copy says nothing about our area.
    """
    covered = honoured and answer_evidence is Evidence.AIRED
    if known:
        return Action.STAND_DOWN if covered else Action.IGNORE
    return Action.COVERED if covered else Action.AIR


_STRONGER = {Evidence.PENDING: 0, Evidence.HEARD: 1, Evidence.AIRED: 2}


class Reconciler:
    """One per relay: the ledger it answers from, and the requests it is waiting on."""

    def __init__(self, relay_id: str, policy: SyncPolicy | None = None) -> None:
        self.relay_id = relay_id
        self.policy = policy or SyncPolicy()
        self._ledger: OrderedDict[bytes, LedgerEntry] = OrderedDict()
        self._outstanding: dict[str, float] = {}  # nonce -> asked at
        self._last_request_s: float | None = None
        self._answered: OrderedDict[str, float] = OrderedDict()  # asker -> answered at
        self._deferred: OrderedDict[str, SyncRequest] = OrderedDict()  # asker -> its newest request
        self._aired_here: OrderedDict[bytes, None] = OrderedDict()  # AIR decided by us

    # -- the ledger ---------------------------------------------------------------------

    def accepted(self, alert: SignedAlert, *, heard_on_rf: bool) -> None:
        """An alert the relay accepted. A cancel or all-clear ends the alert it names (and
        that alert's updates): peers must not be told to catch up on it."""
        f = alert.fields
        if f.kind in (Kind.CANCEL, Kind.ALLCLEAR):
            if f.ref is not None:
                for a in [a for a, e in self._ledger.items() if f.ref in (a, e.ref)]:
                    del self._ledger[a]
            return
        if f.kind not in (Kind.ALERT, Kind.UPDATE):
            return
        alert_id = alert.alert_id
        evidence = Evidence.HEARD if heard_on_rf else Evidence.PENDING
        old = self._ledger.get(alert_id)
        if old is not None and _STRONGER[old.evidence] >= _STRONGER[evidence]:
            return
        self._ledger[alert_id] = LedgerEntry(
            alert.onair, f.severity.rank, f.issued_at_s, f.expires_at_s, f.ref, evidence
        )
        while len(self._ledger) > LEDGER_MAX:
            self._ledger.popitem(last=False)

    def _raise(self, alert_id: bytes, evidence: Evidence) -> None:
        old = self._ledger.get(alert_id)
        if old is not None and _STRONGER[evidence] > _STRONGER[old.evidence]:
            self._ledger[alert_id] = LedgerEntry(
                old.onair, old.severity_rank, old.issued_at_s, old.expires_at_s, old.ref, evidence
            )

    def aired(self, alert_id: bytes) -> None:
        """Our radio confirmed it on air."""
        self._raise(alert_id, Evidence.AIRED)

    def heard(self, alert_id: bytes) -> None:
        """Another relay's copy reached our area."""
        self._raise(alert_id, Evidence.HEARD)

    def evidence(self, alert_id: bytes) -> Evidence | None:
        entry = self._ledger.get(alert_id)
        return entry.evidence if entry is not None else None

    def active(self, now_s: float) -> list[tuple[bytes, LedgerEntry]]:
        """Active alerts, most urgent then newest first; expired entries are forgotten."""
        for a in [a for a, e in self._ledger.items() if now_s >= e.expires_at_s]:
            del self._ledger[a]
        return sorted(self._ledger.items(), key=lambda ae: (ae[1].severity_rank, -ae[1].issued_at_s))

    # -- asking -------------------------------------------------------------------------

    def request(self, now_s: float, nonce: bytes) -> SyncRequest | None:
        """A request to publish now, or None if one went out moments ago."""
        last = self._last_request_s
        if last is not None and 0 <= now_s - last < self.policy.min_request_interval_s:
            return None
        self._last_request_s = now_s
        for n in [n for n, at in self._outstanding.items() if now_s - at > self.policy.answer_window_s]:
            del self._outstanding[n]
        self._outstanding[nonce.hex()] = now_s
        return SyncRequest(self.relay_id, nonce.hex())

    def judge(
        self,
        answer: SyncAnswer,
        alert_id: bytes,
        now_s: float,
        *,
        known: Callable[[bytes], bool],
        honoured: Callable[[str], bool],
    ) -> Action:
        """An answer (its seal checked, its frame decoded to `alert_id`): what to do."""
        if answer.to != self.relay_id or answer.relay == self.relay_id:
            return Action.IGNORE
        asked_at = self._outstanding.get(answer.nonce)
        if asked_at is None or not 0 <= now_s - asked_at <= self.policy.answer_window_s:
            return Action.IGNORE
        action = decide(
            answer.evidence,
            known=known(alert_id) or alert_id in self._aired_here,
            honoured=honoured(answer.relay),
        )
        if action is Action.AIR:
            self._aired_here[alert_id] = None
            while len(self._aired_here) > LEDGER_MAX:
                self._aired_here.popitem(last=False)
        return action

    # -- answering ----------------------------------------------------------------------

    def answers_for(self, request: SyncRequest, now_s: float, peers: Iterable[str]) -> list[SyncAnswer]:
        """What to tell `request.relay` (a relay the bundle names, in `peers`), or nothing if
        it asked moments ago."""
        asker = request.relay
        if asker == self.relay_id or asker not in set(peers):
            return []
        last = self._answered.get(asker)
        if last is not None and 0 <= now_s - last < self.policy.per_asker_interval_s:
            # Rate limited, not refused: a relay restarted within the interval still needs its
            # catch-up. Its newest request is answered once the interval is over.
            self._deferred[asker] = request
            self._deferred.move_to_end(asker)
            while len(self._deferred) > ASKERS_MAX:
                self._deferred.popitem(last=False)
            return []
        self._deferred.pop(asker, None)
        self._answered[asker] = now_s
        self._answered.move_to_end(asker)
        while len(self._answered) > ASKERS_MAX:
            self._answered.popitem(last=False)
        return [
            SyncAnswer(self.relay_id, asker, request.nonce, e.onair, e.evidence)
            for _, e in self.active(now_s)[: self.policy.max_answers]
        ]

    def deferred_due_s(self, asker: str) -> float | None:
        """When the request `asker` sent too soon after its last answer may be answered."""
        if asker not in self._deferred:
            return None
        return self._answered.get(asker, 0.0) + self.policy.per_asker_interval_s

    def take_deferred(self, asker: str) -> SyncRequest | None:
        """The deferred request from `asker`, to answer now (see `deferred_due_s`)."""
        return self._deferred.pop(asker, None)

    def batches_for(self, request: SyncRequest, now_s: float, peers: Iterable[str]) -> list[SyncBatch]:
        """`answers_for`, packed into as few messages as fit the size budget."""
        batches: list[SyncBatch] = []
        items: list[tuple[str, Evidence]] = []
        size = 0
        for ans in self.answers_for(request, now_s, peers):
            cost = len(ans.onair.encode()) + 48
            if items and (size + cost > BATCH_BODY_BYTES or len(items) >= MAX_BATCH):
                batches.append(SyncBatch(self.relay_id, request.relay, request.nonce, tuple(items)))
                items, size = [], 0
            items.append((ans.onair, ans.evidence))
            size += cost
        if items:
            batches.append(SyncBatch(self.relay_id, request.relay, request.nonce, tuple(items)))
        return batches
