"""A forged-frame flood on one MQTT topic, as a separate process (the attacker's machine).

    python -m bench.flood_publisher PORT TOPIC RATE_PER_S SECONDS FRAMES_FILE

Publishes the lines of FRAMES_FILE (one MQTT payload per line, cycled) at QoS 0, paced to
RATE_PER_S, for SECONDS; prints the number of messages published and the seconds taken.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def main() -> int:
    port, topic, rate, seconds, frames_file = (
        int(sys.argv[1]),
        sys.argv[2],
        float(sys.argv[3]),
        float(sys.argv[4]),
        Path(sys.argv[5]),
    )
    payloads = [line.encode() for line in frames_file.read_text().splitlines() if line]
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
                client.publish(topic, payloads[sent % len(payloads)], qos=0)
                sent += 1
        time.sleep(0.002)
    elapsed = time.monotonic() - t0
    client.loop_stop()
    client.disconnect()
    print(f"{sent} {elapsed:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
