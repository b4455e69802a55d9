"""Shared pieces of the benchmarks: figures, percentiles, the machine, and process probes.

A figure is the dict every benchmark returns (the shape `bench_protocol.run()` set):
``{"name", "value", "unit", "goal", "passed"}`` -- `goal` and `passed` are None for
figures that are context (baselines, rates achieved) rather than promises.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

Figure = dict[str, Any]

REPO = Path(__file__).resolve().parents[1]
# The benchmarks reuse the end-to-end test helpers (tests/daemon/conftest.py); they live in
# the repository, not in the installed package.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def figure(name: str, value: float, unit: str, goal: str | None = None, passed: bool | None = None) -> Figure:
    return {"name": name, "value": float(value), "unit": unit, "goal": goal, "passed": passed}


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def machine() -> dict[str, str]:
    """What the figures were measured on (CPU model, cores, RAM, Python, date)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count() or "?"),
        "ram": ram,
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --- probes of a running process (/proc) ----------------------------------------------------------


def rss_mb(pid: int) -> float:
    """Resident set size (VmRSS) of `pid` in MB; NaN if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return math.nan


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` (from /proc/PID/stat), in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def dir_size_bytes(path: Path) -> int:
    total = 0
    for p in path.glob("*"):
        if p.is_file():
            total += p.stat().st_size
    return total


def print_figures(title: str, figures: Sequence[Figure]) -> None:
    print(f"== {title}")
    for f in figures:
        verdict = "" if f["passed"] is None else ("PASS" if f["passed"] else "FAIL")
        goal = f"  (goal {f['goal']})" if f["goal"] else ""
        print(f"   {verdict:4} {f['name']:<52} {format_value(f['value'])} {f['unit']}{goal}", flush=True)


def format_value(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == int(value) and abs(value) < 1e12:
        return f"{int(value):,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"
