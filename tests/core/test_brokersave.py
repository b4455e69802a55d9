"""What can be told about a broker's saving from its config, its log and its retained messages."""

from __future__ import annotations

from pathlib import Path

from relayd.core.brokersave import RetainedWatch, assess_settings, parse_mosquitto_config, persistence_errors


def test_the_shipped_local_config_saves_after_every_change() -> None:
    text = (Path(__file__).resolve().parents[2] / "config" / "mosquitto" / "local.conf").read_text()
    settings = parse_mosquitto_config(text.splitlines())
    assert settings.persistence
    assert settings.ports == (1883,)
    verdict = assess_settings(settings)
    assert verdict.ok, verdict.detail
    assert verdict.detail == "persistence on, saved after every change"


def test_settings_that_lose_acknowledged_messages_fail() -> None:
    off = parse_mosquitto_config(["# persistence true", "listener 1884 127.0.0.1"])
    assert not off.persistence
    assert off.ports == (1884,)
    assert not assess_settings(off).ok
    periodic = parse_mosquitto_config(["persistence true", "autosave_interval 300"])
    verdict = assess_settings(periodic)
    assert not verdict.ok
    assert "every 300 s" in verdict.detail
    batched = parse_mosquitto_config(["persistence true", "autosave_on_changes true", "autosave_interval 10"])
    verdict = assess_settings(batched)
    assert verdict.ok
    assert "up to 9" in verdict.detail
    # The last value wins, as in Mosquitto; junk does not crash the parser.
    flipped = parse_mosquitto_config(["persistence true", "persistence false", "autosave_interval x"])
    assert not flipped.persistence
    assert flipped.autosave_interval == 1800


def test_save_errors_are_found_in_the_log_and_bridge_errors_are_not() -> None:
    log = "\n".join(
        [
            "1700000000: Error: Connection refused",  # a bridge whose remote is down: normal
            "1700000001: Error saving in-memory database, unable to open /var/lib/mq/x.new for writing.",
            "1700000002: Error: No space left on device.",
        ]
    )
    assert persistence_errors(log) == [
        "1700000001: Error saving in-memory database, unable to open /var/lib/mq/x.new for writing.",
        "1700000002: Error: No space left on device.",
    ]
    assert persistence_errors("1700000000: Error: Connection refused") == []


def test_a_missing_retained_status_is_reported_once_per_connection_after_the_grace() -> None:
    watch = RetainedWatch(grace_s=5.0)
    assert not watch.due(100.0)  # nothing expected yet
    watch.expect(100.0)
    assert not watch.due(104.0)
    assert watch.due(105.5)
    assert not watch.due(110.0)  # said once
    watch.expect(200.0)
    watch.seen()
    assert not watch.due(210.0)
