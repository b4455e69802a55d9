from __future__ import annotations

from pathlib import Path

import pytest

from relayd.sim.scenario import Role, ScenarioError, load_scenario

CONFIG = Path(__file__).resolve().parents[2] / "config" / "sim"


def test_shipped_one_relay_scenario_loads() -> None:
    sc = load_scenario(CONFIG / "one-relay.toml")
    assert [n.role for n in sc.nodes].count(Role.RELAY) == 1
    assert [n.role for n in sc.nodes].count(Role.HANDHELD) == 2
    assert [c.name for c in sc.channels] == ["alerts", "reports"]
    assert sc.messages[0].channel_index == 1


def test_neighborhood_handhelds_each_hear_two_relays_and_relays_hear_each_other() -> None:
    sc = load_scenario(CONFIG / "neighborhood.toml")
    relays = {n.name for n in sc.nodes if n.role is Role.RELAY}
    assert relays == {"relay-north", "relay-center", "relay-south"}
    handhelds = [n.name for n in sc.nodes if n.role is Role.HANDHELD]
    assert len(handhelds) == 5
    pairs = {frozenset((link.a, link.b)) for link in sc.links}
    for hh in handhelds:
        assert sum(1 for r in relays if frozenset((hh, r)) in pairs) >= 2, hh
    assert frozenset(("relay-north", "relay-center")) in pairs
    assert frozenset(("relay-center", "relay-south")) in pairs


@pytest.mark.parametrize(
    ("body", "key", "expected"),
    [
        (
            '[[nodes]]\nname = "a"\n[[nodes]]\nname = "b"\n[[nodes]]\nname = "c"\nrole = "router"\n',
            "nodes[2].role",
            '"relay" or "handheld"',
        ),
        ('[[nodes]]\nname = "a"\n[[links]]\na = "a"\nb = "zz"\n', "links[0].b", "the name of a node"),
        ('preset = "SUPER_FAST"\n[[nodes]]\nname = "a"\n', "preset", "modem preset"),
        ('hop_limit = 9\n[[nodes]]\nname = "a"\n', "hop_limit", "integer in 0..7"),
        ('[[nodes]]\nname = "a"\n[[links]]\na = "a"\nb = "a"\n', "links[0].b", "a node other than a"),
        ('[[nodes]]\nname = "a"\nbogus = 1\n', "nodes[0].bogus", "one of the keys"),
        (
            '[[nodes]]\nname = "a"\n[[messages]]\nfrom = "a"\ntext = "x"\nchannel = 5\n',
            "messages[0].channel",
            "channel index",
        ),
        ("nodes = 3\n", "nodes", "an array of tables"),
        ("[[nodes]\n", "<file>", "valid TOML"),
    ],
)
def test_malformed_scenario_names_file_key_and_expectation(
    tmp_path: Path, body: str, key: str, expected: str
) -> None:
    f = tmp_path / "bad.toml"
    f.write_text(body)
    with pytest.raises(ScenarioError) as info:
        load_scenario(f)
    msg = str(info.value)
    assert str(f) in msg
    assert f"{key}:" in msg
    assert expected in msg
    assert info.value.key == key
