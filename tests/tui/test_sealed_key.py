"""The console opens a passphrase-sealed dispatcher key (issue 13, finding 9): from
$RELAYD_KEY_PASSPHRASE here; on a terminal it is asked before the UI starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayd.core.identity import Identity
from relayd.core.model import Role
from relayd.keystore import PASSPHRASE_ENV, write_private_key
from tui.config import MqttConfig, TuiConfig
from tui.startup import StartupError, load


def _config(key: Path) -> TuiConfig:
    return TuiConfig(MqttConfig.from_url("mqtt://127.0.0.1:1883"), key_path=key)


def test_the_console_loads_a_sealed_key_with_its_passphrase(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    identity = Identity.generate("dispatch-a", Role.DISPATCHER)
    key = tmp_path / "dispatch-a.key"
    write_private_key(identity, key, b"console passphrase")
    monkeypatch.setenv(PASSPHRASE_ENV, "console passphrase")
    loaded = load(_config(key))
    assert loaded.signer is not None
    assert loaded.signer.identity.key_id == identity.key_id
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(StartupError, match="wrong passphrase"):
        load(_config(key))
