"""Answering forgeries heard on RF: a short plain-text notice that handhelds can read.

Stock handhelds cannot verify anything, and anyone holding the channel key can broadcast a
fake "raid" straight to them. When a relay hears, on its alerts channel, a frame that claims
to be a relayd alert (it rings the bell, or ends in a token line) and the frame fails
verification, it broadcasts::

    NOT FROM DISPATCH: the message starting "Police raid at 5th" is not a verified alert.

Abuse bounds (an attacker can make relays spend airtime on notices, and could try to make
them disown a genuine alert), all decided here without I/O:

* only for frames that *claim* to be alerts and fail for a reason that means "not from
  dispatch" (bad signature, unknown or revoked key, role not allowed, malformed token);
  never for replays, duplicates, expired or rate-limited genuine alerts;
* never when the quoted start matches the start of an alert that verified recently: a
  forgery that copies a genuine alert's first words gets no notice, so relays never appear
  to disown a real alert;
* once per forged text (keyed by its hash), at most one notice per `min_interval_s` and
  `max_per_hour` per relay; the quote is cut short and cleaned of control characters.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict, deque
from dataclasses import dataclass

from relayd.core.model import DropReason

NOTICE_PREFIX = "NOT FROM DISPATCH"
BEL = "\x07"
# The last line of a relayd frame is a base85 token (RFC 1924 alphabet) of at least the
# fixed fields and the 64-byte signature: 80+ characters. Shorter tails are plain chat.
_TOKEN_LINE_RE = re.compile(r"[0-9A-Za-z!#$%&()*+\-;<=>?@^_`{|}~]{80,}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]+")
_NOT_FROM_DISPATCH = frozenset(
    {
        DropReason.BAD_SIGNATURE,
        DropReason.UNKNOWN_KEY,
        DropReason.REVOKED,
        DropReason.ROLE_NOT_ALLOWED,
        DropReason.MALFORMED,
    }
)
_NOTICED_MAX = 1024
_GENUINE_MAX = 256


@dataclass(frozen=True, slots=True)
class NoticePolicy:
    quote_chars: int = 24
    min_interval_s: float = 120.0
    max_per_hour: int = 6


def claims_to_be_an_alert(text: str) -> bool:
    """Does this text present itself as a relayd alert (to a person or to a relay)?"""
    if BEL in text:
        return True
    _, sep, last = text.rpartition("\n")
    return bool(sep) and _TOKEN_LINE_RE.fullmatch(last) is not None


def _opening(text: str, chars: int) -> str:
    """The start of what a handheld shows: the text before the token, cleaned, cut short."""
    visible = text.rpartition("\n")[0] if claims_to_be_an_alert(text) and "\n" in text else text
    visible = visible.removeprefix(BEL)
    return " ".join(_CONTROL_RE.sub(" ", visible).split())[:chars]


class ForgeryNotices:
    """Which forged frames get a notice, and its text. One per relay; clock passed in."""

    def __init__(self, policy: NoticePolicy | None = None) -> None:
        self.policy = policy or NoticePolicy()
        self._noticed: OrderedDict[bytes, None] = OrderedDict()
        self._sent_at: deque[float] = deque()
        self._genuine: OrderedDict[str, None] = OrderedDict()
        self.withheld = 0  # forgeries that got no notice because of a bound

    def genuine(self, text: str) -> None:
        """An alert that verified: never disown a frame that starts like it."""
        opening = _opening(text, self.policy.quote_chars).casefold()
        if opening:
            self._genuine[opening] = None
            if len(self._genuine) > _GENUINE_MAX:
                self._genuine.popitem(last=False)

    def consider(self, text: str, reason: DropReason | None, now_s: float) -> str | None:
        """The notice to broadcast for a frame that failed verification, or None."""
        if reason not in _NOT_FROM_DISPATCH or not claims_to_be_an_alert(text):
            return None
        key = hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()
        if key in self._noticed:
            return None
        quote = _opening(text, self.policy.quote_chars)
        if not quote or self._looks_genuine(quote):
            self.withheld += 1
            return None
        while self._sent_at and now_s - self._sent_at[0] >= 3600.0:
            self._sent_at.popleft()
        recent = self._sent_at[-1] if self._sent_at else None
        if (recent is not None and now_s - recent < self.policy.min_interval_s) or len(
            self._sent_at
        ) >= self.policy.max_per_hour:
            self.withheld += 1
            return None
        self._noticed[key] = None
        if len(self._noticed) > _NOTICED_MAX:
            self._noticed.popitem(last=False)
        self._sent_at.append(now_s)
        return f'{NOTICE_PREFIX}: the message starting "{quote}" is not a verified alert.'

    def _looks_genuine(self, quote: str) -> bool:
        folded = quote.casefold()
        return any(g.startswith(folded) or folded.startswith(g) for g in self._genuine)


def is_notice(text: str) -> bool:
    return text.startswith(NOTICE_PREFIX + ": ")
