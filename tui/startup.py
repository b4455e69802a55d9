"""Load what the console needs from disk before the UI starts; fail with a clear message."""

from __future__ import annotations

from dataclasses import dataclass

from relayd.core.trust import SignedBundle
from relayd.errors import KeyFileError, TrustFileError
from relayd.trustfile import load_bundle
from tui.config import TuiConfig
from tui.drafts import Signer, load_signer


class StartupError(Exception):
    """Shown to the operator as `relayd-tui: error: ...` with exit code 2; no traceback."""


@dataclass(frozen=True, slots=True)
class Loaded:
    signer: Signer | None
    bundle: SignedBundle | None


def load(config: TuiConfig) -> Loaded:
    signer = None
    bundle = None
    if config.key_path is not None:
        try:
            signer = load_signer(config.key_path)
        except KeyFileError as exc:
            raise StartupError(str(exc)) from exc
    if config.trust_path is not None:
        try:
            bundle = load_bundle(config.trust_path)
        except TrustFileError as exc:
            raise StartupError(str(exc)) from exc
    return Loaded(signer, bundle)
