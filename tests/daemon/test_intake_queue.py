"""The MQTT intake: QoS 1 deliveries are never discarded and go first; QoS 0 is bounded
and what it sheds is counted."""

from __future__ import annotations

import asyncio
import logging

import aiomqtt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from relayd.daemon.intake_queue import SHED_REASON, IntakeQueue, IntakeStats, intake_queue_type


def _msg(mid: int, qos: int) -> aiomqtt.Message:
    return aiomqtt.Message("relayd/outbox", f"m{mid}".encode(), qos, False, mid, None)


@given(st.lists(st.integers(min_value=0, max_value=1), max_size=200), st.integers(min_value=1, max_value=20))
def test_qos1_never_shed_and_first_qos0_bounded_and_counted(qoses: list[int], limit: int) -> None:
    q = IntakeQueue(limit)
    for mid, qos in enumerate(qoses):
        q.put_nowait(_msg(mid, qos))  # never raises QueueFull, whatever the mix
    out = [q.get_nowait() for _ in range(q.qsize())]
    assert q.empty()
    acked = [m.mid for m in out if m.qos > 0]
    bulk = [m.mid for m in out if m.qos == 0]
    # Every QoS 1 delivery, in arrival order, before any QoS 0 one.
    assert acked == [mid for mid, qos in enumerate(qoses) if qos > 0]
    assert [m.qos for m in out] == sorted((m.qos for m in out), reverse=True)
    # QoS 0: the first `limit` kept in order; every one beyond counted, none lost silently.
    sent_bulk = [mid for mid, qos in enumerate(qoses) if qos == 0]
    assert bulk == sent_bulk[:limit]
    assert q.shed == len(sent_bulk) - len(bulk)


def test_room_frees_as_the_handler_takes_messages() -> None:
    q = IntakeQueue(2)
    for mid in range(3):
        q.put_nowait(_msg(mid, 0))
    assert q.shed == 1
    assert q.get_nowait().mid == 0
    q.put_nowait(_msg(3, 0))
    assert q.shed == 1
    assert [q.get_nowait().mid for _ in range(2)] == [1, 3]


def test_shedding_is_logged_with_a_rate_not_once_per_message(caplog: pytest.LogCaptureFixture) -> None:
    now = [0.0]
    q = IntakeQueue(1, clock=lambda: now[0])
    q.put_nowait(_msg(0, 0))
    with caplog.at_level(logging.WARNING, logger="relayd.mqtt"):
        for mid in range(1, 1051):
            now[0] += 0.01  # 100 messages/s for 10.5 s
            q.put_nowait(_msg(mid, 0))
    lines = [r.getMessage() for r in caplog.records if "intake overloaded" in r.getMessage()]
    assert len(lines) == 2, lines  # the first shed, then once per interval
    assert lines[0].startswith("MQTT intake overloaded: shedding QoS 0 messages (1 shed")
    assert "100/s" in lines[1]


def test_link_stats_survive_reconnects_and_read_as_a_drop_reason() -> None:
    stats = IntakeStats()
    assert stats.as_drops() == {}
    queue_type = intake_queue_type(stats)
    for _ in range(2):  # aiomqtt builds a new queue for every client (connection)
        q = queue_type(maxsize=1)
        q.put_nowait(_msg(0, 0))
        q.put_nowait(_msg(1, 0))
    assert stats.as_drops() == {SHED_REASON: 2}


async def test_a_waiting_reader_gets_a_qos1_delivery_even_when_qos0_is_full() -> None:
    q = IntakeQueue(1)
    q.put_nowait(_msg(0, 0))
    q.put_nowait(_msg(1, 0))  # shed
    assert q.get_nowait().mid == 0
    reader = asyncio.ensure_future(q.get())
    await asyncio.sleep(0)
    q.put_nowait(_msg(2, 0))
    q.put_nowait(_msg(3, 0))  # shed: the reader has not run yet
    q.put_nowait(_msg(4, 1))
    assert (await asyncio.wait_for(reader, 1)).mid == 4  # taken first
    assert q.get_nowait().mid == 2
    assert q.shed == 2
