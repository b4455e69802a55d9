"""How to read each benchmark's table: method and caveats (rendered under the table).

Prose only -- no figures: every number in docs/performance.md comes from a measurement.
"""

from __future__ import annotations

NOTES: dict[str, str] = {
    "latency": (
        "Both timestamps come from one clock: the relay runs in the benchmark's event loop, the "
        "MQTT publication is stamped just before `publish`, the radio write when the simulated "
        "firmware accepts the ToRadio packet, the RF arrival when the medium delivers the frame. "
        "The broker runs with `set_tcp_nodelay true`, as the shipped `config/mosquitto/local.conf`. "
        "Each alert costs one fsync, its acceptance (`synchronous=FULL`), committed on the "
        "storage's writer thread: the radio write does not wait for it (a first hand-over's "
        "packet id is derived from the alert, so nothing is written ahead), the broker's "
        "acknowledgement and the publication to `alerts` do. The `_tmpfs` rows are the same "
        "relay with its state on tmpfs (fsync is free there): the software's own share. The "
        "naive forwarder's own p99 shows how much of the tail is this shared machine's "
        "scheduling. The relay's 90 s wait for an on-air confirmation is stretched to 1 s of "
        "wall time (at x1000 it would be shorter than a scheduling pause; `stalls` counts "
        "in-doubt resends). CPU per alert is the whole process (relay, writer thread, simulated "
        "radios, the bench's clients), for the relay and for the naive forwarder alike. "
        "This benchmark found the relay's MQTT socket running with Nagle's algorithm on (40 ms "
        "stalls behind delayed ACKs, and a publisher that fell seconds behind a steady stream); "
        "fixed in `relayd/daemon/mqtt.py`, regression test `tests/faults/test_mqtt_nodelay.py`."
    ),
    "flood": (
        "The flood shares one ordered MQTT stream (the relay's subscription to the outbox) with "
        "the genuine alerts, so a genuine alert waits behind every forged frame published before "
        "it (head-of-line blocking): its latency is bounded by how fast the relay drops forged "
        "frames (`forged_dropped_per_s` is the relay's actual drop rate, `relay_cpu` what it "
        "costs). Run on a 2-core machine that also hosts the broker, the simulator and the "
        "flooding process. In production only authenticated dispatchers may publish on the "
        "outbox (config/mosquitto/acl.example): this attack needs stolen broker credentials. "
        "RF junk is counted `malformed`. The `distinct` rows: the same two kinds of forgery, "
        "each sent once, so the verifier decodes and (for tampered frames of a known key) checks "
        "the signature of every one, where the repeated ones are answered from its caches; the "
        "drop rate is what the relay counted over what was published (QoS 0: what the relay "
        "could not take in time the broker sheds, and the genuine alerts queue behind it)."
    ),
    "soak": (
        "Traffic is compressed in time (time scale 288: 24 sim hours in 5 minutes), but the "
        "relay's dedup horizon (12 h), dedup generations (6 h), alert expiry and history "
        "retention are wall-clock: every dedup id of the whole run is still held at the end, which "
        "is harder on memory and on the `seen` table than a real day, where they roll over. "
        "History retention is set to 60 s (wall) so the history table must stay bounded; the "
        "state directory size (SQLite + WAL) is reported beside it."
    ),
    "suppression": (
        "Every relay hears every other and every handheld hears every relay: the worst case for "
        "redundant transmissions. `displays_per_alert` is what a responder sees: how many times "
        "each handheld showed each alert (1.0 is the promise). The baseline is the relays with "
        "suppression off; they still drop a frame still waiting in their own queue when the same "
        "alert is heard on RF first, so with 5 and 10 relays it sends fewer than N frames: a "
        "forwarder with no dedup at all would send N."
    ),
    "backends": (
        "The same scenario on both backends, one run: relayd's own firmware model at time scale 20 "
        "and real Meshtastic firmware (one meshtasticd SimRadio node per radio, relayd's medium "
        "between them, wall time). `on_air_per_alert` is counted from the frames the firmware "
        "itself handed to the medium, so it checks the relays' `tx_per_alert` claim. A difference "
        "between the two backends is the model being wrong about something that matters."
    ),
    "gateway": (
        "Latency is one message at a time, from publish (or the handheld's send) to every handheld "
        "showing it (or the message on the broker). The peers do different work: relayd verifies "
        "each alert's signature and signs each report; meshtastic-gateway forwards the firmware's "
        "envelopes unverified. It runs as its `MqttBridge` on the official client's TCPInterface "
        "(bench/peer_gateway.py), because its `Gateway.run` opens a serial port and an HTTP API on "
        "0.0.0.0. CPU is the peer process's own, idle time included, per 1,000 messages handled. "
        "As published, its device-to-broker direction never runs: `Gateway.run` subscribes a lambda "
        "to the client's mqttclientproxymessage topic, and pypubsub holds listeners by weak reference, "
        "so it is collected at once (`meshtastic_gateway_lost`: the 2 uplinks tried). "
        "`meshtastic_gateway_fixed` keeps a reference to that listener, the one-line fix, and "
        "measures what the bridge would do."
    ),
    "forgery": (
        "Each mutation's expected reason is derived from what it broke: `malformed` if the frame "
        "no longer decodes, else by its key id (`unknown_key`, `revoked`, or `bad_signature` "
        "for a key in the bundle). The full run mutates every byte of 1,000 frames with its 8 "
        "single-bit flips; the CI test (20 frames) also tries 9 chosen byte values per position. "
        "Replays, revocation, escalation and clock cases drive a real `Relay` on a real state "
        "directory through its MQTT handlers (restart = a new `Relay` on the same directory)."
    ),
    "fuzz": (
        "atheris is optional (`pip install atheris`); without it the hypothesis part runs and "
        "the input goal fails. A crash is any exception other than the parser's documented "
        "error; an accepted forgery is an assertion failure in the target "
        "(tests/faults/fuzz_targets.py)."
    ),
    "chaos": (
        "Misses are split by where they happened: `missed_in_brokers` are deliveries of alerts "
        "that never reached the neighborhood broker (the bridge, or a broker that lost what it "
        "had acknowledged); `missed_not_on_air` reached the relays and no relay put them on air "
        "(the relays' promise); `missed_on_air` went on air and a handheld missed the frame, "
        "almost all in the burst after the backhaul cut heals, when the relays receive the "
        "queued backlog at once (`half_duplex_misses`: receptions lost because the receiver was "
        "itself transmitting; `queue_full_drops`: frames, mostly rebroadcasts, dropped on a full "
        "transmit queue). The relays pace their frames to the air (relayd/core/earshot.py: "
        "after each frame, one frame's airtime per transmitter their radio hears, so that two "
        "floods are not on the air at once); the `interval_paced` rows are the same faults in "
        "the same run with the relays pacing by the firmware's text interval only "
        "(`pace_to_air = false`) and no late repeats, as before. What pacing does not prevent, "
        "a late repeat can recover (relayd/core/repeat.py): an urgent alert a relay's radio sent "
        "in a burst goes once more under the same packet id, once 20 other ids have gone "
        "through that radio (the firmware ignores a client's id among its last 20); handhelds "
        "that have it drop it, neighbours relay it once more. The stream is urgent alerts; the "
        '`no_repeat` rows are the same faults in the same run with `late_repeat = "off"`, and '
        "`late_repeats` counts the repeats handed to the radios; the difference between the two "
        "is what the repeats recovered, against what their airtime cost. The run of 2026-12-01 "
        "22:47 had the simulator relay an originator's copy of a packet once more, as the "
        "firmware does (now the scenario option `relay_origin_copies`, off by default, which "
        "makes the air quieter than that run's). The "
        "`baseline` rows are the same stream at CI size with no fault, in the same run. The "
        "`split_brokers` rows are context: relays that hear each other attached to different "
        "brokers, which docs/scaling.md does not support -- the relay on the neighborhood broker "
        "never receives the others' status (bridge.conf sends status upward only), ranks itself "
        "first for every alert and transmits in parallel with them."
    ),
    "rabbitmq": (
        "Debian 12's rabbitmq-server 3.10.8 with its MQTT plugin, three nodes clustered on "
        "loopback (relayd/testing/rabbitmq.py); each relay attached to a different node. The "
        "`*_retained_*` rows probe the broker features docs/scaling.md describes (1 = delivered); "
        "the `mosquitto_*` rows are the same probes on one Mosquitto, the baseline. relay-center's "
        "node is stopped for 10 alerts and started again; its persistent session lives on that "
        "node, so what is published meanwhile is not queued for it, and the other relays cover "
        "its area. `lost_retained_warnings` counts the relays' warning that the broker did not "
        "return their retained status (RabbitMQ does not deliver retained messages through the "
        "status wildcard)."
    ),
    "protocol": "From bench/bench_protocol.py (`python -m bench.bench_protocol`).",
    "sim": "From bench/bench_sim.py (`python -m bench.bench_sim`).",
    "tui": "From bench/bench_tui.py (`python -m bench.bench_tui`).",
    "traffic": (
        "Counted by each relay's MQTT link: every message the broker delivered to a relay "
        "during the alerts after the warm-up, divided by those alerts. `events` are the relays' "
        "per-alert events (heard, queued, taken, transmitted...), the part that subscriptions "
        "scoped to RF neighbours remove; the rest is mostly the relays' retained statuses, which "
        "every relay still receives from every relay (at most one per relay per second, so per "
        "alert they depend on how fast the alerts come) and the outbox. Clusters of 3 that hear "
        "only each other: each relay has 2 RF neighbours, whatever N."
    ),
}
