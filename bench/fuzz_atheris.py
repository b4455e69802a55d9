"""Coverage-guided fuzzing with atheris (libFuzzer) of one target from tests/faults/fuzz_targets.py.

    python -m bench.fuzz_atheris TARGET RUNS CORPUS_DIR

Runs exactly RUNS inputs (seeded with the target's genuine inputs) and exits 0; an input
that raises anything but the parser's own error, or a forgery that is accepted, is a crash:
libFuzzer writes it to crash-* and exits non-zero. `relayd-bench fuzz` runs one per target.
atheris is not a dependency of relayd: `pip install atheris`.
"""

from __future__ import annotations

import sys
from pathlib import Path

import atheris

import bench.common  # noqa: F401 - puts the repository on sys.path for tests.faults

with atheris.instrument_imports(include=["relayd", "tests.faults.fuzz_targets"]):
    from tests.faults.fuzz_targets import TARGETS, seeds


def main() -> None:
    target, runs = sys.argv[1], int(sys.argv[2])
    corpus = Path(sys.argv[3])
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds(target)):
        (corpus / f"seed-{i}").write_bytes(seed)
    check = TARGETS[target]
    atheris.Setup(
        [sys.argv[0], f"-runs={runs}", "-max_len=1024", "-print_final_stats=1", str(corpus)],
        check,
    )
    atheris.Fuzz()


if __name__ == "__main__":
    main()
