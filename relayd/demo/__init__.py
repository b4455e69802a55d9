"""`relayd demo`: a simulated three-relay neighborhood, an embedded broker, relay daemons,
scripted activity and (interactively) the dispatcher console, in one process.

This package never imports Textual (tests/tui/test_import_contract.py); the console and the
handhelds panel are wired in `relayd.cli.demo`.

- `broker`    embedded amqtt broker on a free loopback port
- `stack`     keys, broker, simulated radios, in-process relays; startup and clean shutdown
- `observer`  watches MQTT and the handhelds' screens; narrates the timeline
- `script`    what handhelds, dispatchers and an attacker do (background, scripted dispatcher)
- `summary`   the closing summary (pure)
- `headless`  `relayd demo --headless`
- `handhelds` what a handheld shows, as rows for the console's Handhelds panel (pure)
"""
