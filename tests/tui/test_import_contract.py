"""relayd (daemon, core, CLI) never imports Textual: only the console does."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import relayd

# No exemption: the demo's console side lives in tui/ (tui/demo.py, tui/widgets/handhelds.py).
ALLOWED_TO_IMPORT_TUI: tuple[str, ...] = ()

SCRIPT = textwrap.dedent(
    f"""
    import importlib, pathlib, sys
    import relayd
    root = pathlib.Path(relayd.__file__).parent
    skip = {ALLOWED_TO_IMPORT_TUI!r}
    imported, broken = [], []
    for path in sorted(root.rglob("*.py")):
        parts = ("relayd", *path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        # __main__ modules run the CLI on import.
        if parts[-1] == "__main__" or (skip and name.startswith(skip)):
            continue
        try:
            importlib.import_module(name)
        except ImportError as exc:  # a module another engineer is still building
            broken.append(f"{{name}}: {{exc}}")
            continue
        imported.append(name)
    assert "relayd.core.verify" in imported, imported
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("textual", "tui"))
    assert not leaked, f"importing relayd pulled in {{leaked[:5]}}"
    print(len(imported))
    for line in broken:
        print("not importable:", line, file=sys.stderr)
    """
)


def test_relayd_modules_do_not_import_textual() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) > 10, out.stderr


def test_console_imports_no_daemon_runtime() -> None:
    script = (
        "import sys, tui.app, tui.__main__\n"
        "bad = [m for m in sys.modules if m.startswith(('relayd.daemon', 'relayd.sim'))]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr


def test_no_relayd_module_imports_textual_even_lazily() -> None:
    """Not at import time, and not inside a function either: Textual is the console's."""
    root = Path(relayd.__file__).parent
    offenders: list[str] = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.relative_to(root)}: {n}" for n in names if n.split(".")[0] == "textual"]
    assert offenders == []
