"""A forged-frame flood on one MQTT topic, as a separate process (the attacker's machine).

    python -m bench.flood_publisher PORT TOPIC RATE_PER_S SECONDS FRAMES_FILE [DISTINCT]

Publishes the lines of FRAMES_FILE (one MQTT payload per line, cycled) at QoS 0, paced to
RATE_PER_S, for SECONDS; prints the number of messages published and the seconds taken.

With DISTINCT, every line holds the marker `MARKER` once (in the alert text) and message i
carries the number i mod DISTINCT in its place: DISTINCT different frames, none seen
before by the relay's caches, made without signing each one (they are forgeries anyway).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

MARKER = "000000"  # in the text of each template frame


def main() -> int:
    port, topic, rate, seconds, frames_file = (
        int(sys.argv[1]),
        sys.argv[2],
        float(sys.argv[3]),
        float(sys.argv[4]),
        Path(sys.argv[5]),
    )
    distinct = int(sys.argv[6]) if len(sys.argv) > 6 else 0
    payloads = [line.encode() for line in frames_file.read_text().splitlines() if line]
    if distinct:
        halves = [p.split(MARKER.encode()) for p in payloads]
        if any(len(h) != 2 for h in halves):
            raise SystemExit("each frame needs the marker exactly once")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{time.time_ns()}")
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    sent = 0
    t0 = time.monotonic()
    batch = max(1, int(rate / 200))  # pace in 5 ms steps
    while (now := time.monotonic()) - t0 < seconds:
        due = int((now - t0) * rate)
        while sent < due:
            for _ in range(min(batch, due - sent)):
                if distinct:
                    n = sent % distinct
                    head, tail = halves[n % len(halves)]
                    payload = b"%s%06d%s" % (head, n, tail)
                else:
                    payload = payloads[sent % len(payloads)]
                client.publish(topic, payload, qos=0)
                sent += 1
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    client.loop_stop()
    client.disconnect()
    print(f"{sent} {elapsed:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
