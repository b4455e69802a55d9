"""The neighbour memory (relayd/core/neighbours.py): what it learns and what it keeps."""

from __future__ import annotations

import json

from relayd.core.neighbours import Neighbours
from relayd.core.suppression import Adjacency, adjacency

PEER_RADIO = 0x20
HANDHELD = 0x99


def test_only_peer_relay_radios_are_kept_never_the_handhelds_heard() -> None:
    book = Neighbours(peer_nodes={"relay-south": PEER_RADIO})
    assert not book.heard_node(HANDHELD)  # not a relay's radio: nothing to persist
    assert book.heard_node(PEER_RADIO)
    assert json.loads(book.doc())["heard"] == [PEER_RADIO]
    older = json.dumps({"peers": {"relay-south": PEER_RADIO}, "heard": [PEER_RADIO, HANDHELD]})
    again = Neighbours()
    assert again.load(older)  # an older relay kept a handheld: rewrite the stored form
    assert again.heard_nodes == {PEER_RADIO}
    assert again.rf_heard() == ("!00000020",)


def test_a_peer_unheard_while_we_listened_is_apart_and_heard_later_a_neighbour() -> None:
    book = Neighbours(peer_nodes={"relay-far": 0x77})
    book.await_copy("relay-far", deadline_s=10.0, connects=1)
    assert not book.classify_awaited(5.0, lambda _c: True)  # its copy may still come
    assert book.classify_awaited(10.0, lambda _c: True)
    assert adjacency("relay-far", book.memory()) is Adjacency.APART
    assert book.heard_node(0x77)
    assert adjacency("relay-far", book.memory()) is Adjacency.NEIGHBOUR


def test_nothing_is_learned_when_our_radio_was_not_listening() -> None:
    book = Neighbours(peer_nodes={"relay-far": 0x77})
    book.await_copy("relay-far", deadline_s=10.0, connects=1)
    assert not book.classify_awaited(11.0, lambda _c: False)  # reconnected meanwhile
    assert adjacency("relay-far", book.memory()) is Adjacency.UNKNOWN


def test_one_radio_claimed_by_two_relays_is_noticed() -> None:
    book = Neighbours(peer_nodes={"relay-a": 0x20, "relay-b": 0x20, "relay-c": 0x30})
    assert book.claimed_twice("relay-a", {0x10})
    assert not book.claimed_twice("relay-c", {0x10})
    assert book.claimed_twice("relay-c", {0x30})  # it claims our own radio
