"""`relayd cap` against a real broker and relay: an alert, its update and its all-clear
fetched from the feed over HTTP, each valid against the OASIS CAP 1.2 schema, threaded by
`references` that name the original exactly; forgeries never served."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from relayd.core.cap import CAP_NAMESPACE, cap_reference
from relayd.core.capfeed import ATOM_NAMESPACE
from relayd.core.jsonform import encode_alert
from relayd.core.model import Kind, Severity, SignedAlert
from tests.cap_support import assert_valid_cap
from tests.daemon.conftest import ONE_RELAY, Site, SiteFactory

pytestmark = pytest.mark.mosquitto

SENDER = "alerts.example.org"
CAP = {"cap": CAP_NAMESPACE}
ATOM = {"a": ATOM_NAMESPACE}


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - loopback
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def get(url: str) -> tuple[int, str, str]:
    return await asyncio.to_thread(_get, url)


class Feed:
    def __init__(self, proc: subprocess.Popen[str], base: str) -> None:
        self.proc = proc
        self.base = base

    async def index(self) -> list[str]:
        status, content_type, body = await get(f"{self.base}/alerts.atom")
        assert status == 200
        assert content_type == "application/atom+xml; charset=utf-8"
        root = ET.fromstring(body)  # noqa: S314 - the feed under test, on loopback
        return [
            (link.get("href") or "").rsplit("/", 1)[1].removesuffix(".xml")
            for link in root.findall("a:entry/a:link", ATOM)
        ]

    async def wait_index(self, expected: set[str], timeout_s: float = 15.0) -> None:
        async with asyncio.timeout(timeout_s):
            while True:
                if set(await self.index()) == expected:
                    return
                await asyncio.sleep(0.1)

    async def document(self, alert: SignedAlert) -> ET.Element:
        status, content_type, body = await get(f"{self.base}/alerts/{alert.id_hex}.xml")
        assert status == 200, body
        assert content_type == "application/cap+xml; charset=utf-8"
        assert_valid_cap(body)
        return ET.fromstring(body)  # noqa: S314 - validated above


def _spawn_feed(site: Site) -> subprocess.Popen[str]:
    net = site.network
    return subprocess.Popen(
        [
            sys.executable, "-m", "relayd", "cap",
            "--broker", site.broker.url, "--root", site.root,
            "--trust", str(net.bundle_path), "--root-pub", str(net.pub_path("root")),
            "--listen", "127.0.0.1:0", "--sender", SENDER,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


@pytest.fixture
async def start_feed(site_factory: SiteFactory) -> AsyncIterator[Callable[[Site], Awaitable[Feed]]]:
    procs: list[subprocess.Popen[str]] = []

    async def start(site: Site) -> Feed:
        proc = _spawn_feed(site)
        procs.append(proc)
        assert proc.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 20)
        assert line.startswith("relayd cap: serving http://127.0.0.1:"), line
        return Feed(proc, line.split("serving ", 1)[1].strip().removesuffix("/alerts.atom"))

    yield start
    for proc in procs:
        proc.terminate()
        try:
            assert proc.wait(timeout=10) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=5)
            if proc.stdout is not None:
                rest = proc.stdout.read()
                proc.stdout.close()
                assert "Traceback" not in rest, rest


async def test_an_alert_its_update_and_its_allclear_are_served_threaded_and_valid(
    site_factory: SiteFactory,
    start_feed: Callable[[Site], Awaitable[Feed]],
) -> None:
    site: Site = await site_factory(ONE_RELAY)
    await site.wait_relays_ready()
    net = site.network
    original = net.sign("dispatcher", "Gas leak at Oak & 3rd, stay indoors", severity=Severity.URGENT)
    await site.publish(site.topic("outbox"), encode_alert(original))
    # Started after the alert went out: the feed learns it from the relay's retained active topic.
    assert await site.collect(site.topic(f"active/{original.id_hex}"), 2.0)
    feed: Feed = await start_feed(site)
    await feed.wait_index({original.id_hex})

    forged = net.sign("reporter", "Evacuate everything now", kind=Kind.ALERT)  # a role that may not
    update = net.sign(
        "dispatcher2", "Gas leak: Oak closed 2nd-4th", kind=Kind.UPDATE, severity=Severity.WARNING,
        ref=original.alert_id,
    )  # fmt: skip
    await site.publish(site.topic("outbox"), encode_alert(forged))
    await site.publish(site.topic("outbox"), encode_alert(update))
    await feed.wait_index({original.id_hex, update.id_hex})
    # An emptied retained active topic is unsigned: it does not hide a live alert.
    await site.publish(site.topic(f"active/{original.id_hex}"), b"", retain=True)
    await asyncio.sleep(1.0)
    assert set(await feed.index()) == {original.id_hex, update.id_hex}

    reference = cap_reference(original, SENDER)
    original_doc = await feed.document(original)
    stated = ",".join(
        original_doc.findtext(f"cap:{t}", namespaces=CAP) or "" for t in ("sender", "identifier", "sent")
    )
    assert stated == reference
    assert reference.endswith("-00:00")
    update_doc = await feed.document(update)
    assert update_doc.findtext("cap:msgType", namespaces=CAP) == "Update"
    assert update_doc.findtext("cap:references", namespaces=CAP) == reference

    allclear = net.sign(
        "dispatcher",
        "All clear at Oak & 3rd",
        kind=Kind.ALLCLEAR,
        severity=Severity.INFO,
        ref=original.alert_id,
    )
    await site.publish(site.topic("outbox"), encode_alert(allclear))
    await feed.wait_index({allclear.id_hex})
    allclear_doc = await feed.document(allclear)
    assert allclear_doc.findtext("cap:references", namespaces=CAP) == reference
    assert allclear_doc.findtext("cap:msgType", namespaces=CAP) == "Update"
    assert allclear_doc.findtext("cap:info/cap:responseType", namespaces=CAP) == "AllClear"
    assert allclear_doc.findtext("cap:info/cap:urgency", namespaces=CAP) == "Past"
    # The closed thread stays fetchable; the forgery was never accepted.
    await feed.document(original)
    await feed.document(update)
    status, _, _ = await get(f"{feed.base}/alerts/{forged.id_hex}.xml")
    assert status == 404
    status, _, _ = await get(f"{feed.base}/alerts/nothing.xml")
    assert status == 404
