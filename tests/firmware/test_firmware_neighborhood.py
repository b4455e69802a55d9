"""The simulated neighborhood on real firmware: meshtasticd nodes linked by relayd's medium.

A chain relay - h1 - h2 - h3: each radio hears only its neighbours, so a broadcast from the relay
reaches h3 only if the firmware of h1 and h2 repeats it (three hops deep). One neighborhood serves
the module (starting four nodes takes ~9 s); the last test puts `relayd run` on it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path

import pytest
import pytest_asyncio

from relayd.core.jsonform import encode_alert
from relayd.core.model import Role as KeyRole
from relayd.core.model import Severity
from relayd.meshapi.packets import TEXT_MESSAGE_APP, from_radio_variant, text_packet, to_radio_disconnect
from relayd.sim.apiclient import DeviceApiClient
from relayd.sim.fwbackend import FirmwareNeighborhood, is_simulator_frame
from relayd.sim.scenario import LinkSpec, Role, Scenario, make_node
from relayd.testing.harness import RelayProcess, write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker
from tests.daemon.conftest import GENEROUS_LIMITS, Site
from tests.firmware.conftest import require_meshtasticd

pytestmark = pytest.mark.asyncio(loop_scope="module")
HANDHELDS = ("h1", "h2", "h3")


def chain() -> Scenario:
    nodes = (make_node("relay", Role.RELAY), *(make_node(h, Role.HANDHELD) for h in HANDHELDS))
    links = (
        LinkSpec("relay", "h1", 6.0, -95),
        LinkSpec("h1", "h2", 5.0, -100),
        LinkSpec("h2", "h3", 4.0, -104),
    )
    return Scenario(name="fw-chain", nodes=nodes, links=links)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def hood(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[FirmwareNeighborhood]:
    binary = require_meshtasticd()
    root = tmp_path_factory.mktemp("fw-hood")
    async with FirmwareNeighborhood(
        chain(), binary=binary, state_root=root / "nodes", handheld_log_path=root / "handhelds.jsonl"
    ) as h:
        yield h


async def test_broadcast_reaches_three_hops_through_the_firmware(hood: FirmwareNeighborhood) -> None:
    ep = hood.endpoints["relay"]
    assert ep.tcp_host == "127.0.0.1"
    async with await DeviceApiClient.connect(ep.tcp_port or 0) as c:
        msgs = await c.handshake(4242)
        me = msgs[0].my_info.my_node_num
        assert me == ep.num
        # The scenario's settings reached the firmware.
        lora = next(m.config.lora for m in msgs if m.HasField("config") and m.config.HasField("lora"))
        assert lora.hop_limit == 3
        channels = [m.channel.settings.name for m in msgs if m.HasField("channel")]
        assert channels[:2] == ["alerts", "reports"]
        p = text_packet("\x07URGENT: fw chain", hop_limit=3, packet_id=0x4242)
        setattr(p, "from", me)
        await c.send_packet(p)
        assert await hood.wait_for(lambda: all(hood.displays(h) for h in HANDHELDS), 40.0)
        await asyncio.sleep(3.0)  # any late duplicate would show up by now
        seen = c.drain_nowait()
    for h in HANDHELDS:
        shown = hood.displays(h)
        assert [d.text for d in shown] == ["\x07URGENT: fw chain"], h
        assert shown[0].bell
        assert shown[0].sender_id == ep.node_id
        assert shown[0].channel_name == "alerts"
    # The relay's client sees what a real radio sends: no SIMULATOR_APP frames, and one
    # queueStatus for its packet (SimRadio's extra report is held back by the pass-through).
    assert not any(is_simulator_frame(m) for m in seen)
    statuses = [m for m in seen if from_radio_variant(m) == "queueStatus"]
    assert [m.queueStatus.mesh_packet_id for m in statuses].count(0x4242) == 1
    st = hood.stats()
    assert st.nodes["h1"].frames_sent >= 1  # h1's firmware repeated it
    assert st.nodes["h2"].frames_sent >= 1
    # Every frame a radio handed over went through the medium (once its queue has drained).
    assert await hood.wait_for(lambda: hood.stats().frames_sent == hood.frames_from_radios, 10.0)


async def test_handheld_text_reaches_the_relay_client(hood: FirmwareNeighborhood) -> None:
    ep = hood.endpoints["relay"]
    async with await DeviceApiClient.connect(ep.tcp_port or 0) as c:
        await c.handshake(4343)
        await c.collect(0.3)
        hood.handheld_send("h3", "!r smoke on Elm", channel_index=1)
        got = await c.until(
            lambda m: (
                from_radio_variant(m) == "packet"
                and m.packet.decoded.portnum == TEXT_MESSAGE_APP
                and m.packet.decoded.payload == b"!r smoke on Elm"
            ),
            timeout_s=40.0,
        )
    p = got.packet
    assert getattr(p, "from") == hood.node_num("h3")
    assert p.channel == 1
    assert p.hop_start == 3
    assert p.hop_limit == 1  # repeated by h2 and h1
    assert p.rx_snr != 0


async def test_a_clients_disconnect_ends_its_session_not_the_radios_link(hood: FirmwareNeighborhood) -> None:
    """`relayd run` says ToRadio.disconnect when it stops; the firmware answers it by closing its
    API socket. Through the pass-through that must end only the client's session: the node's link
    (which also carries its frames to the medium) stays up and the next client gets a handshake."""
    ep = hood.endpoints["relay"]
    link_task = hood.links["relay"]._task
    async with await DeviceApiClient.connect(ep.tcp_port or 0) as c:
        await c.handshake(4545)
        await c.send(to_radio_disconnect())
        await asyncio.sleep(0.5)
        assert c.closed
    assert link_task is not None
    assert not link_task.done()
    async with await DeviceApiClient.connect(ep.tcp_port or 0) as c:
        msgs = await c.handshake(4646)
    assert msgs[0].my_info.my_node_num == ep.num


async def test_handheld_log_has_the_simulated_handhelds_format(hood: FirmwareNeighborhood) -> None:
    log = hood._log_path
    assert log is not None
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert lines
    assert {tuple(sorted(line)) for line in lines} == {tuple(sorted(asdict(hood.displays("h1")[0])))}


async def test_a_same_id_repeat_from_the_origin_is_shown_only_where_it_was_missed(
    hood: FirmwareNeighborhood,
) -> None:
    """What relayd's late repeat (relayd/core/repeat.py) and its simulator rely on, checked on the
    firmware: h2 loses every copy of a broadcast from the relay (a fade, injected in the air
    between the radios). The relay's client sends the same packet id again. h1, which has it,
    shows it no second time but relays the originator's copy once more
    (NextHopRouter::shouldFilterReceived: hops away 0, not in its transmit queue); h2 shows it
    from that copy, and h3 from h2's. Nobody shows it twice. (meshtasticd in SimRadio mode
    skips PhoneAPI's check on recent client ids; relayd waits out that window itself.)"""
    ep = hood.endpoints["relay"]
    text = "\x07URGENT: fw late repeat"
    packet_id = 0x4343
    air = hood.medium
    assert air is not None
    async with await DeviceApiClient.connect(ep.tcp_port or 0) as c:
        msgs = await c.handshake(4343)
        me = msgs[0].my_info.my_node_num
        air.fade_for("h2", (me, packet_id))
        p = text_packet(text, hop_limit=3, packet_id=packet_id, want_ack=True)
        setattr(p, "from", me)
        await c.send_packet(p)
        assert await hood.wait_for(lambda: any(d.text == text for d in hood.displays("h1")), 30.0)
        await asyncio.sleep(8.0)  # the flood is over: h1's repeat, and the relay's own retransmissions
        assert not any(d.text == text for d in hood.displays("h2"))
        relayed_by_h1 = [f for f in hood.air_log if f.node == "h1" and f.packet_id == packet_id]
        air.fade_for("h2", (me, packet_id), faded=False)
        again = text_packet(text, hop_limit=3, packet_id=packet_id, want_ack=False)
        setattr(again, "from", me)
        await c.send_packet(again)
        assert await hood.wait_for(
            lambda: all(any(d.text == text for d in hood.displays(h)) for h in HANDHELDS), 40.0
        )
        await asyncio.sleep(5.0)  # a copy shown twice would be by now
    for h in HANDHELDS:
        assert [d.text for d in hood.displays(h)].count(text) == 1, h
    assert len([f for f in hood.air_log if f.node == "h1" and f.packet_id == packet_id]) > len(relayed_by_h1)


async def test_outbox_alert_reaches_three_hops_deep_once_with_bell_via_relayd_run(
    hood: FirmwareNeighborhood, tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker
) -> None:
    """End to end on real firmware: a dispatcher's urgent alert published to the MQTT outbox goes
    through `relayd run`, its radio's firmware and the firmware of h1 and h2, which repeat it, to
    h3 three hops away. Every handheld shows it once, with the bell."""
    # The real-firmware neighborhood stands in for the simulated one: Site uses what both offer.
    site = Site(hood, mosquitto, network, tmp_path, root="fw")  # type: ignore[arg-type]
    try:
        if "relay" not in network.identities:
            network.add_member("relay", KeyRole.RELAY)
        site.configs["relay"] = write_relay_config(
            tmp_path / "relays",
            "relay",
            network,
            radio_port=hood.endpoints["relay"].tcp_port,
            broker_port=mosquitto.port,
            time_scale=1.0,
            suppression=False,
            topic_root="fw",
            extra=GENEROUS_LIMITS,
        )
        site.relays["relay"] = RelayProcess(site.configs["relay"], tmp_path / "relay.log")
        site.relays["relay"].start()
        await site.wait_relays_ready(timeout_s=40)
        before = {h: hood.stats().nodes[h].frames_sent for h in ("h1", "h2")}
        alert = site.network.sign(
            "dispatcher", "Flood on River Rd. Move uphill now.", severity=Severity.URGENT
        )
        await site.publish(site.topic("outbox"), encode_alert(alert))
        assert await site.wait_displayed_everywhere([alert], timeout_s=60), {
            h: [d.text[:20] for d in hood.displays(h)] for h in HANDHELDS
        }
        await asyncio.sleep(5)  # a redundant transmission or a retransmission would arrive by now
        for handheld in HANDHELDS:
            shown = [d for d in hood.displays(handheld) if d.text == alert.onair]
            assert len(shown) == 1, f"{handheld} showed the alert {len(shown)} times"
            assert shown[0].bell
        # h1's and h2's firmware repeated it (managed flooding, hop limit from the radio's config).
        after = hood.stats().nodes
        assert after["h1"].frames_sent > before["h1"]
        assert after["h2"].frames_sent > before["h2"]
    finally:
        site.stop()
        log = site.relays["relay"].log_text() if "relay" in site.relays else ""
        if "Traceback" in log:
            print(log[-4000:])
