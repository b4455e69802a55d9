"""relayd-tui: the dispatcher's Textual console. It talks to relays only through MQTT."""
