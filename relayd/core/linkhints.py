"""What a failed connection to the broker or a radio means, and what to try: one line an
operator can act on, logged at every retry with the backoff. Pure: takes the error's text
and errno, returns words.

Failure classes (docs/daemon.md, "Logs"):

- broker: refused (nothing listens), unreachable (no route, DNS, timeout), auth (user or
  password refused), tls (certificate or handshake);
- radio: missing (no such device), permission (the relayd user may not open it), busy
  (another program holds it), refused (nothing listens at a TCP radio's port), silent (opened
  but no answer to the handshake), closed (the other end closed a link that was up).
"""

from __future__ import annotations

import enum
import errno as errno_mod
from dataclasses import dataclass


class Failure(enum.Enum):
    BROKER_REFUSED = "refused"
    BROKER_UNREACHABLE = "unreachable"
    BROKER_AUTH = "auth"
    BROKER_TLS = "tls"
    RADIO_MISSING = "missing"
    RADIO_PERMISSION = "permission"
    RADIO_BUSY = "busy"
    RADIO_REFUSED = "tcp refused"
    RADIO_SILENT = "silent"
    RADIO_CLOSED = "closed"
    OTHER = "other"


HINTS: dict[Failure, str] = {
    Failure.BROKER_REFUSED: "nothing listens there: is mosquitto running (systemctl status mosquitto) "
    "and is [mqtt] host/port right?",
    Failure.BROKER_UNREACHABLE: "no answer from that host: check the network, the name in [mqtt] host, "
    "and any firewall",
    Failure.BROKER_AUTH: "the broker refused the login: check [mqtt] username and password_file "
    "against the broker's password file and ACL",
    Failure.BROKER_TLS: "TLS failed: check [mqtt] ca_file and that the broker's certificate names this host",
    Failure.RADIO_MISSING: "no such device: is the radio plugged in and powered? "
    "(ls /dev/serial/by-id/; a by-id path survives replugging)",
    Failure.RADIO_PERMISSION: "the relayd user may not open it: add it to the dialout group "
    "(relayd setup does; then restart)",
    Failure.RADIO_BUSY: "another program holds the port: close the Meshtastic app or CLI, a serial "
    "console, or another relayd on this radio",
    Failure.RADIO_REFUSED: "nothing listens at the radio's TCP port: is meshtasticd (or the "
    "simulator) running, and is [[radio]] device right?",
    Failure.RADIO_SILENT: "the radio did not answer: reboot it, check the cable (data, not "
    "charge-only) and that its serial console is off",
    Failure.RADIO_CLOSED: "the radio end closed the link: it (or meshtasticd, or the simulator) "
    "restarted, was unplugged, or another client took it over",
    Failure.OTHER: "see the error above; `relayd doctor -c CONFIG` checks each link",
}


@dataclass(frozen=True, slots=True)
class Diagnosis:
    failure: Failure
    hint: str


def _diagnosis(failure: Failure) -> Diagnosis:
    return Diagnosis(failure, HINTS[failure])


def broker_failure(text: str, errno: int | None = None) -> Diagnosis:
    """From an MQTT client error's text (aiomqtt folds socket errors into the text)."""
    t = text.lower()
    if any(
        w in t for w in ("not authori", "bad user name", "bad username", "password", "code:134", "code:135")
    ):
        return _diagnosis(Failure.BROKER_AUTH)
    if any(w in t for w in ("ssl", "certificate", "tls")):
        return _diagnosis(Failure.BROKER_TLS)
    if errno == errno_mod.ECONNREFUSED or "connection refused" in t or "errno 111" in t:
        return _diagnosis(Failure.BROKER_REFUSED)
    if any(
        w in t
        for w in (
            "timed out",
            "timeout",
            "name or service",
            "no route",
            "unreachable",
            "errno -2",
            "errno -3",
        )
    ) or errno in (errno_mod.EHOSTUNREACH, errno_mod.ENETUNREACH, errno_mod.ETIMEDOUT):
        return _diagnosis(Failure.BROKER_UNREACHABLE)
    return _diagnosis(Failure.OTHER)


def radio_failure(text: str, errno: int | None = None, *, timeout: bool = False) -> Diagnosis:
    """From a radio open or handshake error (pyserial, a TCP connect, our own handshake)."""
    t = text.lower()
    if timeout or "did not answer" in t or "handshake" in t:
        return _diagnosis(Failure.RADIO_SILENT)
    if errno in (errno_mod.EACCES, errno_mod.EPERM) or "permission denied" in t:
        return _diagnosis(Failure.RADIO_PERMISSION)
    if errno == errno_mod.EBUSY or "exclusively lock" in t or "resource busy" in t or "errno 16" in t:
        return _diagnosis(Failure.RADIO_BUSY)
    if errno == errno_mod.ENOENT or "no such file" in t or "no such device" in t:
        return _diagnosis(Failure.RADIO_MISSING)
    if errno == errno_mod.ECONNREFUSED or "connection refused" in t:
        return _diagnosis(Failure.RADIO_REFUSED)
    if any(w in t for w in ("closed", "went away", "reset", "broken pipe", "unplugged")):
        return _diagnosis(Failure.RADIO_CLOSED)
    return _diagnosis(Failure.OTHER)


def retry_line(what: str, detail: str, diagnosis: Diagnosis, attempt: int, delay_s: float) -> str:
    """One log line per retry: what failed, how often, when the next try is, what to check."""
    return (
        f"{what}: {detail} [{diagnosis.failure.value}]; attempt {attempt}, retrying in {delay_s:.1f} s; "
        f"hint: {diagnosis.hint}"
    )


def errno_of(exc: BaseException) -> int | None:
    """The first errno along the exception's cause chain (pyserial and aiomqtt wrap OSError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        code = getattr(current, "errno", None)
        if isinstance(code, int):
            return code
        current = current.__cause__ or current.__context__
    return None
