"""The simulated neighborhood: virtual Meshtastic radios speaking the real device API over a
modelled LoRa medium. See docs/simulator.md."""

from __future__ import annotations

from relayd.sim.firmware import DisplayedMessage, SimRadio
from relayd.sim.medium import AirPacket, FloodingMode, LinkQuality, Medium, MediumStats, Topology
from relayd.sim.neighborhood import Endpoint, Neighborhood, build_medium
from relayd.sim.phoneapi import PhoneSession
from relayd.sim.scenario import (
    LinkSpec,
    NodeSpec,
    Role,
    Scenario,
    ScenarioError,
    ScriptedMessage,
    chain_scenario,
    grid_scenario,
    load_scenario,
)

__all__ = [
    "AirPacket",
    "DisplayedMessage",
    "Endpoint",
    "FloodingMode",
    "LinkQuality",
    "LinkSpec",
    "Medium",
    "MediumStats",
    "Neighborhood",
    "NodeSpec",
    "PhoneSession",
    "Role",
    "Scenario",
    "ScenarioError",
    "ScriptedMessage",
    "SimRadio",
    "Topology",
    "build_medium",
    "chain_scenario",
    "grid_scenario",
    "load_scenario",
]
