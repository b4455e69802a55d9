"""The relay daemon: radio and MQTT adapters around the pure core (`relayd run`)."""
