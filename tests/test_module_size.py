"""No module in relayd/, tui/ or bench/ grows past 600 lines: past that, a module holds more than
one boundary of the design (one module per boundary) and is split along its seams."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("relayd", "tui", "bench")
MAX_LINES = 600

# Modules already over the limit whose split is under way in other branches. Each entry comes
# off this list when its split lands (the test below says when an entry is no longer needed);
# nothing new goes on it.
ALLOWED_OVER_LIMIT = frozenset(
    {
        "relayd/daemon/relay.py",  # into relayd/core/route.py, relayd/core/outbound.py and a shell
    }
)


def line_counts(root: Path, packages: Iterable[str]) -> dict[str, int]:
    """Lines of every .py file under `root`/<package>, keyed by its path relative to `root`."""
    counts: dict[str, int] = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            with path.open("rb") as f:
                counts[path.relative_to(root).as_posix()] = sum(1 for _ in f)
    return counts


def oversized(counts: dict[str, int], limit: int = MAX_LINES) -> dict[str, int]:
    return {name: n for name, n in counts.items() if n > limit}


def test_no_module_exceeds_600_lines() -> None:
    over = oversized(line_counts(REPO, PACKAGES))
    offenders = {name: n for name, n in over.items() if name not in ALLOWED_OVER_LIMIT}
    listed = ", ".join(f"{name} ({n})" for name, n in sorted(offenders.items()))
    assert not offenders, f"modules over {MAX_LINES} lines (split them along their seams): {listed}"


def test_the_allow_list_holds_only_modules_still_over_the_limit() -> None:
    counts = line_counts(REPO, PACKAGES)
    done = sorted(
        f"{name} ({counts[name]} lines)" if name in counts else f"{name} (gone)"
        for name in ALLOWED_OVER_LIMIT
        if counts.get(name, 0) <= MAX_LINES
    )
    assert not done, f"no longer over {MAX_LINES} lines: take them off ALLOWED_OVER_LIMIT: {done}"


def test_the_count_is_of_lines_and_names_every_package(tmp_path: Path) -> None:
    (tmp_path / "relayd" / "core").mkdir(parents=True)
    (tmp_path / "bench").mkdir()
    (tmp_path / "relayd" / "core" / "big.py").write_text("x = 1\n" * (MAX_LINES + 1))
    (tmp_path / "relayd" / "core" / "edge.py").write_text("x = 1\n" * MAX_LINES)
    (tmp_path / "bench" / "no_newline_at_end.py").write_text("x = 1\n" * MAX_LINES + "y = 2")
    counts = line_counts(tmp_path, ("relayd", "tui", "bench"))
    assert counts == {
        "bench/no_newline_at_end.py": MAX_LINES + 1,
        "relayd/core/big.py": MAX_LINES + 1,
        "relayd/core/edge.py": MAX_LINES,
    }
    assert oversized(counts) == {
        "bench/no_newline_at_end.py": MAX_LINES + 1,
        "relayd/core/big.py": MAX_LINES + 1,
    }
