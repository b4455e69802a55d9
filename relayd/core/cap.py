"""Export to CAP 1.2 (OASIS Common Alerting Protocol) XML, so other alerting tools can
consume the feed (`relayd cap`, relayd/capfeed.py). Mapping: design brief §2.

What consumers rely on to thread messages, per the CAP 1.2 standard (section 3.2.1):

* `references` names each earlier message as `sender,identifier,sent`, exactly as that
  message's own `<sender>`, `<identifier>` and `<sent>` read; several are separated by spaces.
  The frame carries only the id of the alert it refers to, so the caller passes the earlier
  messages it knows (`thread`); without them `references` is left out rather than written
  incomplete, and a `note` names the referenced id.
* Times carry an explicit offset, and UTC is written `-00:00` (never `Z` or `+00:00`).
* An all-clear is an Update with responseType `AllClear` and urgency `Past`.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from relayd.core.model import Kind, Severity, SignedAlert
from relayd.core.timefmt import iso_utc

CAP_NAMESPACE = "urn:oasis:names:tc:emergency:cap:1.2"
# XML 1.0 forbids these code points even as character references; an alert text may hold the
# noncharacters U+FFFE/U+FFFF (the codec only bans control characters), so the export
# replaces them rather than emit a document no XML parser accepts.
_XML_ILLEGAL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    return _XML_ILLEGAL_RE.sub("\ufffd", text)


_SEVERITY_URGENCY: dict[Severity, tuple[str, str]] = {
    Severity.URGENT: ("Severe", "Immediate"),
    Severity.WARNING: ("Moderate", "Expected"),
    Severity.ADVISORY: ("Minor", "Expected"),
    Severity.INFO: ("Minor", "Future"),
}
_MSG_TYPE: dict[Kind, str] = {
    Kind.REPORT: "Alert",
    Kind.ALERT: "Alert",
    Kind.UPDATE: "Update",
    Kind.CANCEL: "Cancel",
    Kind.ALLCLEAR: "Update",
    Kind.TEST: "Alert",
}
# `event`: the type of the subject event, as a person would name it. The frame carries no
# hazard type, so it names what relayd knows: a neighborhood alert (the same for its
# updates, cancellation and all-clear, which are about the same event), a report, a test.
_EVENT: dict[Kind, str] = {
    Kind.REPORT: "Field report",
    Kind.ALERT: "Neighborhood alert",
    Kind.UPDATE: "Neighborhood alert",
    Kind.CANCEL: "Neighborhood alert",
    Kind.ALLCLEAR: "Neighborhood alert",
    Kind.TEST: "Network test",
}
_CERTAINTY: dict[Kind, str] = {
    Kind.REPORT: "Possible",
    Kind.ALERT: "Observed",
    Kind.UPDATE: "Observed",
    Kind.CANCEL: "Observed",
    Kind.ALLCLEAR: "Observed",
    Kind.TEST: "Unknown",
}


def cap_time(epoch_s: int) -> str:
    """A CAP dateTime: UTC with the explicit offset `-00:00` the standard requires."""
    return iso_utc(epoch_s).replace("Z", "-00:00")


def cap_sender(alert: SignedAlert, sender: str = "relayd") -> str:
    """The `<sender>` of an alert: the network's name and the signing key's id."""
    return f"{sender}:{alert.key_id_hex}"


def cap_reference(alert: SignedAlert, sender: str = "relayd") -> str:
    """`sender,identifier,sent` of an alert, as its own CAP document states them."""
    return f"{cap_sender(alert, sender)},{alert.id_hex},{cap_time(alert.fields.issued_at_s)}"


def to_cap_xml(
    alert: SignedAlert,
    *,
    sender: str = "relayd",
    signer_name: str | None = None,
    thread: tuple[SignedAlert, ...] = (),
) -> str:
    """The CAP 1.2 document of `alert`. `thread`: the earlier messages it refers to, oldest
    first (the referenced alert and what that one referred to), as far as they are known."""
    f = alert.fields
    ET.register_namespace("", CAP_NAMESPACE)

    def sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{CAP_NAMESPACE}}}{tag}")
        el.text = xml_text(text)
        return el

    references = [a for a in thread if a.alert_id != alert.alert_id]
    root = ET.Element(f"{{{CAP_NAMESPACE}}}alert")
    sub(root, "identifier", alert.id_hex)
    sub(root, "sender", cap_sender(alert, sender))
    sub(root, "sent", cap_time(f.issued_at_s))
    sub(root, "status", "Test" if f.kind is Kind.TEST else "Actual")
    sub(root, "msgType", _MSG_TYPE[f.kind])
    sub(root, "scope", "Private" if f.kind is Kind.REPORT else "Public")
    if f.kind is Kind.REPORT:
        sub(root, "addresses", "dispatchers")
    if f.ref is not None and not any(a.alert_id == f.ref for a in references):
        sub(root, "note", f"refers to relayd alert {f.ref.hex()}, not known to this feed")
    if f.ref is not None and references:
        sub(root, "references", " ".join(cap_reference(a, sender) for a in references))
    info = ET.SubElement(root, f"{{{CAP_NAMESPACE}}}info")
    sub(info, "category", "Safety")
    sub(info, "event", _EVENT[f.kind])
    sub(info, "responseType", "AllClear" if f.kind is Kind.ALLCLEAR else "Monitor")
    severity, urgency = _SEVERITY_URGENCY[f.severity]
    sub(info, "urgency", "Past" if f.kind is Kind.ALLCLEAR else urgency)
    sub(info, "severity", severity)
    sub(info, "certainty", _CERTAINTY[f.kind])
    sub(info, "expires", cap_time(f.expires_at_s))
    if signer_name:
        sub(info, "senderName", signer_name)
    sub(info, "headline", f.text.splitlines()[0][:160] if f.text else "")
    sub(info, "description", f.text)
    area = ET.SubElement(info, f"{{{CAP_NAMESPACE}}}area")
    sub(area, "areaDesc", f.area or "unspecified")
    if f.area:
        geocode = ET.SubElement(area, f"{{{CAP_NAMESPACE}}}geocode")
        sub(geocode, "valueName", "relayd-area")
        sub(geocode, "value", f.area)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
