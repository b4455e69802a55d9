"""CAP 1.2 export: valid against the OASIS schema, with the design brief's mappings and the
standard's threading (references, -00:00, all-clear urgency Past)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.core.cap import CAP_NAMESPACE, cap_reference, to_cap_xml
from relayd.core.model import Kind, Severity, SignedAlert
from tests.cap_support import assert_valid_cap
from tests.core.protocol_support import SOME_ALERT_ID, AlertOptions, Net, alert_options

NS = {"cap": CAP_NAMESPACE}
# CAP 1.2 schema, element order within <alert> and <info> (the schema uses xs:sequence).
ALERT_ORDER = [
    "identifier",
    "sender",
    "sent",
    "status",
    "msgType",
    "source",
    "scope",
    "restriction",
    "addresses",
    "code",
    "note",
    "references",
    "incidents",
    "info",
]
INFO_ORDER = [
    "language",
    "category",
    "event",
    "responseType",
    "urgency",
    "severity",
    "certainty",
    "audience",
    "eventCode",
    "effective",
    "onset",
    "expires",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "contact",
    "parameter",
    "resource",
    "area",
]
CAP_SEVERITY = {"Extreme", "Severe", "Moderate", "Minor", "Unknown"}
CAP_URGENCY = {"Immediate", "Expected", "Future", "Past", "Unknown"}
CAP_CERTAINTY = {"Observed", "Likely", "Possible", "Unlikely", "Unknown"}
CAP_RESPONSE = {"Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor", "Assess", "AllClear", "None"}


def _parse(
    alert: SignedAlert,
    *,
    sender: str = "relayd",
    signer_name: str | None = None,
    thread: tuple[SignedAlert, ...] = (),
) -> ET.Element:
    document = to_cap_xml(alert, sender=sender, signer_name=signer_name, thread=thread)
    assert_valid_cap(document)
    return ET.fromstring(document.encode("utf-8"))  # noqa: S314 - our own export, not untrusted


def _text(root: ET.Element, path: str) -> str | None:
    el = root.find(path, NS)
    return None if el is None else el.text


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]


def _in_schema_order(children: list[str], order: list[str]) -> bool:
    positions = [order.index(c) for c in children]
    return positions == sorted(positions)


# kind -> (status, msgType, responseType, certainty) per the design brief §2
EXPECTED_KIND = {
    Kind.REPORT: ("Actual", "Alert", "Monitor", "Possible"),
    Kind.ALERT: ("Actual", "Alert", "Monitor", "Observed"),
    Kind.UPDATE: ("Actual", "Update", "Monitor", "Observed"),
    Kind.CANCEL: ("Actual", "Cancel", "Monitor", "Observed"),
    Kind.ALLCLEAR: ("Actual", "Update", "AllClear", "Observed"),
    Kind.TEST: ("Test", "Alert", "Monitor", "Unknown"),
}
EXPECTED_SEVERITY = {
    Severity.URGENT: ("Severe", "Immediate"),
    Severity.WARNING: ("Moderate", "Expected"),
    Severity.ADVISORY: ("Minor", "Expected"),
    Severity.INFO: ("Minor", "Future"),
}


@pytest.mark.parametrize("kind", list(Kind))
def test_kind_maps_to_cap_status_msgtype_responsetype_and_certainty(net: Net, kind: Kind) -> None:
    root = _parse(net.frame("dispatcher", "x", kind=kind, severity=Severity.WARNING).to_signed_alert())
    status, msg_type, response, certainty = EXPECTED_KIND[kind]
    assert _text(root, "cap:status") == status
    assert _text(root, "cap:msgType") == msg_type
    assert _text(root, "cap:info/cap:responseType") == response
    assert _text(root, "cap:info/cap:certainty") == certainty
    assert response in CAP_RESPONSE
    assert certainty in CAP_CERTAINTY


@pytest.mark.parametrize("severity", list(Severity))
def test_severity_maps_to_cap_severity_and_urgency(net: Net, severity: Severity) -> None:
    root = _parse(net.frame("dispatcher", "x", severity=severity).to_signed_alert())
    cap_severity, urgency = EXPECTED_SEVERITY[severity]
    assert _text(root, "cap:info/cap:severity") == cap_severity
    assert _text(root, "cap:info/cap:urgency") == urgency
    assert cap_severity in CAP_SEVERITY
    assert urgency in CAP_URGENCY


def test_report_is_private_to_dispatchers_and_broadcasts_are_public(net: Net) -> None:
    report = _parse(net.frame("reporter", "x", kind=Kind.REPORT).to_signed_alert())
    assert _text(report, "cap:scope") == "Private"
    assert _text(report, "cap:addresses") == "dispatchers"
    alert = _parse(net.frame("dispatcher", "x").to_signed_alert())
    assert _text(alert, "cap:scope") == "Public"
    assert alert.find("cap:addresses", NS) is None


def test_identity_times_and_area_are_exported_with_utc_as_minus_zero(net: Net) -> None:
    alert = net.frame("dispatcher", "first line\nsecond", area="9q8yyk").to_signed_alert()
    root = _parse(alert, sender="city-net", signer_name="Dispatch A")
    assert _text(root, "cap:identifier") == alert.id_hex
    assert _text(root, "cap:sender") == f"city-net:{alert.key_id_hex}"
    assert _text(root, "cap:sent") == "2026-11-21T13:14:08-00:00"
    assert root.find("cap:references", NS) is None
    assert _text(root, "cap:info/cap:expires") == "2026-11-21T13:44:08-00:00"
    assert _text(root, "cap:info/cap:senderName") == "Dispatch A"
    assert _text(root, "cap:info/cap:headline") == "first line"
    assert _text(root, "cap:info/cap:description") == "first line\nsecond"
    assert _text(root, "cap:info/cap:area/cap:areaDesc") == "9q8yyk"
    assert _text(root, "cap:info/cap:area/cap:geocode/cap:value") == "9q8yyk"


def test_references_name_the_earlier_messages_as_their_own_documents_do(net: Net) -> None:
    original = net.frame("dispatcher", "Gas leak on Elm", issued_at_s=1_795_000_000).to_signed_alert()
    update = net.frame(
        "dispatcher2", "Gas leak on Elm: area widened", kind=Kind.UPDATE, ref=original.alert_id
    ).to_signed_alert()
    allclear = net.frame(
        "dispatcher", "All clear on Elm", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=update.alert_id
    ).to_signed_alert()
    orig_doc = _parse(original, sender="city-net")
    as_stated = ",".join(_text(orig_doc, f"cap:{tag}") or "" for tag in ("sender", "identifier", "sent"))
    assert cap_reference(original, "city-net") == as_stated
    assert as_stated == f"city-net:{original.key_id_hex},{original.id_hex},2026-11-18T11:06:40-00:00"
    upd_doc = _parse(update, sender="city-net", thread=(original,))
    assert _text(upd_doc, "cap:references") == as_stated
    assert _text(upd_doc, "cap:msgType") == "Update"
    clear_doc = _parse(allclear, sender="city-net", thread=(original, update))
    assert _text(clear_doc, "cap:references") == f"{as_stated} {cap_reference(update, 'city-net')}"
    assert _text(clear_doc, "cap:msgType") == "Update"
    assert _text(clear_doc, "cap:info/cap:responseType") == "AllClear"
    assert _text(clear_doc, "cap:info/cap:urgency") == "Past"
    for doc in (orig_doc, upd_doc, clear_doc):
        assert _text(doc, "cap:info/cap:event") == "Neighborhood alert"


def test_a_reference_the_exporter_cannot_resolve_is_a_note_not_a_broken_reference(net: Net) -> None:
    update = net.frame("dispatcher", "x", kind=Kind.UPDATE).to_signed_alert()
    root = _parse(update)
    assert root.find("cap:references", NS) is None
    assert SOME_ALERT_ID.hex() in (_text(root, "cap:note") or "")


@pytest.mark.parametrize("kind", list(Kind))
def test_event_is_a_human_category(net: Net, kind: Kind) -> None:
    event = _text(_parse(net.frame("dispatcher", "x", kind=kind).to_signed_alert()), "cap:info/cap:event")
    assert event in {"Neighborhood alert", "Field report", "Network test"}
    assert event != kind.value


def test_elements_follow_the_cap_schema_order(net: Net) -> None:
    for kind in Kind:
        root = _parse(net.frame("dispatcher", "x", kind=kind, area="z1").to_signed_alert(), signer_name="n")
        assert _local(root.tag) == "alert"
        assert _in_schema_order([_local(c.tag) for c in root], ALERT_ORDER)
        info = root.find("cap:info", NS)
        assert info is not None
        assert _in_schema_order([_local(c.tag) for c in info], INFO_ORDER)


@settings(max_examples=100, deadline=None)
@given(options=alert_options())
def test_any_alert_exports_to_well_formed_cap_xml(net: Net, options: AlertOptions) -> None:
    alert = net.frame("dispatcher", **options).to_signed_alert()
    root = _parse(alert)
    description = _text(root, "cap:info/cap:description")
    # XML cannot carry U+FFFE/U+FFFF; the export substitutes U+FFFD for them.
    expected = alert.fields.text.replace("\ufffe", "\ufffd").replace("\uffff", "\ufffd")
    assert (description or "") == expected.replace("\r", "")


@given(text=st.sampled_from(["a\ufffeb", "\uffff", "ok"]))
def test_xml_illegal_characters_are_replaced_not_emitted(net: Net, text: str) -> None:
    root = _parse(net.frame("dispatcher", text, severity=Severity.INFO).to_signed_alert())
    assert _text(root, "cap:info/cap:description") == text.replace("\ufffe", "\ufffd").replace(
        "\uffff", "\ufffd"
    )
