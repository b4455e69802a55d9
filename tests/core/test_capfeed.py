"""The CAP feed's state: threads, what is active, the Atom index, bounded memory."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Unpack

from relayd.core.cap import CAP_NAMESPACE, cap_reference
from relayd.core.capfeed import ATOM_NAMESPACE, CAP_CONTENT_TYPE, CapFeed
from relayd.core.model import Kind, Severity, SignedAlert
from tests.cap_support import assert_valid_cap
from tests.core.protocol_support import NOW_S, FrameOptions, Net

CAP = {"cap": CAP_NAMESPACE}
ATOM = {"a": ATOM_NAMESPACE}


def _alert(net: Net, text: str, **kw: Unpack[FrameOptions]) -> SignedAlert:
    return net.frame("dispatcher", text, **kw).to_signed_alert()


def _doc(feed: CapFeed, alert: SignedAlert) -> ET.Element:
    document = feed.document(alert.alert_id)
    assert document is not None
    assert_valid_cap(document)
    return ET.fromstring(document)  # noqa: S314 - our own output


def _atom_ids(feed: CapFeed, now_s: float) -> list[str]:
    root = ET.fromstring(feed.atom(now_s, "http://127.0.0.1:8089/"))  # noqa: S314 - our own output
    out = []
    for entry in root.findall("a:entry", ATOM):
        link = entry.find("a:link", ATOM)
        assert link is not None
        assert link.get("type") == CAP_CONTENT_TYPE
        href = link.get("href") or ""
        assert href.startswith("http://127.0.0.1:8089/alerts/")
        out.append(href.rsplit("/", 1)[1].removesuffix(".xml"))
    return out


def test_update_and_allclear_thread_to_the_original_and_close_it(net: Net) -> None:
    feed = CapFeed(sender="city-net")
    original = _alert(net, "Flooding on River Rd")
    update = _alert(net, "Flooding: River Rd closed", kind=Kind.UPDATE, ref=original.alert_id)
    allclear = _alert(net, "River Rd open", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=original.alert_id)
    now = NOW_S + 10
    assert feed.add(original, "Dispatch A", now)
    assert feed.add(update, "Dispatch A", now)
    assert not feed.add(update, "Dispatch A", now)  # once
    assert set(_atom_ids(feed, now)) == {original.id_hex, update.id_hex}
    original_ref = cap_reference(original, "city-net")
    assert _doc(feed, original).find("cap:references", CAP) is None
    assert _doc(feed, update).findtext("cap:references", namespaces=CAP) == original_ref
    assert feed.add(allclear, "Dispatch A", now)
    clear_doc = _doc(feed, allclear)
    assert clear_doc.findtext("cap:references", namespaces=CAP) == original_ref
    assert clear_doc.findtext("cap:info/cap:urgency", namespaces=CAP) == "Past"
    # The thread is closed: only the all-clear is left in the index; every document still served.
    assert _atom_ids(feed, now) == [allclear.id_hex]
    assert not feed.is_active(update.alert_id, now)
    assert feed.document(original.alert_id) is not None


def test_a_cancel_of_an_update_closes_the_whole_thread(net: Net) -> None:
    feed = CapFeed()
    original = _alert(net, "Smoke near school")
    update = _alert(net, "Smoke: evacuating", kind=Kind.UPDATE, ref=original.alert_id)
    cancel = _alert(net, "Cancelled: false alarm", kind=Kind.CANCEL, ref=update.alert_id)
    for a in (original, update, cancel):
        feed.add(a, None, NOW_S)
    assert feed.thread(cancel) == (original, update)
    refs = _doc(feed, cancel).findtext("cap:references", namespaces=CAP)
    assert refs == f"{cap_reference(original)} {cap_reference(update)}"
    assert _doc(feed, cancel).findtext("cap:msgType", namespaces=CAP) == "Cancel"
    assert _atom_ids(feed, NOW_S) == [cancel.id_hex]


def test_expiry_ends_activity_and_reports_never_enter(net: Net) -> None:
    feed = CapFeed()
    short = _alert(net, "Short", lifetime_s=60)
    other = _alert(net, "Other")
    report = net.frame("reporter", "!r tree down", kind=Kind.REPORT).to_signed_alert()
    feed.add(short, None, NOW_S)
    feed.add(other, None, NOW_S)
    assert not feed.add(report, None, NOW_S)
    assert set(_atom_ids(feed, NOW_S)) == {short.id_hex, other.id_hex}
    assert _atom_ids(feed, NOW_S + 61) == [other.id_hex]


def test_the_index_is_well_formed_atom_even_for_text_xml_cannot_carry(net: Net) -> None:
    feed = CapFeed()
    feed.add(_alert(net, "odd \ufffe text & <tags>"), "A & B", NOW_S)
    root = ET.fromstring(feed.atom(NOW_S, "http://h:1"))  # noqa: S314 - our own output
    assert root.findtext("a:id", namespaces=ATOM) == "http://h:1/alerts.atom"
    entry = root.find("a:entry", ATOM)
    assert entry is not None
    assert entry.findtext("a:summary", namespaces=ATOM) == "odd \ufffd text & <tags>"
    assert entry.findtext("a:author/a:name", namespaces=ATOM) == "A & B"


def test_memory_is_bounded_and_inactive_entries_go_first(net: Net) -> None:
    feed = CapFeed(max_alerts=5)
    expired = [_alert(net, f"old {i}", lifetime_s=10) for i in range(3)]
    for a in expired:
        feed.add(a, None, NOW_S)
    fresh = [_alert(net, f"new {i}") for i in range(5)]
    for a in fresh:
        feed.add(a, None, NOW_S + 20)
    assert len(feed) == 5
    assert all(a.alert_id in feed for a in fresh)
