"""Benchmark: one million fuzz inputs into every parser that reads attacker-controlled bytes.

    python -m bench.bench_fuzz [--total 1000000] [--hypothesis-examples 5000]

Targets (tests/faults/fuzz_targets.py): the frame decoder and Verifier.verify, the trust
bundle loader, the MQTT JSON ingest (alert, status and event messages) and the device-API
framing with the ToRadio/FromRadio parsers. Two engines:

* hypothesis: `pytest -m fuzz tests/faults/test_fuzz.py` with RELAYD_FUZZ_EXAMPLES per
  target -- structured inputs (random bytes and text, genuine inputs with edits);
* atheris (libFuzzer, coverage-guided) for the rest of the budget, one process per target,
  two at a time, seeded with the genuine inputs.

A crash is any exception other than the parser's own error type; a forgery accepted is an
assertion failure in the target. Goal: >= 1,000,000 inputs, 0 crashes, 0 accepted forgeries.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import REPO, Figure, figure, print_figures

TARGETS = ("frame", "bundle", "message", "device", "relay_mqtt", "relay_radio", "console")
GOAL_INPUTS = 1_000_000


def _hypothesis(examples: int, count_file: Path) -> tuple[int, int, int, str]:
    """(inputs, failed tests, forgeries, output tail)."""
    env = {**os.environ, "RELAYD_FUZZ_EXAMPLES": str(examples), "RELAYD_FUZZ_COUNT_FILE": str(count_file)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-m",
            "fuzz",
            "tests/faults/test_fuzz.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    inputs = (
        sum(int(line.split()[-1]) for line in count_file.read_text().splitlines())
        if count_file.exists()
        else 0
    )
    failed = int(m.group(1)) if (m := re.search(r"(\d+) failed", out)) else (0 if proc.returncode == 0 else 1)
    return inputs, failed, out.count("accepted:"), out[-3000:]


def _atheris(target: str, runs: int, workdir: Path) -> tuple[str, int, bool, bool, float]:
    """(target, inputs, crashed, forgery, seconds)."""
    corpus = workdir / f"corpus-{target}"
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.fuzz_atheris", target, str(runs), str(corpus)],
        cwd=workdir,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=False,
    )
    out = proc.stdout + proc.stderr
    m = re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
    inputs = int(m.group(1)) if m else 0
    crashed = proc.returncode != 0
    if crashed:
        print(f"   atheris {target} crashed:\n{out[-3000:]}")
    return target, inputs, crashed, "accepted" in out and crashed, time.monotonic() - started


def atheris_available() -> bool:
    try:
        import atheris  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


def run(total: int = GOAL_INPUTS, hypothesis_examples: int = 5000) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="relayd-bench-fuzz-") as tmp:
        work = Path(tmp)
        started = time.monotonic()
        h_inputs, h_failed, h_forged, tail = _hypothesis(hypothesis_examples, work / "counts")
        h_seconds = time.monotonic() - started
        if h_failed:
            print(tail)
        figures = [
            figure("fuzz.hypothesis_inputs", h_inputs, "inputs"),
            figure("fuzz.hypothesis_inputs_per_s", h_inputs / h_seconds, "inputs/s"),
        ]
        a_inputs = 0
        a_crashes = 0
        a_forged = 0
        if atheris_available():
            per_target = max(0, total - h_inputs) // len(TARGETS) + 1
            with ThreadPoolExecutor(max(1, min(len(TARGETS), os.cpu_count() or 1))) as pool:
                results = list(pool.map(lambda t: _atheris(t, per_target, work), TARGETS))
            for target, n, crashed, accepted, seconds in results:
                a_inputs += n
                a_crashes += crashed
                a_forged += accepted
                figures.append(
                    figure(f"fuzz.atheris_{target}_inputs_per_s", n / max(seconds, 1e-9), "inputs/s")
                )
            figures.append(figure("fuzz.atheris_inputs", a_inputs, "inputs"))
        else:
            print("   atheris is not installed (pip install atheris): hypothesis only")
            figures.append(figure("fuzz.atheris_installed", 0, "", "pip install atheris", False))
    total_inputs = h_inputs + a_inputs
    crashes = h_failed + a_crashes
    forged = h_forged + a_forged
    return [
        *figures,
        figure("fuzz.total_inputs", total_inputs, "inputs", f">= {total:,}", total_inputs >= total),
        figure("fuzz.crashes", crashes, "crashes", "== 0", crashes == 0),
        figure("fuzz.accepted_forgeries", forged, "forgeries", "== 0", forged == 0),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_fuzz")
    ap.add_argument("--total", type=int, default=GOAL_INPUTS)
    ap.add_argument("--hypothesis-examples", type=int, default=5000, help="per target")
    args = ap.parse_args(argv)
    print_figures("fuzzing", run(args.total, args.hypothesis_examples))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
