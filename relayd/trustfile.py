"""Trust bundle files: atomic write, load with a clear error."""

from __future__ import annotations

import os
from pathlib import Path

from relayd.core.trust import SignedBundle, TrustBundleError, parse_signed_bundle
from relayd.errors import TrustFileError


def load_bundle(path: Path, *, pinned_root: bytes | None = None) -> SignedBundle:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise TrustFileError(
            f"trust bundle {path} does not exist; "
            "create one with `relayd trust init` or copy it from your admin"
        ) from None
    except OSError as exc:
        raise TrustFileError(f"cannot read trust bundle {path}: {exc.strerror}") from exc
    try:
        return parse_signed_bundle(data, pinned_root=pinned_root)
    except TrustBundleError as exc:
        raise TrustFileError(f"{path}: {exc}") from exc


def save_bundle(signed: SignedBundle, path: Path) -> None:
    """Write atomically (temp file + fsync + rename) so a power cut never leaves half a bundle."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(signed.to_bytes())
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
