"""No module in relayd/, tui/ or bench/ grows past 600 lines: past that, a module holds more than
one boundary of the design (one module per boundary) and is split along its seams."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("relayd", "tui", "bench")
MAX_LINES = 600


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
    offenders = oversized(line_counts(REPO, PACKAGES))
    listed = ", ".join(f"{name} ({n})" for name, n in sorted(offenders.items()))
    assert not offenders, f"modules over {MAX_LINES} lines (split them along their seams): {listed}"


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
