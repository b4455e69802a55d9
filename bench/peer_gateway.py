"""meshtastic-gateway's MQTT bridge on a radio's TCP API, for bench.bench_gateway (a subprocess).

    python -m bench.peer_gateway RADIO_PORT BROKER_PORT [--keep-listener]

meshtastic-gateway 0.3.0 (PyPI, the `peers` extra) wires its `MqttBridge` to the radio in
`Gateway.run`, which opens a serial port and serves an HTTP API on 0.0.0.0; neither is allowed
in relayd's benchmarks (loopback only, no serial device). This is `Gateway.run` without those
two: the official client's TCPInterface on 127.0.0.1 instead of its SerialInterface, and the
package's own `MqttBridge` for both directions, subscribed the way the package subscribes (the
topics of the radio's downlink-enabled channels), on the broker at 127.0.0.1:BROKER_PORT.
Prints "ready" once the radio's handshake is done and the broker has acknowledged the
subscriptions; stops on SIGTERM or when stdin closes.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from typing import Any


def main(argv: list[str]) -> int:
    # Imported here: the `peers` extra is optional and only this subprocess needs it.
    import meshtastic.tcp_interface  # noqa: PLC0415
    import paho.mqtt.client as mqtt_client  # noqa: PLC0415
    from meshtastic_gateway.mqtt_bridge import MqttBridge  # noqa: PLC0415
    from paho.mqtt.enums import CallbackAPIVersion  # noqa: PLC0415
    from pubsub import pub  # noqa: PLC0415

    # As Gateway.run's module does: INFO to stderr (the benchmark keeps it as gateway.log).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    radio_port, broker_port = int(argv[0]), int(argv[1])
    keep_listener = "--keep-listener" in argv[2:]
    iface = meshtastic.tcp_interface.TCPInterface(hostname="127.0.0.1", portNumber=radio_port)
    node_hex = f"!{iface.myInfo.my_node_num:08x}"
    root = iface.localNode.moduleConfig.mqtt.root or "msh"
    paho = mqtt_client.Client(
        callback_api_version=CallbackAPIVersion.VERSION2, client_id=f"meshtastic-gw-{node_hex}"
    )
    bridge = MqttBridge(paho, iface, node_hex)
    topics = bridge.subscribe_topics(iface.localNode.channels, root)
    subscribed = threading.Event()
    pending: set[int] = set()

    def on_connect(client: Any, _userdata: Any, _flags: Any, _reason: Any, _props: Any) -> None:
        for topic in topics:
            _result, mid = client.subscribe(topic)
            pending.add(mid)

    def on_subscribe(_client: Any, _userdata: Any, mid: int, _codes: Any, _props: Any) -> None:
        pending.discard(mid)
        if not pending:
            subscribed.set()

    paho.on_connect = on_connect
    paho.on_subscribe = on_subscribe
    paho.on_message = bridge.on_message
    # Gateway.run subscribes a lambda, which pypubsub holds by weak reference only: it is collected
    # at once and the device->broker direction never runs. `--keep-listener` keeps a reference
    # (the one-line fix), to measure what the bridge would do.
    uplink = lambda proxymessage, interface: bridge.publish_proxy(proxymessage)  # noqa: E731
    pub.subscribe(uplink, "meshtastic.mqttclientproxymessage")
    if not keep_listener:
        del uplink
    paho.connect("127.0.0.1", broker_port)
    paho.loop_start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda _sig, _frame: stop.set())

    def until_stdin_closes() -> None:
        sys.stdin.read()
        stop.set()

    threading.Thread(target=until_stdin_closes, daemon=True).start()
    if not subscribed.wait(15):
        print("broker did not acknowledge the subscriptions", flush=True)
        return 1
    print("ready", " ".join(topics), flush=True)
    stop.wait()
    paho.loop_stop()
    paho.disconnect()
    iface.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
