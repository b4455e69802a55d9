"""Run the real `relayd` command in a subprocess, as an operator would.

Helpers live here (not in conftest.py) so test modules can import them unambiguously.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

Relayd = Callable[..., subprocess.CompletedProcess[str]]


def make_runner(cwd: Path) -> Relayd:
    """`relayd(*args, stdin=None)` runs `python -m relayd ARGS` in tmp_path and returns the result."""

    def run(*args: object, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}
        return subprocess.run(
            [sys.executable, "-m", "relayd", *(str(a) for a in args)],
            input=stdin,
            capture_output=True,
            text=True,
            encoding="utf-8",
            cwd=cwd,
            env=env,
            timeout=60,
            check=False,
        )

    return run


def assert_clean_error(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """A failed command: non-zero exit, one `relayd: error:` line naming the problem, no traceback."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("relayd: error: "), result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)
