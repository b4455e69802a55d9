"""Known-answer test vectors for protocol version 1, read from docs/protocol.md.

The vectors in the doc are the contract: this test composes each one from its seed and
fields and requires the signed bytes, signature, alert id and on-air text to match byte
for byte, then decodes and verifies the published on-air text.

To regenerate the block after a deliberate protocol change (which needs a new protocol
version, see docs/protocol.md "Versioning"):

    python tests/core/test_vectors.py > /tmp/vectors.json
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest

from relayd.core.codec import SIGNATURE_BYTES, compose, decode
from relayd.core.identity import Identity
from relayd.core.model import AlertFields, Kind, Role, Severity
from relayd.core.trust import TrustBundle, TrustedKey, parse_signed_bundle, sign_bundle
from relayd.core.verify import Verifier

PROTOCOL_DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
VECTORS_FORMAT = "relayd-test-vectors/1"

# --- generation ---------------------------------------------------------------------------------

_ISSUED_S = 1_795_266_848  # 2026-11-21T13:14:08Z


def _seed(label: str) -> bytes:
    return hashlib.sha256(label.encode("ascii")).digest()


# (name, seed label, role, fields without key_id; "ref" may name an earlier vector)
_DEFINITIONS: list[tuple[str, str, Role, dict[str, Any]]] = [
    (
        "urgent alert",
        "relayd test vector 1",
        Role.DISPATCHER,
        {
            "kind": "alert",
            "severity": "urgent",
            "issued_at_s": _ISSUED_S,
            "seq": 1,
            "expires_at_s": _ISSUED_S + 1800,
            "text": "Police at 5th & Main, observers needed",
        },
    ),
    (
        "update with reference, area and multi-byte text",
        "relayd test vector 2",
        Role.VERIFIER,
        {
            "kind": "update",
            "severity": "warning",
            "issued_at_s": _ISSUED_S + 600,
            "seq": 7,
            "expires_at_s": _ISSUED_S + 4200,
            "text": "Moved to Ñandú Park → east gate\nBring water 🚰",
            "ref": "urgent alert",
            "area": "9q8yyk",
        },
    ),
    (
        "urgent drill",
        "relayd test vector 3",
        Role.DISPATCHER,  # a drill that rings: dispatchers only
        {
            "kind": "test",
            "severity": "urgent",
            "issued_at_s": _ISSUED_S,
            "seq": 300,
            "expires_at_s": _ISSUED_S + 900,
            "text": "Drill: meet at the library",
            "area": "zone-4",
        },
    ),
    (
        "relay-wrapped handheld report",
        "relayd test vector 4",
        Role.RELAY,
        {
            "kind": "report",
            "severity": "advisory",
            "issued_at_s": _ISSUED_S + 30,
            "seq": 70_000,
            "expires_at_s": _ISSUED_S + 30 + 7200,
            "text": "!r smoke behind the school",
            "origin_node": 0xA1B2C3D4,
        },
    ),
    (
        "all-clear",
        "relayd test vector 1",
        Role.DISPATCHER,
        {
            "kind": "allclear",
            "severity": "info",
            "issued_at_s": _ISSUED_S + 1200,
            "seq": 2,
            "expires_at_s": _ISSUED_S + 1200 + 3600,
            "text": "All clear at 5th & Main. Thank you.",
            "ref": "urgent alert",
        },
    ),
]
_ROOT_LABEL = "relayd test vector root"


def _token_body(onair: str) -> bytes:
    """The token's fields without the signature."""
    return base64.b85decode(onair.rpartition("\n")[2])[:-SIGNATURE_BYTES]


def _fields_from(doc: dict[str, Any], key_id: bytes) -> AlertFields:
    return AlertFields(
        kind=Kind(doc["kind"]),
        severity=Severity(doc["severity"]),
        key_id=key_id,
        issued_at_s=doc["issued_at_s"],
        seq=doc["seq"],
        expires_at_s=doc["expires_at_s"],
        text=doc["text"],
        ref=bytes.fromhex(doc["ref"]) if doc.get("ref") else None,
        area=doc.get("area"),
        origin_node=doc.get("origin_node"),
    )


def generate() -> dict[str, Any]:
    """The vectors block for docs/protocol.md."""
    alerts: list[dict[str, Any]] = []
    ids: dict[str, str] = {}
    keys: dict[bytes, TrustedKey] = {}
    for name, label, role, definition in _DEFINITIONS:
        identity = Identity(label, role, _seed(label))
        spec = dict(definition)
        if "ref" in spec:
            spec["ref"] = ids[spec["ref"]]
        fields_doc = {
            "kind": spec["kind"],
            "severity": spec["severity"],
            "key_id": identity.key_id.hex(),
            "issued_at_s": spec["issued_at_s"],
            "seq": spec["seq"],
            "expires_at_s": spec["expires_at_s"],
            "ref": spec.get("ref"),
            "area": spec.get("area"),
            "origin_node": spec.get("origin_node"),
            "text": spec["text"],
        }
        frame = compose(_fields_from(fields_doc, identity.key_id), identity.sign)
        ids[name] = frame.alert_id.hex()
        keys[identity.key_id] = TrustedKey(identity.public_key, label.replace("relayd test ", ""), role)
        alerts.append(
            {
                "name": name,
                "seed": identity.seed.hex(),
                "seed_is": f"sha256({label!r})",
                "role": role.value,
                "public_key": identity.public_key.hex(),
                "key_id": identity.key_id.hex(),
                "fields": fields_doc,
                "token_body": _token_body(frame.onair).hex(),
                "signed_bytes": frame.signed_bytes.hex(),
                "signature": frame.signature.hex(),
                "alert_id": frame.alert_id.hex(),
                "onair": frame.onair,
                "onair_bytes": len(frame.onair.encode("utf-8")),
            }
        )
    root = Identity("root", Role.ROOT, _seed(_ROOT_LABEL))
    bundle = TrustBundle(
        1, _ISSUED_S - 86400, _ISSUED_S - 86400 + 365 * 86400, root.public_key, tuple(keys.values())
    )
    signed = sign_bundle(bundle, root.sign)
    return {
        "format": VECTORS_FORMAT,
        "alerts": alerts,
        "bundle": {
            "root_seed": root.seed.hex(),
            "root_seed_is": f"sha256({_ROOT_LABEL!r})",
            "root_public_key": root.public_key.hex(),
            "body": signed.body,
            "signature": signed.signature.hex(),
            "file": signed.to_bytes().decode("ascii"),
        },
    }


# --- the doc's vectors --------------------------------------------------------------------------


def load_vectors(path: Path = PROTOCOL_DOC) -> dict[str, Any]:
    for block in re.findall(r"```json\n(.*?)\n```", path.read_text(encoding="utf-8"), flags=re.DOTALL):
        try:
            doc = json.loads(block)
        except json.JSONDecodeError:
            continue
        if isinstance(doc, dict) and doc.get("format") == VECTORS_FORMAT:
            return doc
    raise AssertionError(f"{path} has no ```json block with format {VECTORS_FORMAT!r}")


VECTORS = load_vectors() if PROTOCOL_DOC.exists() else {"alerts": [], "bundle": {}}
ALERTS = VECTORS["alerts"]


def _doc_bundle() -> TrustBundle:
    b = VECTORS["bundle"]
    return parse_signed_bundle(
        b["file"].encode("ascii"), pinned_root=bytes.fromhex(b["root_public_key"])
    ).bundle


def test_the_doc_has_at_least_three_alert_vectors() -> None:
    assert len(ALERTS) >= 3
    assert {v["fields"]["kind"] for v in ALERTS} >= {"alert", "update", "test", "report"}


@pytest.mark.parametrize("vector", ALERTS, ids=[v["name"] for v in ALERTS])
def test_compose_reproduces_the_vector_byte_for_byte(vector: dict[str, Any]) -> None:
    identity = Identity("vector", Role(vector["role"]), bytes.fromhex(vector["seed"]))
    assert identity.public_key.hex() == vector["public_key"]
    assert identity.key_id.hex() == vector["key_id"] == vector["fields"]["key_id"]
    frame = compose(_fields_from(vector["fields"], identity.key_id), identity.sign)
    assert _token_body(frame.onair).hex() == vector["token_body"]
    assert frame.signed_bytes.hex() == vector["signed_bytes"]
    assert frame.signature.hex() == vector["signature"]
    assert frame.alert_id.hex() == vector["alert_id"]
    assert frame.onair == vector["onair"]
    assert len(frame.onair.encode("utf-8")) == vector["onair_bytes"]


@pytest.mark.parametrize("vector", ALERTS, ids=[v["name"] for v in ALERTS])
def test_the_vector_decodes_and_verifies(vector: dict[str, Any]) -> None:
    decoded = decode(vector["onair"])
    assert decoded.fields == _fields_from(vector["fields"], bytes.fromhex(vector["key_id"]))
    assert decoded.signed_bytes.hex() == vector["signed_bytes"]
    assert decoded.alert_id.hex() == vector["alert_id"]
    verdict = Verifier(_doc_bundle()).verify(
        vector["onair"].encode("utf-8"), vector["fields"]["issued_at_s"] + 60
    )
    assert verdict.ok, verdict
    assert verdict.signer is not None
    assert verdict.signer.role.value == vector["role"]


def test_the_bundle_vector_verifies_and_re_signs_identically() -> None:
    b = VECTORS["bundle"]
    root = Identity("root", Role.ROOT, bytes.fromhex(b["root_seed"]))
    assert root.public_key.hex() == b["root_public_key"]
    parsed = parse_signed_bundle(b["file"].encode("ascii"), pinned_root=root.public_key)
    assert parsed.body == b["body"]
    assert parsed.signature.hex() == b["signature"]
    resigned = sign_bundle(parsed.bundle, root.sign)
    assert resigned.body == b["body"]
    assert resigned.to_bytes().decode("ascii") == b["file"]


def test_the_doc_matches_the_generator() -> None:
    # Guards against editing the definitions above without regenerating the doc (or vice versa).
    assert generate() == VECTORS


if __name__ == "__main__":
    sys.stdout.write(json.dumps(generate(), indent=2, ensure_ascii=True) + "\n")
