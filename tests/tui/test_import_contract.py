"""relayd (daemon, core, CLI) never imports Textual: only the console does."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# `relayd demo` launches the console on purpose.
ALLOWED_TO_IMPORT_TUI = ("relayd.cli.demo",)

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
        # __main__ modules run the CLI on import; demo launches the console on purpose.
        if parts[-1] == "__main__" or name.startswith(skip):
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
