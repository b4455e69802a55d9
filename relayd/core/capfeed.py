"""The CAP feed's state: verified alerts by id, their threads, which are active, and the
documents served for them (CAP 1.2 per alert, an Atom index of the active ones). Pure: the
caller verifies alerts and passes the time; relayd/daemon/capfeed.py is the network side.

Active, in the index:

* an alert, update or test until it expires, or until a verified cancel or all-clear closes
  its thread. An emptied retained `active/<id>` topic is not believed: it is unsigned, and
  anyone who may publish there could otherwise hide a live alert from the feed;
* a cancel or all-clear until it expires itself, so that a consumer polling the index sees
  the message that closed the thread, not only the thread disappearing.

Reports are never in the feed: they are addressed to dispatchers (CAP scope Private).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import OrderedDict
from dataclasses import dataclass

from relayd.core.cap import to_cap_xml, xml_text
from relayd.core.model import Kind, SignedAlert
from relayd.core.timefmt import iso_utc

ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
CAP_CONTENT_TYPE = "application/cap+xml"
MAX_THREAD_DEPTH = 32
DEFAULT_MAX_ALERTS = 2000
_CLOSING = (Kind.CANCEL, Kind.ALLCLEAR)


@dataclass(frozen=True, slots=True)
class FeedEntry:
    alert: SignedAlert
    signer_name: str | None
    first_seen_s: float


class CapFeed:
    def __init__(self, *, sender: str = "relayd", max_alerts: int = DEFAULT_MAX_ALERTS) -> None:
        self.sender = sender
        self.max_alerts = max_alerts
        self._entries: OrderedDict[bytes, FeedEntry] = OrderedDict()
        self._closed: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, alert_id: object) -> bool:
        return alert_id in self._entries

    def add(self, alert: SignedAlert, signer_name: str | None, now_s: float) -> bool:
        """Keep a verified alert. False if it was already known or is a report."""
        if alert.kind is Kind.REPORT or alert.alert_id in self._entries:
            return False
        self._entries[alert.alert_id] = FeedEntry(alert, signer_name, now_s)
        if alert.kind in _CLOSING:
            if alert.fields.ref is not None:
                self._closed.add(alert.fields.ref)
            self._closed.update(a.alert_id for a in self.thread(alert))
        self._evict(now_s)
        return True

    def thread(self, alert: SignedAlert) -> tuple[SignedAlert, ...]:
        """The earlier messages `alert` refers to, oldest first, as far as the feed knows them."""
        chain: list[SignedAlert] = []
        seen = {alert.alert_id}
        ref = alert.fields.ref
        while ref is not None and ref not in seen and len(chain) < MAX_THREAD_DEPTH:
            entry = self._entries.get(ref)
            if entry is None:
                break
            chain.append(entry.alert)
            seen.add(ref)
            ref = entry.alert.fields.ref
        return tuple(reversed(chain))

    def is_active(self, alert_id: bytes, now_s: float) -> bool:
        entry = self._entries.get(alert_id)
        if entry is None or entry.alert.is_expired(now_s):
            return False
        if entry.alert.kind in _CLOSING:
            return True
        if alert_id in self._closed or (entry.alert.fields.ref in self._closed):
            return False
        return not any(a.alert_id in self._closed for a in self.thread(entry.alert))

    def active(self, now_s: float) -> list[FeedEntry]:
        """Active entries, newest issue time first."""
        entries = [e for a, e in self._entries.items() if self.is_active(a, now_s)]
        return sorted(entries, key=lambda e: (e.alert.fields.issued_at_s, e.alert.id_hex), reverse=True)

    def entry(self, alert_id: bytes) -> FeedEntry | None:
        return self._entries.get(alert_id)

    def document(self, alert_id: bytes) -> str | None:
        """The CAP 1.2 document of a known alert, its references resolved from the feed."""
        entry = self._entries.get(alert_id)
        if entry is None:
            return None
        return to_cap_xml(
            entry.alert, sender=self.sender, signer_name=entry.signer_name, thread=self.thread(entry.alert)
        )

    def atom(self, now_s: float, base_url: str) -> str:
        """An Atom 1.0 index of the active alerts, each linking to its CAP document."""
        base = base_url.rstrip("/")
        ET.register_namespace("", ATOM_NAMESPACE)

        def sub(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
            el = ET.SubElement(parent, f"{{{ATOM_NAMESPACE}}}{tag}", attrs)
            if text is not None:
                el.text = xml_text(text)
            return el

        active = self.active(now_s)
        feed = ET.Element(f"{{{ATOM_NAMESPACE}}}feed")
        sub(feed, "id", f"{base}/alerts.atom")
        sub(feed, "title", f"Active alerts: {self.sender}")
        newest = max((e.alert.fields.issued_at_s for e in active), default=int(now_s))
        sub(feed, "updated", iso_utc(newest))
        sub(feed, "link", rel="self", type="application/atom+xml", href=f"{base}/alerts.atom")
        author = sub(feed, "author")
        sub(author, "name", self.sender)
        for e in active:
            f = e.alert.fields
            url = f"{base}/alerts/{e.alert.id_hex}.xml"
            entry = sub(feed, "entry")
            sub(entry, "id", url)
            headline = f.text.splitlines()[0][:160] if f.text else ""
            sub(entry, "title", f"{f.kind.value} ({f.severity.value}): {headline}")
            sub(entry, "updated", iso_utc(f.issued_at_s))
            sub(entry, "published", iso_utc(f.issued_at_s))
            entry_author = sub(entry, "author")
            sub(entry_author, "name", e.signer_name or f"key {e.alert.key_id_hex}")
            sub(entry, "category", term=f.kind.value)
            sub(entry, "link", rel="alternate", type=CAP_CONTENT_TYPE, href=url)
            sub(entry, "summary", f.text)
        ET.indent(feed)
        return ET.tostring(feed, encoding="unicode", xml_declaration=True) + "\n"

    def _evict(self, now_s: float) -> None:
        """Bound memory: drop the oldest inactive entries first, then the oldest."""
        if len(self._entries) <= self.max_alerts:
            return
        for alert_id in [a for a in self._entries if not self.is_active(a, now_s)]:
            if len(self._entries) <= self.max_alerts:
                break
            del self._entries[alert_id]
        while len(self._entries) > self.max_alerts:
            self._entries.popitem(last=False)
        self._closed &= set(self._entries)
