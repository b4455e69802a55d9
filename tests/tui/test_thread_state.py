"""Thread state (active, updated, cancelled, all-clear) does not depend on arrival order.

Messages overtake each other on a broker and on a mesh: an all-clear can arrive before the
alert it ends, and a verifier's reply to someone else's alert can arrive before that
alert's author is known. Whatever the order, the console must end up where the relays do.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relayd.core.jsonform import encode_alert
from relayd.core.model import Kind, Severity, SignedAlert
from relayd.core.topics import Topics
from relayd.testing.keys import TestNetwork
from tests.tui.support import FIXED_NOW_S, fixed_network
from tui.model import Lifecycle, Model, VerifyState

T = Topics("relayd")


@pytest.fixture(scope="module")
def thread(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestNetwork, dict[str, SignedAlert]]:
    net = fixed_network(tmp_path_factory.mktemp("thread-keys"))
    now = FIXED_NOW_S
    raid = net.sign("verifier", "Raid at 5th", now_s=now - 60)
    update = net.sign("dispatcher", "3 vans", kind=Kind.UPDATE, ref=raid.alert_id, now_s=now - 40)
    rumour = net.sign("dispatcher", "Checkpoint on Oak", severity=Severity.WARNING, now_s=now - 50)
    # The verifier may end its own alert, not the dispatcher's rumour (relayd/core/authority.py).
    allclear = net.sign(
        "verifier", "over", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=raid.alert_id, now_s=now - 10
    )
    overreach = net.sign(
        "verifier", "over", kind=Kind.ALLCLEAR, severity=Severity.INFO, ref=rumour.alert_id, now_s=now - 5
    )
    return net, {
        "raid": raid,
        "update": update,
        "rumour": rumour,
        "allclear": allclear,
        "overreach": overreach,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(["raid", "update", "rumour", "allclear", "overreach"]))
def test_any_arrival_order_ends_in_the_same_state(
    thread: tuple[TestNetwork, dict[str, SignedAlert]], order: list[str]
) -> None:
    net, alerts = thread
    m = Model(T, net.bundle, lambda: FIXED_NOW_S)
    for name in order:
        m.ingest(T.alerts, encode_alert(alerts[name]))
    ids = {name: a.id_hex for name, a in alerts.items()}
    assert m.feed[ids["raid"]].lifecycle(FIXED_NOW_S) is Lifecycle.ALLCLEAR
    assert m.feed[ids["update"]].lifecycle(FIXED_NOW_S) is Lifecycle.ALLCLEAR
    assert m.feed[ids["rumour"]].lifecycle(FIXED_NOW_S) is Lifecycle.ACTIVE
    assert [i.alert_id for i in m.active_alerts()] == [ids["rumour"]]
    # The overreach is never believed: rejected on arrival, or once its target's author is known.
    over = m.feed.get(ids["overreach"])
    assert over is None or over.state is VerifyState.REJECTED
