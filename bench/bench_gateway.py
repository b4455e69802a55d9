"""Benchmark: `relayd run` beside meshtastic-gateway on the same real-firmware radio and broker.

    python -m bench.bench_gateway [--messages 15]

One meshtasticd radio (its firmware's MQTT client proxy on: `mqtt.proxy_to_client_enabled`,
the primary channel's uplink and downlink on) and three handhelds that hear it, on the real-
firmware backend; one real Mosquitto. Each peer in turn is the radio's client, same radio, same
broker, one run:

* relayd: downlink = a signed alert published to the outbox until every handheld shows it;
  uplink = a handheld's `!r` report until its relay-signed report is on the reports topic.
* meshtastic-gateway 0.3.0 (bench.peer_gateway): downlink = a ServiceEnvelope published to
  `msh/2/e/alerts/!gateway` until every handheld shows the text (the firmware takes it from the
  proxy and puts it on air); uplink = a handheld's text until the firmware's envelope of it is
  on `msh/2/e/alerts/...` (the firmware hands it to the gateway, which publishes it).

Messages go one at a time (latency, not throughput), uplinks rotating over the handhelds (the
firmware's 2 s text limit per handheld, and relayd's per-handheld report limit of 5 in a burst).
CPU is the peer process's own user+system time over its whole window, idle included, per 1,000
messages handled (extrapolated from the run). The two do different work: relayd verifies and
signs every message, the gateway forwards bytes; the figures say what each costs on this radio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
from google.protobuf.message import DecodeError
from meshtastic.protobuf import mesh_pb2, mqtt_pb2

from bench.common import REPO, Figure, figure, percentile, print_figures
from relayd.core.airtime import preset_by_name
from relayd.core.codec import decode
from relayd.core.jsonform import encode_alert
from relayd.core.model import Role as KeyRole
from relayd.core.model import Severity
from relayd.meshapi.packets import BROADCAST_NUM, TEXT_MESSAGE_APP, node_id
from relayd.sim.fwbackend import FirmwareNeighborhood
from relayd.sim.scenario import LinkSpec, Role, Scenario, make_node
from relayd.testing.harness import RelayProcess, write_relay_config
from relayd.testing.keys import make_network
from relayd.testing.meshtasticd import MeshtasticdUnavailable, meshtasticd_binary
from relayd.testing.mosquitto import MosquittoBroker
from tests.daemon.conftest import GENEROUS_LIMITS, Site

HANDHELDS = ("hh-1", "hh-2", "hh-3")
RADIO = "radio"
# A handheld's firmware refuses a second text within 2 s, and relayd's ack DM to the previous
# report should be off the air (a radio that transmits does not hear).
UPLINK_SPACING_S = 4.0
WAIT_S = 20.0
# A node on the far side of the broker, as another gateway's mesh would be.
REMOTE_NODE = 0x0DEC0DE1
TICK_S = os.sysconf("SC_CLK_TCK")
URGENT = Severity.URGENT
DOWNLINK_TOPIC = f"msh/2/e/alerts/{node_id(REMOTE_NODE)}"


@dataclass
class Run:
    down_ms: list[float]
    up_ms: list[float]
    lost: int
    cpu_s: float

    @property
    def handled(self) -> int:
        return len(self.down_ms) + len(self.up_ms)


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK_S  # utime, stime


def scenario() -> Scenario:
    nodes = (make_node(RADIO, Role.RELAY), *(make_node(h, Role.HANDHELD) for h in HANDHELDS))
    links = tuple(LinkSpec(RADIO, h, 7.0, -94) for h in HANDHELDS)
    # US: EU_868's duty-cycle limit makes the firmware set lora.ignore_mqtt, which drops downlinks.
    return Scenario(name="peers", nodes=nodes, links=links, preset=preset_by_name("SHORT_FAST"), region="US")


class Listener:
    """Every message on `topic` with its arrival time (perf_counter)."""

    def __init__(self, port: int, topic: str) -> None:
        self.port, self.topic = port, topic
        self.got: list[tuple[float, str, bytes]] = []
        self.ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Listener:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.ready.wait(), 10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port) as client:
            await client.subscribe(self.topic, qos=1)
            self.ready.set()
            async for msg in client.messages:
                payload = msg.payload if isinstance(msg.payload, bytes | bytearray) else b""
                self.got.append((time.perf_counter(), str(msg.topic), bytes(payload)))


async def _until(hood: FirmwareNeighborhood, pred: Callable[[], bool]) -> float | None:
    """Seconds until `pred` holds (or None after WAIT_S)."""
    t0 = time.perf_counter()
    return time.perf_counter() - t0 if await hood.wait_for(pred, WAIT_S) else None


def _everyone_shows(hood: FirmwareNeighborhood, text: str) -> Callable[[], bool]:
    return lambda: all(any(d.text == text for d in hood.displays(h)) for h in HANDHELDS)


async def _relayd(hood: FirmwareNeighborhood, broker: MosquittoBroker, work: Path, n: int) -> Run:
    network = make_network(work / "keys", {"dispatcher": KeyRole.DISPATCHER, RADIO: KeyRole.RELAY})
    # The real-firmware neighborhood stands in for the simulated one: Site uses what both offer.
    site = Site(hood, broker, network, work, root="peer")  # type: ignore[arg-type]
    site.configs[RADIO] = write_relay_config(
        work / "relays",
        RADIO,
        network,
        radio_port=hood.endpoints[RADIO].tcp_port,
        broker_port=broker.port,
        topic_root="peer",
        extra=GENEROUS_LIMITS,
    )
    relay = RelayProcess(site.configs[RADIO], work / "relay.log")
    site.relays[RADIO] = relay
    relay.start()
    try:
        await site.wait_relays_ready(timeout_s=60)
        assert relay.proc is not None
        pid = relay.proc.pid
        cpu0 = _cpu_s(pid)
        down: list[float] = []
        up: list[float] = []
        lost = 0
        async with Listener(broker.port, site.topic("reports")) as reports:
            for i in range(n):
                alert = network.sign(
                    "dispatcher", f"Peer bench {i}: checkpoint at Elm", severity=Severity.URGENT
                )
                t0 = time.perf_counter()
                await site.publish(site.topic("outbox"), encode_alert(alert))
                if await hood.wait_for(_everyone_shows(hood, alert.onair), WAIT_S):
                    down.append((time.perf_counter() - t0) * 1000)
                else:
                    lost += 1
            for i in range(n):
                text = f"bench report {i} from the corner"
                seen = len(reports.got)
                t0 = time.perf_counter()
                hood.handheld_send(HANDHELDS[i % len(HANDHELDS)], f"!r {text}", channel_index=0)

                def arrived(seen: int = seen, text: str = text) -> bool:
                    return any(_report_text(p) == text for _t, _topic, p in reports.got[seen:])

                if await hood.wait_for(arrived, WAIT_S):
                    at = next(t for t, _topic, p in reports.got[seen:] if _report_text(p) == text)
                    up.append((at - t0) * 1000)
                else:
                    lost += 1
                await asyncio.sleep(max(0.0, UPLINK_SPACING_S - (time.perf_counter() - t0)))
        return Run(down, up, lost, _cpu_s(pid) - cpu0)
    finally:
        relay.terminate()


def _report_text(payload: bytes) -> str | None:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return decode(str(json.loads(payload)["onair"])).fields.text
    return None


def _envelope(text: str, packet_id: int) -> bytes:
    p = mesh_pb2.MeshPacket()
    setattr(p, "from", REMOTE_NODE)
    p.to = BROADCAST_NUM
    p.id = packet_id
    p.hop_limit = 3
    p.hop_start = 3
    p.decoded.portnum = TEXT_MESSAGE_APP
    p.decoded.payload = text.encode()
    env = mqtt_pb2.ServiceEnvelope()
    env.packet.CopyFrom(p)
    env.channel_id = "alerts"
    env.gateway_id = node_id(REMOTE_NODE)
    return bytes(env.SerializeToString())


def _envelope_text(payload: bytes) -> str | None:
    with contextlib.suppress(DecodeError, UnicodeError):
        env = mqtt_pb2.ServiceEnvelope.FromString(payload)
        if env.packet.HasField("decoded") and env.packet.decoded.portnum == TEXT_MESSAGE_APP:
            return bytes(env.packet.decoded.payload).decode("utf-8", "replace")
    return None


async def _gateway(
    hood: FirmwareNeighborhood,
    broker: MosquittoBroker,
    work: Path,
    n: int,
    *,
    keep_listener: bool,
    up_tries: int,
) -> Run:
    port = hood.endpoints[RADIO].tcp_port
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    log = (work / "gateway.log").open("wb")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.peer_gateway",
        str(port),
        str(broker.port),
        *(["--keep-listener"] if keep_listener else []),
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 60)
        if not line.startswith(b"ready"):
            raise RuntimeError(f"meshtastic-gateway did not start: {line!r}; see {work / 'gateway.log'}")
        cpu0 = _cpu_s(proc.pid)
        gw = hood.endpoints[RADIO].node_id
        down: list[float] = []
        up: list[float] = []
        lost = 0
        rng = random.Random(work.name)  # fresh ids per window: the radio drops a (from, id) it has seen
        async with (
            Listener(broker.port, "msh/#") as uplinks,
            aiomqtt.Client("127.0.0.1", broker.port) as pub,
        ):
            for i in range(n):
                text = f"Peer bench {work.name} {i}: checkpoint at Elm"
                t0 = time.perf_counter()
                await pub.publish(
                    f"msh/2/e/alerts/{node_id(REMOTE_NODE)}", _envelope(text, rng.getrandbits(31) + 1)
                )
                if await hood.wait_for(_everyone_shows(hood, text), WAIT_S):
                    down.append((time.perf_counter() - t0) * 1000)
                else:
                    lost += 1
            for i in range(up_tries):
                text = f"bench text {work.name} {i} from the corner"
                seen = len(uplinks.got)
                t0 = time.perf_counter()
                hood.handheld_send(HANDHELDS[i % len(HANDHELDS)], text, channel_index=0)

                def arrived(seen: int = seen, text: str = text) -> bool:
                    return any(
                        topic.endswith(gw) and _envelope_text(p) == text
                        for _t, topic, p in uplinks.got[seen:]
                    )

                if await hood.wait_for(arrived, WAIT_S):
                    at = next(
                        t
                        for t, topic, p in uplinks.got[seen:]
                        if topic.endswith(gw) and _envelope_text(p) == text
                    )
                    up.append((at - t0) * 1000)
                else:
                    lost += 1
                await asyncio.sleep(max(0.0, UPLINK_SPACING_S - (time.perf_counter() - t0)))
        return Run(down, up, lost, _cpu_s(proc.pid) - cpu0)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 10)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()


def _figures(peer: str, r: Run) -> list[Figure]:
    tag = f"gateway.{peer}"
    per_1000 = r.cpu_s / r.handled * 1000 if r.handled else float("nan")
    return [
        figure(f"{tag}_downlink_p50_ms", percentile(r.down_ms, 50), "ms"),
        figure(f"{tag}_downlink_p99_ms", percentile(r.down_ms, 99), "ms"),
        figure(f"{tag}_uplink_p50_ms", percentile(r.up_ms, 50), "ms"),
        figure(f"{tag}_uplink_p99_ms", percentile(r.up_ms, 99), "ms"),
        figure(f"{tag}_lost", r.lost, "messages", "== 0", r.lost == 0),
        figure(f"{tag}_cpu_s_per_1000_msgs", per_1000, "CPU s"),
    ]


async def _measure(n: int, keep: Path | None = None) -> list[Figure]:
    try:
        binary = meshtasticd_binary()
    except MeshtasticdUnavailable as exc:
        print(f"not measured: {exc}")
        return []
    if importlib.util.find_spec("meshtastic_gateway") is None:
        print(
            "not measured: meshtastic-gateway is not installed (pip install -e '.[peers]' -c constraints.txt)"
        )
        return []
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="relayd-bench-gateway-") as tmp:
        work = keep or Path(tmp)
        broker = MosquittoBroker(work / "mosquitto", extra_config="set_tcp_nodelay true")
        broker.start()
        try:
            async with FirmwareNeighborhood(
                scenario(), binary=binary, state_root=work / "nodes", mqtt_proxy=frozenset({RADIO})
            ) as hood:
                ours = await _relayd(hood, broker, work / "relayd", n)
                figures += _figures("relayd", ours)
                print_figures("relayd run", figures[-6:])
                # As published, its uplink is dead (see bench.peer_gateway): two tries show it.
                theirs = await _gateway(hood, broker, work / "peer", n, keep_listener=False, up_tries=2)
                figures += _figures("meshtastic_gateway", theirs)
                print_figures("meshtastic-gateway 0.3.0, as published", figures[-6:])
                fixed = await _gateway(hood, broker, work / "peer-fixed", n, keep_listener=True, up_tries=n)
                figures += _figures("meshtastic_gateway_fixed", fixed)
                print_figures("meshtastic-gateway 0.3.0, uplink listener kept alive", figures[-6:])
        finally:
            broker.stop()
    return figures


def run(messages: int = 15, keep: Path | None = None) -> list[Figure]:
    return asyncio.run(_measure(messages, keep))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_gateway")
    ap.add_argument("--messages", type=int, default=15, help="per direction and peer")
    ap.add_argument("--keep", type=Path, help="a folder for the logs and state, kept afterwards")
    args = ap.parse_args(argv)
    print_figures("gateway", run(args.messages, args.keep))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
