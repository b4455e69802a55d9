"""Who hears whom on the simulated LoRa channel: a directed graph of links and their quality.

Built from a scenario (relayd.sim.neighborhood.build_medium) or by hand in tests; the medium
(relayd.sim.medium) asks it which radios hear a transmission. Pure values, no sim time.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LinkQuality:
    snr_db: float
    rssi_dbm: int
    loss: float = 0.0


class Topology:
    """Directed links: `links[(tx, rx)]` = how well rx hears tx."""

    def __init__(self, links: dict[tuple[str, str], LinkQuality]) -> None:
        self.links = dict(links)
        hearers: dict[str, list[tuple[str, LinkQuality]]] = {}
        for (tx, rx), q in sorted(self.links.items()):
            hearers.setdefault(tx, []).append((rx, q))
        self._hearers = {tx: tuple(v) for tx, v in hearers.items()}
        heard: dict[str, list[str]] = {}
        for tx, rx in sorted(self.links):
            heard.setdefault(rx, []).append(tx)
        self._heard_by = {rx: tuple(v) for rx, v in heard.items()}

    @classmethod
    def from_pairs(
        cls, pairs: Iterable[tuple[str, str, LinkQuality]], *, bidirectional: bool = True
    ) -> Topology:
        links: dict[tuple[str, str], LinkQuality] = {}
        for a, b, q in pairs:
            links[(a, b)] = q
            if bidirectional:
                links[(b, a)] = q
        return cls(links)

    def hearers(self, tx: str) -> tuple[tuple[str, LinkQuality], ...]:
        """Nodes that can hear `tx`, sorted by name (deterministic iteration)."""
        return self._hearers.get(tx, ())

    def heard_by(self, rx: str) -> tuple[str, ...]:
        """Nodes whose transmissions `rx` can hear."""
        return self._heard_by.get(rx, ())
