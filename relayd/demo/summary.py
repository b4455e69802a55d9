"""The closing summary of a demo run, computed from what the Observer saw (pure)."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field

from relayd.core.model import SignedAlert
from relayd.core.status import RelayStatus
from relayd.demo.observer import AlertTrack
from relayd.demo.script import Forgery


@dataclass(frozen=True, slots=True)
class HandheldTally:
    expected: int  # genuine alerts issued
    exactly_once: int  # of those, displayed exactly once
    missing: int  # never displayed
    duplicates: int  # displayed more than once
    other_texts: int  # reports, acks and chat it also showed


@dataclass(frozen=True, slots=True)
class RelayTally:
    transmitted: int
    suppressed: int
    airtime_s: float
    drops: dict[str, int]


@dataclass(frozen=True, slots=True)
class Summary:
    startup_to_ready_s: float
    duration_s: float
    alerts_issued: int
    issued_by_kind: dict[str, int]
    reports_sent: int
    reports_received: int
    handhelds: dict[str, HandheldTally]
    all_delivered_exactly_once: bool
    delivery_latency_s: dict[str, float]
    forgeries_injected: int
    forgeries_rejected: int
    forgeries_leaked: list[str]
    on_air_transmissions: int
    suppressed_transmissions: int
    airtime_used_s: float
    relays: dict[str, RelayTally] = field(default_factory=dict)
    broker: str = ""

    def to_json_dict(self) -> dict[str, object]:
        return asdict(self)

    def format(self) -> str:
        lines = [
            "",
            "summary",
            f"  startup to ready        {self.startup_to_ready_s:8.2f} s"
            "  (broker + radios + relays connected)",
            f"  alerts issued           {self.alerts_issued:8d}  "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.issued_by_kind.items())),
            f"  field reports           {self.reports_received:8d} received of {self.reports_sent} sent",
            "  delivered per handheld  (exactly once / issued)",
        ]
        for name, h in self.handhelds.items():
            extra = []
            if h.missing:
                extra.append(f"{h.missing} missing")
            if h.duplicates:
                extra.append(f"{h.duplicates} duplicated")
            note = "  " + ", ".join(extra) if extra else ""
            lines.append(f"    {name:<20} {h.exactly_once:3d} / {h.expected:<3d}{note}")
        verdict = "yes" if self.all_delivered_exactly_once else "NO"
        lines.append(f"  every alert to every handheld exactly once: {verdict}")
        if self.delivery_latency_s:
            lat = self.delivery_latency_s
            lines.append(f"  outbox → last handheld  median {lat['median']:.2f} s, max {lat['max']:.2f} s")
        lines += [
            f"  forgeries injected      {self.forgeries_injected:8d}",
            f"  forgeries rejected      {self.forgeries_rejected:8d}"
            + (f"  LEAKED: {', '.join(self.forgeries_leaked)}" if self.forgeries_leaked else ""),
            f"  on-air transmissions    {self.on_air_transmissions:8d}  (alerts put on air by relays)",
            f"  suppressed              {self.suppressed_transmissions:8d}  (another relay covered it)",
            f"  airtime used            {self.airtime_used_s:8.2f} s  (sum over relays, from their status)",
        ]
        for name, r in self.relays.items():
            drops = ", ".join(f"{k} {v}" for k, v in sorted(r.drops.items()) if k != "duplicate") or "-"
            lines.append(
                f"    {name:<20} tx {r.transmitted:3d}  suppressed {r.suppressed:3d}"
                f"  airtime {r.airtime_s:6.2f} s  drops: {drops}"
            )
        return "\n".join(lines)


def summarize(
    *,
    startup_s: float,
    duration_s: float,
    issued: list[SignedAlert],
    forgeries: list[Forgery],
    reports_sent: int,
    reports_received: int,
    tracks: dict[str, AlertTrack],
    handhelds: list[str],
    other_displays: Counter[str],
    statuses: dict[str, RelayStatus],
    broker: str,
) -> Summary:
    tallies: dict[str, HandheldTally] = {}
    for h in handhelds:
        counts = [tracks[a.id_hex].displayed[h] if a.id_hex in tracks else 0 for a in issued]
        tallies[h] = HandheldTally(
            expected=len(issued),
            exactly_once=sum(1 for c in counts if c == 1),
            missing=sum(1 for c in counts if c == 0),
            duplicates=sum(1 for c in counts if c > 1),
            other_texts=other_displays[h],
        )
    latencies = []
    for a in issued:
        t = tracks.get(a.id_hex)
        if t is not None and t.seen_at is not None and len(t.displayed_at) == len(handhelds):
            latencies.append(max(t.displayed_at.values()) - t.seen_at)
    rejected, leaked = 0, []
    for f in forgeries:
        t = tracks.get(f.alert_id)
        accepted = t is not None and bool(t.received_by or t.transmitted_by)
        if t is not None and t.dropped_by and not accepted:
            rejected += 1
        else:
            leaked.append(f.alert_id[:8])
    relays = {
        name: RelayTally(s.transmitted, s.suppressed, round(s.airtime_last_hour_s, 3), dict(s.drops))
        for name, s in sorted(statuses.items())
    }
    return Summary(
        startup_to_ready_s=round(startup_s, 3),
        duration_s=duration_s,
        alerts_issued=len(issued),
        issued_by_kind=dict(Counter(a.kind.value for a in issued)),
        reports_sent=reports_sent,
        reports_received=reports_received,
        handhelds=tallies,
        all_delivered_exactly_once=all(t.exactly_once == t.expected for t in tallies.values()),
        delivery_latency_s=(
            {"median": round(statistics.median(latencies), 3), "max": round(max(latencies), 3)}
            if latencies
            else {}
        ),
        forgeries_injected=len(forgeries),
        forgeries_rejected=rejected,
        forgeries_leaked=leaked,
        on_air_transmissions=sum(r.transmitted for r in relays.values()),
        suppressed_transmissions=sum(r.suppressed for r in relays.values()),
        airtime_used_s=round(sum(r.airtime_s for r in relays.values()), 3),
        relays=relays,
        broker=broker,
    )
