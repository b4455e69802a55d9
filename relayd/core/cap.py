"""Export to CAP 1.2 (OASIS Common Alerting Protocol) XML, so other alerting tools can
consume the feed. Mapping: design brief §2."""

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


def _xml_text(text: str) -> str:
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
_CERTAINTY: dict[Kind, str] = {
    Kind.REPORT: "Possible",
    Kind.ALERT: "Observed",
    Kind.UPDATE: "Observed",
    Kind.CANCEL: "Observed",
    Kind.ALLCLEAR: "Observed",
    Kind.TEST: "Unknown",
}


def _cap_time(epoch_s: int) -> str:
    # CAP requires an explicit offset, not "Z".
    return iso_utc(epoch_s).replace("Z", "+00:00")


def to_cap_xml(alert: SignedAlert, *, sender: str = "relayd", signer_name: str | None = None) -> str:
    f = alert.fields
    ET.register_namespace("", CAP_NAMESPACE)

    def sub(parent: ET.Element, tag: str, text: str) -> ET.Element:
        el = ET.SubElement(parent, f"{{{CAP_NAMESPACE}}}{tag}")
        el.text = _xml_text(text)
        return el

    root = ET.Element(f"{{{CAP_NAMESPACE}}}alert")
    sub(root, "identifier", alert.id_hex)
    sub(root, "sender", f"{sender}:{f.key_id.hex()}")
    sub(root, "sent", _cap_time(f.issued_at_s))
    sub(root, "status", "Test" if f.kind is Kind.TEST else "Actual")
    sub(root, "msgType", _MSG_TYPE[f.kind])
    sub(root, "scope", "Private" if f.kind is Kind.REPORT else "Public")
    if f.kind is Kind.REPORT:
        sub(root, "addresses", "dispatchers")
    if f.ref is not None:
        # CAP wants "sender,identifier,sent"; the referenced alert's sent time is not in the frame.
        sub(root, "references", f"{sender},{f.ref.hex()},")
    info = ET.SubElement(root, f"{{{CAP_NAMESPACE}}}info")
    sub(info, "category", "Safety")
    sub(info, "event", f.kind.value)
    sub(info, "responseType", "AllClear" if f.kind is Kind.ALLCLEAR else "Monitor")
    severity, urgency = _SEVERITY_URGENCY[f.severity]
    sub(info, "urgency", urgency)
    sub(info, "severity", severity)
    sub(info, "certainty", _CERTAINTY[f.kind])
    sub(info, "expires", _cap_time(f.expires_at_s))
    if signer_name:
        sub(info, "senderName", signer_name)
    sub(info, "headline", f.text.splitlines()[0][:160])
    sub(info, "description", f.text)
    area = ET.SubElement(info, f"{{{CAP_NAMESPACE}}}area")
    sub(area, "areaDesc", f.area or "unspecified")
    if f.area:
        geocode = ET.SubElement(area, f"{{{CAP_NAMESPACE}}}geocode")
        sub(geocode, "valueName", "relayd-area")
        sub(geocode, "value", f.area)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
