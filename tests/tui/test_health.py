"""Relay health that cannot be missed: red in the Relays panel, counted in the status bar at
every size, explained in the banner. Signed statuses through a real Mosquitto."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from relayd.core.control import ControlKind
from relayd.core.status import LinkState, RelayState, RelayStatus, encode_status
from relayd.core.topics import Topics
from relayd.testing.harness import RelayProcess, write_relay_config
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker, free_port
from tests.tui.support import wait_for
from tests.tui.test_live import cell_style, cell_text, connected, make_app, peer
from tui.health import relay_problems
from tui.messages import LinkState as TuiLink
from tui.model import Model
from tui.widgets.panels import Part, fit, status_parts

T = Topics("relayd")


def healthy(name: str, **changes: object) -> RelayStatus:
    base = {
        "relay": name,
        "state": RelayState.ONLINE,
        "ts_s": time.time(),
        "radio": LinkState.CONNECTED,
        "radio_device": "/dev/ttyACM0",
        "broker": LinkState.CONNECTED,
    }
    base.update(changes)
    return RelayStatus(**base)  # type: ignore[arg-type] # each test names fields of their own types


def test_each_problem_is_named() -> None:
    assert relay_problems(healthy("relay-a")) == ()
    radio = relay_problems(healthy("relay-a", radio=LinkState.DISCONNECTED))
    assert [p.short for p in radio] == ["RADIO!"]
    assert "radio disconnected (/dev/ttyACM0)" in radio[0].detail
    many = relay_problems(
        healthy(
            "relay-a",
            storage_error="disk full",
            clock_warning="clock is 1970",
            backlog={"old_report": 3, "late_report": 2, "other": 9},
        )
    )
    assert [p.short for p in many] == ["DISK!", "CLOCK!", "BKLOG!"]
    assert "3 field report(s)" in many[2].detail
    # Late reports were delivered (marked late), chat is not news: neither is a problem.
    assert relay_problems(healthy("relay-a", backlog={"late_report": 2, "other": 9})) == ()
    # Offline says it all: what the last status said is stale.
    assert [p.short for p in relay_problems(healthy("relay-a", state=RelayState.OFFLINE))] == ["OFFLINE"]


def test_status_line_keeps_the_essentials_at_any_width() -> None:
    model = Model(T, None, time.time)
    model.relays.clear()
    parts = status_parts(
        model,
        TuiLink.RETRYING,
        broker="mqtt://broker.example.org:1883 (relayd)",
        key="dispatcher-with-a-long-name (dispatcher)",
        bell=True,
        waiting=2,
    )
    parts.insert(6, Part(" 3 RED", "bold", 9))
    for width in (40, 60, 80, 120, 200):
        line = fit(parts, width).plain
        for needed in ("retrying", "NO TRUST", "relays 0", "3 RED", "outbox 2 unsent", "inbox 0"):
            assert needed in line, (width, line)
    assert "broker.example.org" in fit(parts, 200).plain
    assert "broker.example.org" not in fit(parts, 80).plain


@pytest.mark.mosquitto
@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
async def test_relay_with_radio_down_is_red_and_counted(
    mosquitto: MosquittoBroker, network: TestNetwork, size: tuple[int, int]
) -> None:
    app = make_app(mosquitto.url, network)
    async with app.run_test(size=size) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        statuses = [
            healthy("relay-north"),
            healthy("relay-center", radio=LinkState.DISCONNECTED),
            healthy("relay-south", storage_error="database is locked", drops={"duplicate": 2}),
        ]
        for status in statuses:
            await client.publish(
                T.status(status.relay),
                network.seal(status.relay, ControlKind.STATUS, encode_status(status)),
                qos=1,
                retain=True,
            )
        await wait_for(pilot, lambda: len(app.model.relays) == 3)
        await pilot.pause(0.3)
        bar = str(app.main.query_one("#status-bar").render())
        assert "relays 3" in bar
        assert "· 2 RED" in bar
        banner = str(app.main.query_one("#banner").render())
        assert "relay relay-center: radio disconnected" in banner
        assert "relay relay-south: storage: database is locked" in banner
        await pilot.press("2")
        await pilot.pause()
        table = app.main.relay_table
        assert cell_text(table, "relay-center", "state") == "RADIO!"
        assert "red" in cell_style(table, "relay-center", "relay")
        assert cell_text(table, "relay-south", "state") == "DISK!"
        assert "red" not in cell_style(table, "relay-north", "relay")
        assert cell_text(table, "relay-north", "state") == "online"
        # The radio comes back: no longer red, no longer counted.
        back = healthy("relay-center", ts_s=time.time() + 1)
        await client.publish(
            T.status("relay-center"),
            network.seal("relay-center", ControlKind.STATUS, encode_status(back)),
            qos=1,
            retain=True,
        )
        await wait_for(pilot, lambda: len(app.model.alarming_relays) == 1)
        await pilot.pause(0.3)
        assert "· 1 RED" in str(app.main.query_one("#status-bar").render())
        assert cell_text(table, "relay-center", "state") == "online"


@pytest.mark.mosquitto
async def test_a_real_relay_whose_radio_is_unreachable_is_red(
    mosquitto: MosquittoBroker, network: TestNetwork, tmp_path: Path
) -> None:
    # `relayd run` for real, with its radio pointed at a port nothing listens on.
    config = write_relay_config(
        tmp_path / "relay", "relay-north", network, radio_port=free_port(), broker_port=mosquitto.port
    )
    relay = RelayProcess(config, tmp_path / "relay.log")
    relay.start()
    try:
        app = make_app(mosquitto.url, network)
        async with app.run_test(size=(80, 24)) as pilot:
            await connected(pilot, app)
            await wait_for(pilot, lambda: "relay-north" in app.model.relays, timeout_s=20)
            await pilot.pause(0.3)
            status = app.model.relays["relay-north"].status
            assert status.broker is LinkState.CONNECTED, relay.log_text()[-2000:]
            assert status.radio is not LinkState.CONNECTED
            assert app.model.alarming_relays == ["relay-north"]
            assert "· 1 RED" in str(app.main.query_one("#status-bar").render())
            assert "relay relay-north: radio" in str(app.main.query_one("#banner").render())
            await pilot.press("2")
            await pilot.pause()
            assert cell_text(app.main.relay_table, "relay-north", "state") == "RADIO!"
            assert "red" in cell_style(app.main.relay_table, "relay-north", "relay")
    finally:
        relay.terminate()
