"""What the people (and the attacker) in the demo do, through the real interfaces only:
handhelds type `!r …` reports on the simulated radios, dispatchers publish signed alerts to
the outbox over MQTT, and forgeries arrive on the outbox and over the air.

`Background` is the ambient activity of the interactive demo; `scripted_dispatcher` plays the
dispatcher for `relayd demo --headless`. Neither reports outcomes: the Observer does.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from relayd.core.codec import compose, decode
from relayd.core.identity import Identity
from relayd.core.jsonform import Envelope, encode_alert
from relayd.core.model import AlertFields, Kind, Role, Severity, SignedAlert
from relayd.demo.observer import Observer, ReportSeen
from relayd.demo.stack import DemoStack

log = logging.getLogger("relayd.demo")

REPORTS_CHANNEL = 1  # the scenario's "reports" channel (config: relay.reports_channel)
ALERT_LIFETIME_S = 1800
Step = Callable[[int], Awaitable[None]]

# Cross streets and zones only: never names or home addresses (design brief, section 9).
FIELD_REPORTS = (
    "police at 5th & Main, 3 cars, people detained",
    "ICE van parked at Oak & 3rd, agents on foot",
    "checkpoint on Elm St by the school",
    "smoke at Pine & 7th, road blocked",
    "unmarked cars circling Cedar & 2nd",
    "crowd gathering at the Birch St laundromat",
)
UPDATES = (
    "Update: observers on scene, stay clear of the block",
    "Update: 2 legal observers there, more welcome",
    "Update: officers leaving, watch for a second visit",
)
FORGED_TEXTS = (
    "RAID at Birch & 2nd NOW, everyone go there",
    "Bridge closed by police, use the river path",
    "All clear everywhere, go home",
)


@dataclass(frozen=True, slots=True)
class Forgery:
    alert_id: str
    how: str  # "outbox: tampered" or "rf: unknown key from hh-…"


@dataclass
class Actions:
    """Inject things into the running demo; remembers what it injected (for the summary)."""

    stack: DemoStack
    observer: Observer
    issued: list[SignedAlert] = field(default_factory=list)
    forgeries: list[Forgery] = field(default_factory=list)
    reports_sent: int = 0
    rng: random.Random = field(default_factory=random.Random)
    _impostor: Identity = field(default_factory=lambda: Identity.generate("impostor", Role.DISPATCHER))

    def field_report(self, handheld: str, text: str) -> None:
        """A responder types `!r TEXT` on a stock handheld (the relays' report prefix)."""
        self.stack.hood.handheld_send(handheld, f"!r {text}", channel_index=REPORTS_CHANNEL)
        self.reports_sent += 1

    async def issue(
        self,
        signer: str,
        text: str,
        *,
        kind: Kind = Kind.ALERT,
        severity: Severity = Severity.URGENT,
        ref: bytes | None = None,
    ) -> SignedAlert:
        """Sign with `signer`'s key and publish to the outbox, as the TUI does."""
        alert = self.stack.network.sign(
            signer, text, kind=kind, severity=severity, ref=ref, lifetime_s=ALERT_LIFETIME_S
        )
        payload = encode_alert(alert, Envelope(signer_name=signer, signer_role=Role.DISPATCHER.value))
        await self.observer.publish(self.stack.topics.outbox, payload)
        self.issued.append(alert)
        return alert

    async def forge_outbox(self) -> Forgery:
        """A genuine dispatcher alert altered after signing (the signature no longer matches)."""
        genuine = self.stack.network.sign("dispatcher2", self.rng.choice(FORGED_TEXTS))
        body, token = genuine.onair.rsplit("\n", 1)
        tampered = body.replace("2nd", "4th") if "2nd" in body else body + "!"
        onair = f"{tampered}\n{token}"
        forgery = Forgery(decode(onair).alert_id.hex(), "outbox: text altered after signing")
        self.forgeries.append(forgery)
        await self.observer.publish(self.stack.topics.outbox, onair.encode())
        return forgery

    def forge_rf(self, handheld: str) -> Forgery:
        """A rogue handheld broadcasts an alert signed by a key the trust bundle does not know."""
        alert = sign_with(self._impostor, self.rng.choice(FORGED_TEXTS))
        forgery = Forgery(alert.id_hex, f"rf: unknown key, sent by {handheld}")
        self.forgeries.append(forgery)
        self.stack.hood.handheld_send(handheld, alert.onair, channel_index=0)
        return forgery

    def latest_active_alert(self) -> SignedAlert | None:
        """The newest genuine alert that no all-clear or cancel has closed."""
        closed = {a.fields.ref for a in self.issued if a.kind in (Kind.ALLCLEAR, Kind.CANCEL)}
        for alert in reversed(self.issued):
            if alert.kind is Kind.ALERT and alert.alert_id not in closed:
                return alert
        # Alerts a person issued from the TUI are only known from MQTT.
        for track in reversed(list(self.observer.alerts.values())):
            if track.genuine and track.kind == Kind.ALERT.value:
                return decode(track.onair).to_signed_alert()
        return None


def sign_with(identity: Identity, text: str) -> SignedAlert:
    """An urgent alert signed by any key, trusted or not (forgeries use keys nobody trusts)."""
    now = int(time.time())
    fields = AlertFields(
        kind=Kind.ALERT,
        severity=Severity.URGENT,
        key_id=identity.key_id,
        issued_at_s=now,
        seq=1,
        expires_at_s=now + ALERT_LIFETIME_S,
        text=text,
    )
    return compose(fields, identity.sign).to_signed_alert()


# -- interactive background ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackgroundPlan:
    """When things happen, in wall seconds after ready (each repeats with ±30 % jitter)."""

    first_report_s: float = 4.0
    report_every_s: float = 30.0
    first_forgery_s: float = 25.0
    forgery_every_s: float = 50.0
    first_update_s: float = 45.0
    update_every_s: float = 60.0
    enabled: bool = True


class Background:
    """Field reports now and then, an occasional update by a second dispatcher, and a
    forgery now and then (alternating: the outbox and over the air)."""

    def __init__(self, actions: Actions, plan: BackgroundPlan | None = None) -> None:
        self.actions = actions
        self.plan = plan or BackgroundPlan()
        self._updated: set[bytes] = set()

    async def run(self) -> None:
        if not self.plan.enabled:
            return
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._every(self.plan.first_report_s, self.plan.report_every_s, self._report))
            tg.create_task(self._every(self.plan.first_forgery_s, self.plan.forgery_every_s, self._forge))
            tg.create_task(self._every(self.plan.first_update_s, self.plan.update_every_s, self._update))

    async def _every(self, first_s: float, every_s: float, step: Step) -> None:
        rng = self.actions.rng
        await asyncio.sleep(first_s)
        n = 0
        while True:
            try:
                await step(n)
            except (RuntimeError, OSError) as exc:  # a radio or the broker went away: keep going
                log.warning("demo background step failed: %s", exc)
            n += 1
            await asyncio.sleep(every_s * rng.uniform(0.7, 1.3))

    async def _report(self, n: int) -> None:
        handheld = self.actions.rng.choice(self.actions.stack.handhelds)
        self.actions.field_report(handheld, FIELD_REPORTS[n % len(FIELD_REPORTS)])

    async def _forge(self, n: int) -> None:
        if n % 2 == 0:
            await self.actions.forge_outbox()
        else:
            self.actions.forge_rf(self.actions.rng.choice(self.actions.stack.handhelds))

    async def _update(self, n: int) -> None:
        target = self.actions.latest_active_alert()
        if target is None or target.alert_id in self._updated:
            return
        self._updated.add(target.alert_id)
        await self.actions.issue(
            "dispatcher2",
            UPDATES[n % len(UPDATES)],
            kind=Kind.UPDATE,
            severity=Severity.WARNING,
            ref=target.alert_id,
        )


# -- headless scripted dispatcher -------------------------------------------------------------


CONFIRM_AFTER_S = 0.8  # a dispatcher reads the report before confirming it


async def scripted_dispatcher(actions: Actions, duration_s: float) -> None:
    """Reports arrive from handhelds; the dispatcher confirms each into an alert; a second
    dispatcher updates the first alert; the dispatcher sounds the all-clear for it; forgeries
    are injected along the way. Times are fractions of `duration_s` so a 20 s run and a
    5-minute run tell the same story; everything is issued by 70 % of the run so it has
    time to reach the handhelds."""
    stack, observer = actions.stack, actions.observer
    handhelds = stack.handhelds
    confirmed: list[SignedAlert] = []
    confirm_tasks: set[asyncio.Task[None]] = set()

    async def confirm(report: ReportSeen) -> None:
        if report.signer is None or stack.since_ready() > 0.75 * duration_s:
            return
        await asyncio.sleep(CONFIRM_AFTER_S)
        severity = Severity.URGENT if not confirmed else Severity.WARNING
        confirmed.append(await actions.issue("dispatcher", report.text, severity=severity))

    def on_report(report: ReportSeen) -> None:
        task = asyncio.create_task(confirm(report))
        confirm_tasks.add(task)
        task.add_done_callback(confirm_tasks.discard)

    observer.report_hooks.append(on_report)
    rng = actions.rng

    async def report(i: int) -> None:
        actions.field_report(handhelds[(i * 3) % len(handhelds)], FIELD_REPORTS[i % len(FIELD_REPORTS)])

    async def forge_outbox(_: int) -> None:
        await actions.forge_outbox()

    async def forge_rf(_: int) -> None:
        actions.forge_rf(handhelds[-1])

    async def update(_: int) -> None:
        if confirmed:
            await actions.issue(
                "dispatcher2",
                rng.choice(UPDATES),
                kind=Kind.UPDATE,
                severity=Severity.WARNING,
                ref=confirmed[0].alert_id,
            )

    async def allclear(_: int) -> None:
        if confirmed:
            await actions.issue(
                "dispatcher",
                "All clear at 5th & Main: police gone, thank you all",
                kind=Kind.ALLCLEAR,
                severity=Severity.INFO,
                ref=confirmed[0].alert_id,
            )

    plan: list[tuple[float, Step, int]] = [
        (0.02, report, 0),
        (0.15, forge_outbox, 0),
        (0.22, report, 1),
        (0.32, forge_rf, 0),
        (0.42, update, 0),
        (0.50, report, 2),
        (0.58, forge_outbox, 1),
        (0.70, allclear, 0),
    ]
    for fraction, step, arg in plan:
        delay = fraction * duration_s - stack.since_ready()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            await step(arg)
        except (RuntimeError, OSError) as exc:
            log.warning("scripted step failed: %s", exc)
    if confirm_tasks:
        await asyncio.wait(confirm_tasks, timeout=5)
