"""The packet id of an alert's first hand-over to a radio, derived from the alert itself.

Handhelds drop a frame whose (from, packet id) they have already shown, so an alert sent
again under the same id is never shown twice. A relay that restarts without knowing
whether its radio sent a frame (a crash, a power cut, a full disk that kept it from
writing the id down) therefore sends it again under the same id. Deriving the first id
from the alert id gives every restart that same id without writing it ahead: one fsync
less per alert, and no window in which the id exists only in memory. Retries after a
refusal still take a fresh id (the firmware ignores ids it saw recently), written ahead.
"""

from __future__ import annotations

import hashlib

_PERSON = b"relayd-packetid"


def first_packet_id(alert_id: bytes) -> int:
    """A 32-bit packet id, never 0 (the firmware replaces 0 with one of its own)."""
    digest = hashlib.blake2b(alert_id, digest_size=4, person=_PERSON).digest()
    return int.from_bytes(digest, "big") or 1
