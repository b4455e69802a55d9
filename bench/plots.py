"""The curves docs/performance.md shows above its tables, drawn from the stored results.

Drawn with matplotlib (the optional `plots` extra: `pip install -e '.[plots]'`) as SVG into
docs/plots/. Without matplotlib, `relayd-bench` still runs and keeps the SVGs already there.
The SVGs are deterministic (no dates, fixed ids), so a rerun with the same figures changes
nothing in git. Each plot is drawn only when the figures it needs are in the results.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.common import REPO

PLOTS_DIR = REPO / "docs" / "plots"
# (benchmark, file name, caption) in the order they appear.
Plot = tuple[str, str, str]


def _values(results: dict[str, Any], bench: str) -> dict[str, float]:
    """Figure name -> value; a unit "of N" (a count out of a total) also gives "NAME#of" -> N."""
    r = results.get(bench) or {}
    out: dict[str, float] = {}
    for f in r.get("figures", []):
        if not isinstance(f.get("value"), int | float):
            continue
        out[f["name"]] = float(f["value"])
        total = re.fullmatch(r"of (\d+(?:\.\d+)?)", str(f.get("unit", "")))
        if total:
            out[f"{f['name']}#of"] = float(total.group(1))
    return out


def _axes(plt: Any, title: str, ylabel: str) -> tuple[Any, Any]:
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    ax.set_title(title, fontsize=11)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def _suppression(plt: Any, v: dict[str, float]) -> Any | None:
    sizes = [n for n in (3, 5, 10) if f"suppression.relays{n}_tx_per_alert" in v]
    if len(sizes) < 2:
        return None
    fig, ax = _axes(plt, "Transmissions per alert as relays in range grow", "frames on air per alert")
    ax.plot(
        sizes, [v[f"suppression.relays{n}_tx_per_alert"] for n in sizes], "o-", label="relayd (suppression)"
    )
    naive = [v.get(f"suppression.relays{n}_naive_tx_per_alert") for n in sizes]
    if all(x is not None for x in naive):
        ax.plot(sizes, naive, "s--", label="naive: every relay transmits")
    ax.set_xlabel("relays hearing the same alert")
    ax.set_xticks(sizes)
    ax.set_ylim(bottom=0)
    ax.legend(frameon=False)
    return fig


def _latency(plt: Any, v: dict[str, float]) -> Any | None:
    variants = [("", "SQLite on disk"), ("_tmpfs", "SQLite on tmpfs"), ("_naive", "naive (no store)")]
    paths = [("mqtt_to_radio", "MQTT → radio"), ("radio_to_mqtt", "radio → MQTT")]
    if not all(f"latency.{p}{s}_{q}_ms" in v for p, _ in paths for s, _ in variants for q in ("p50", "p99")):
        return None
    fig, ax = _axes(plt, "Relay latency: median and 99th percentile", "milliseconds")
    width = 0.13
    for i, (suffix, label) in enumerate(variants):
        for j, q in enumerate(("p50", "p99")):
            xs = [k + (i * 2 + j - 2.5) * width for k in range(len(paths))]
            ys = [v[f"latency.{p}{suffix}_{q}_ms"] for p, _ in paths]
            ax.bar(xs, ys, width, label=f"{label} {q}", color=f"C{i}", alpha=0.55 if q == "p50" else 1.0)
    ax.set_xticks(range(len(paths)), [name for _, name in paths])
    top = max(v[f"latency.{p}{s}_p99_ms"] for p, _ in paths for s, _ in variants)
    ax.set_ylim(0, top * 1.4)  # room for the legend above the bars
    ax.legend(frameon=False, fontsize=8, ncol=3, loc="upper center")
    return fig


def _sim(plt: Any, v: dict[str, float]) -> Any | None:
    modes = [("none", "no rebroadcast"), ("naive", "naive flooding"), ("managed", "managed flooding")]
    if not all(f"sim.{m}_tx_per_injected" in v and f"sim.{m}_reach_per_injected" in v for m, _ in modes):
        return None
    fig, ax = _axes(plt, "Simulated mesh: cost and reach of one message", "per message injected")
    xs = range(len(modes))
    ax.bar(
        [x - 0.2 for x in xs], [v[f"sim.{m}_tx_per_injected"] for m, _ in modes], 0.4, label="frames on air"
    )
    ax.bar(
        [x + 0.2 for x in xs],
        [v[f"sim.{m}_reach_per_injected"] for m, _ in modes],
        0.4,
        label="radios reached",
    )
    ax.set_xticks(list(xs), [name for _, name in modes])
    ax.legend(frameon=False)
    return fig


def _chaos(plt: Any, v: dict[str, float]) -> Any | None:
    needed = ("chaos.alerts", "chaos.missing_deliveries", "chaos.duplicate_displays")
    if not all(k in v for k in needed):
        return None
    results = _handhelds_per_alert(v)
    if results is None:
        return None
    expected = v["chaos.alerts"] * results
    missing = v["chaos.missing_deliveries"]
    lost_early = min(v.get("chaos.lost_before_relays", 0.0) * results, missing)
    fig, ax = _axes(plt, "Delivery under chaos (relay kills, unplugs, broker and disk faults)", "displays")
    labels = ["delivered", "missing", "duplicates"]
    ax.bar(labels, [expected - missing, 0, v["chaos.duplicate_displays"]], color=["C2", "C3", "C1"])
    ax.bar(["missing"], [missing - lost_early], color="C3", label="reached the relays, not displayed")
    ax.bar(
        ["missing"], [lost_early], bottom=[missing - lost_early], color="C7",
        label="lost before the relays' broker (bridge)",
    )  # fmt: skip
    ax.legend(frameon=False)
    return fig


def _handhelds_per_alert(v: dict[str, float]) -> float | None:
    """Deliveries expected per alert: the chaos run reports missing deliveries 'of' a total."""
    total = v.get("chaos.missing_deliveries#of")
    if total is not None and v["chaos.alerts"]:
        return total / v["chaos.alerts"]
    return None


_DRAWERS: tuple[tuple[str, str, str, Callable[[Any, dict[str, float]], Any | None]], ...] = (
    (
        "suppression",
        "suppression-tx-per-alert.svg",
        "Transmissions per alert against relays in range",
        _suppression,
    ),
    (
        "latency",
        "latency-percentiles.svg",
        "Latency percentiles on disk, on tmpfs and for the naive relay",
        _latency,
    ),
    ("sim", "sim-flooding.svg", "Frames on air and radios reached per message, by flooding mode", _sim),
    ("chaos", "chaos-delivery.svg", "Deliveries, losses and duplicates under chaos", _chaos),
)


def draw(results: dict[str, Any], outdir: Path = PLOTS_DIR) -> list[Plot] | None:
    """Draw every plot whose figures are present; None when matplotlib is not installed."""
    try:
        import matplotlib as mpl  # noqa: PLC0415 - optional extra

        mpl.use("svg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except ImportError:
        return None
    mpl.rcParams.update({"svg.hashsalt": "relayd-bench", "svg.fonttype": "none", "font.size": 9})
    outdir.mkdir(parents=True, exist_ok=True)
    drawn: list[Plot] = []
    for bench, name, caption, drawer in _DRAWERS:
        fig = drawer(plt, _values(results, bench))
        if fig is None:
            continue
        fig.tight_layout()
        fig.savefig(outdir / name, format="svg", metadata={"Date": None, "Creator": None})
        plt.close(fig)
        drawn.append((bench, name, caption))
    return drawn


def existing(outdir: Path = PLOTS_DIR) -> list[Plot]:
    """The plots already on disk (kept when matplotlib is missing)."""
    return [(b, n, c) for b, n, c, _ in _DRAWERS if (outdir / n).is_file()]
