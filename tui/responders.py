"""Who is responding to each alert, from responders' answers wrapped by relays. Pure.

An answer is a relay-signed report referring to the alert (docs/protocol.md section 9b); the
model checks its signature before it gets here. A responder is shown only by an alias, R1,
R2, … in the order this console first heard each handheld: never a name, and never the node
number, so a screen photographed over a dispatcher's shoulder names nobody.
"""

from __future__ import annotations

from dataclasses import dataclass

from relayd.core.dedup import BoundedMap
from relayd.core.replies import ReplyWord

# Handhelds with an alias, and alerts with answers: bounded (anyone may claim any node number).
MAX_ALIASES = 10_000
MAX_ALERTS = 5_000


@dataclass(frozen=True, slots=True)
class Answer:
    alias: str
    word: ReplyWord
    at_s: int  # when the relay wrapped it (the report's issued-at)


class Responders:
    """Answers by alert id; a handheld's newest answer to an alert is the one that counts."""

    def __init__(self, max_aliases: int = MAX_ALIASES, max_alerts: int = MAX_ALERTS) -> None:
        self._aliases: BoundedMap[int, str] = BoundedMap(max_aliases)
        self._next_alias = 1
        self._answers: BoundedMap[str, dict[str, Answer]] = BoundedMap(max_alerts)

    def alias(self, node: int) -> str:
        alias = self._aliases.get(node)
        if alias is None:
            alias = f"R{self._next_alias}"
            self._next_alias += 1
            self._aliases.put(node, alias)
        return alias

    def add(self, alert_id: str, node: int, word: ReplyWord, at_s: int) -> bool:
        """Record one answer; True if it changed what the alert shows."""
        answers = self._answers.get(alert_id)
        if answers is None:
            answers = {}
            self._answers.put(alert_id, answers)
        alias = self.alias(node)
        previous = answers.get(alias)
        if previous is not None and previous.at_s > at_s:
            return False  # an older answer arriving late does not undo a newer one
        answers[alias] = Answer(alias, word, at_s)
        return previous is None or previous.word is not word

    def answers(self, alert_id: str) -> list[Answer]:
        """Newest first."""
        got = self._answers.get(alert_id) or {}
        return sorted(got.values(), key=lambda a: (-a.at_s, a.alias))

    def responding(self, alert_id: str) -> int:
        """How many handhelds' newest answer says they are responding."""
        return sum(1 for a in (self._answers.get(alert_id) or {}).values() if a.word.responding)

    def merge(self, from_id: str, into_id: str) -> None:
        """Answers recorded under `from_id` (an update, before it was known to be one) now
        count for `into_id` (its thread's first alert)."""
        moved = self._answers.pop(from_id) or {}
        target = self._answers.get(into_id)
        if target is None:
            target = {}
            self._answers.put(into_id, target)
        for alias, answer in moved.items():
            if alias not in target or target[alias].at_s <= answer.at_s:
                target[alias] = answer

    def forget(self, alert_id: str) -> None:
        self._answers.pop(alert_id)
