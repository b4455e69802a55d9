"""End to end on real firmware: `relayd run` drives a meshtasticd radio, the mesh is meshtasticd too.

A dispatcher's urgent alert published to the MQTT outbox goes through the relay daemon, its
radio's firmware and the firmware of two handhelds that repeat it, to a handheld three hops away.
Every handheld shows it once, with the bell.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from relayd.core.jsonform import encode_alert
from relayd.core.model import Role as KeyRole
from relayd.core.model import Severity
from relayd.sim.fwbackend import FirmwareNeighborhood
from relayd.testing.harness import RelayProcess, write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker
from tests.daemon.conftest import GENEROUS_LIMITS, Site
from tests.firmware.conftest import require_meshtasticd
from tests.firmware.test_firmware_neighborhood import HANDHELDS, chain


async def test_outbox_alert_reaches_three_hops_deep_once_with_bell_on_real_firmware(
    tmp_path: Path, network: TestNetwork, mosquitto: MosquittoBroker
) -> None:
    binary = require_meshtasticd()
    scenario = chain()
    hood = FirmwareNeighborhood(
        scenario, binary=binary, state_root=tmp_path / "nodes", handheld_log_path=tmp_path / "hh.jsonl"
    )
    await hood.start()
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
        # The relay radio sent it once; h1 and h2 repeated it (the firmware's managed flooding).
        st = hood.stats()
        assert st.nodes["h1"].frames_sent >= 1
        assert st.nodes["h2"].frames_sent >= 1
    finally:
        site.stop()
        log = site.relays["relay"].log_text() if "relay" in site.relays else ""
        await hood.stop()
        if "Traceback" in log:
            print(log[-4000:])
