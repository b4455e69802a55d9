"""Alert lifecycle in the Feed against a real Mosquitto: state per row, the active view, and a
cursor that stays on the alert the dispatcher chose."""

from __future__ import annotations

import time

import pytest

from relayd.core.jsonform import Envelope, encode_alert
from relayd.core.model import DropReason, Kind, Severity
from relayd.core.topics import Topics
from relayd.testing.keys import TestNetwork
from relayd.testing.mosquitto import MosquittoBroker
from tests.tui.support import wait_for
from tests.tui.test_live import connected, make_app, peer
from tui.app import RelaydApp
from tui.model import Lifecycle
from tui.screens.compose import ComposeScreen

pytestmark = pytest.mark.mosquitto

T = Topics("relayd")
SIZE = (120, 40)


def state(app: RelaydApp, alert_id: str) -> str:
    return str(app.main.feed_table.get_cell(alert_id, "state"))  # a rich Text's str() is its plain text


async def test_all_cleared_and_cancelled_alerts_leave_the_active_view(
    mosquitto: MosquittoBroker, network: TestNetwork
) -> None:
    now = time.time()
    raid = network.sign("verifier", "Raid at 5th & Pine", area="9q8yyk", now_s=now - 60)
    update = network.sign(
        "dispatcher2", "3 vans now", kind=Kind.UPDATE, ref=raid.alert_id, now_s=now - 30, area="9q8yyk"
    )
    allclear = network.sign(
        "verifier", "All clear: vans gone", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=raid.alert_id
    )
    rumour = network.sign("dispatcher", "Checkpoint on Oak", severity=Severity.WARNING, now_s=now - 50)
    cancel = network.sign(
        "dispatcher",
        "Disregard: no checkpoint",
        kind=Kind.CANCEL,
        severity=Severity.WARNING,
        ref=rumour.alert_id,
    )
    # A verifier may end only its own alerts (relayd/core/authority.py): not the rumour.
    overreach = network.sign(
        "verifier", "All clear at Oak", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=rumour.alert_id
    )
    old = network.sign("dispatcher", "Earlier today", now_s=now - 4000, lifetime_s=600)
    live = network.sign("dispatcher2", "Observers needed at the courthouse", severity=Severity.WARNING)
    app = make_app(mosquitto.url, network)
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        for alert in (raid, update, rumour, old, live):
            await client.publish(
                T.alerts, encode_alert(alert, Envelope(relay="relay-north", via="rf")), qos=1
            )
        await wait_for(pilot, lambda: len(app.model.feed) == 5)
        await pilot.pause()
        table = app.main.feed_table
        # The landing view: live alerts only; the expired one is not there.
        assert {table.selected_id} <= {raid.id_hex, update.id_hex, rumour.id_hex, live.id_hex}
        assert not table.has_item(old.id_hex)
        assert state(app, raid.id_hex) == "updated"
        assert state(app, update.id_hex) == "active"
        assert state(app, rumour.id_hex) == "active"

        await client.publish(T.alerts, encode_alert(overreach), qos=1)
        await wait_for(pilot, lambda: app.model.diagnostics.rejected_total == 1)
        assert app.model.diagnostics.rejected[0].reason is DropReason.ROLE_NOT_ALLOWED
        await pilot.pause()
        assert state(app, rumour.id_hex) == "active"
        await client.publish(T.alerts, encode_alert(allclear), qos=1)
        await client.publish(T.alerts, encode_alert(cancel), qos=1)
        await wait_for(pilot, lambda: len(app.model.feed) == 7)
        await pilot.pause()
        # An all-clear ends the alert and its update; a cancel ends its alert.
        assert list(table.rows) == [live.id_hex]
        assert app.model.feed[raid.id_hex].lifecycle(time.time()) is Lifecycle.ALLCLEAR
        assert [i.alert_id for i in app.model.active_alerts()] == [live.id_hex]

        await pilot.press("v")  # everything
        await pilot.pause()
        assert table.row_count == 7
        assert state(app, raid.id_hex) == "all-clear"
        assert state(app, update.id_hex) == "all-clear"
        assert state(app, rumour.id_hex) == "cancelled"
        assert state(app, old.id_hex) == "expired"
        assert state(app, allclear.id_hex) == "ends"
        assert state(app, live.id_hex) == "active"
        assert "all (v)" in str(app.main.query_one("#filter-summary").render())
        await pilot.press("v")
        await pilot.pause()
        assert table.row_count == 1


async def test_cursor_stays_on_the_chosen_alert_while_20_arrive(
    mosquitto: MosquittoBroker, network: TestNetwork
) -> None:
    first = [network.sign("dispatcher", f"Alert {i}", area=f"zone-{i}") for i in range(3)]
    more = [network.sign("dispatcher2", f"Later alert {i}", severity=Severity.WARNING) for i in range(20)]
    app = make_app(mosquitto.url, network)
    async with app.run_test(size=SIZE) as pilot, peer(mosquitto) as client:
        await connected(pilot, app)
        for alert in first:
            await client.publish(T.alerts, encode_alert(alert), qos=1)
        await wait_for(pilot, lambda: len(app.model.feed) == 3)
        await pilot.pause()
        table = app.main.feed_table
        await pilot.press("end")  # the newest: the row a follow-the-newest cursor would leave
        await pilot.pause()
        chosen = first[2].id_hex
        assert table.selected_id == chosen
        for alert in more:
            await client.publish(T.alerts, encode_alert(alert), qos=1)
        await wait_for(pilot, lambda: len(app.model.feed) == 23)
        await pilot.pause()
        assert table.row_count == 23
        assert table.selected_id == chosen
        # One key each for update, cancel and all-clear, all about the chosen alert.
        for key, kind in (("u", Kind.UPDATE), ("c", Kind.CANCEL), ("a", Kind.ALLCLEAR)):
            await pilot.press(key)
            await wait_for(pilot, lambda: isinstance(app.screen, ComposeScreen))
            screen = app.screen
            assert isinstance(screen, ComposeScreen)
            assert screen.draft.kind is kind
            assert screen.draft.ref == chosen
            assert screen.draft.area == "zone-2"
            await pilot.press("escape")
            await wait_for(pilot, lambda: not isinstance(app.screen, ComposeScreen))
            assert table.selected_id == chosen
        # Moving up one row and more arrivals: still where the operator put it.
        await pilot.press("up")
        await pilot.pause()
        chosen = first[1].id_hex
        assert table.selected_id == chosen
        extra = network.sign("dispatcher", "One more")
        await client.publish(T.alerts, encode_alert(extra), qos=1)
        await wait_for(pilot, lambda: extra.id_hex in app.model.feed)
        await pilot.pause()
        assert table.selected_id == chosen
