"""relayd-bench's plots: drawn from the stored figures, deterministic, placed above the tables,
and the committed docs/performance.md and docs/plots/ are what relayd-bench writes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bench.__main__ import DOC, load_results, render
from bench.plots import PLOTS_DIR, draw, existing

pytest.importorskip("matplotlib", reason="the plots extra (pip install -e '.[plots]', part of dev)")


def test_every_plot_is_drawn_from_the_stored_figures_and_deterministically(tmp_path: Path) -> None:
    results = load_results()
    first = draw(results, tmp_path / "a")
    second = draw(results, tmp_path / "b")
    assert first is not None
    assert [b for b, _, _ in first] == ["suppression", "latency", "sim", "chaos"]
    assert first == second
    for _, name, _ in first:
        svg = (tmp_path / "a" / name).read_bytes()
        assert svg == (tmp_path / "b" / name).read_bytes()
        root = ET.fromstring(svg)  # noqa: S314 - our own output
        assert root.tag.endswith("svg")
        assert b"<dc:date>" not in svg


def test_a_plot_needs_its_figures(tmp_path: Path) -> None:
    results = {k: v for k, v in load_results().items() if k == "suppression"}
    drawn = draw(results, tmp_path)
    assert drawn is not None
    assert [b for b, _, _ in drawn] == ["suppression"]


def test_plots_sit_above_their_benchmark_table() -> None:
    text = render(load_results(), existing())
    image = text.index(
        "![Transmissions per alert against relays in range](plots/suppression-tx-per-alert.svg)"
    )
    heading = text.index("## Transmissions per alert (`relayd-bench suppression`)")
    table = text.index("| `suppression.relays3_tx_per_alert`")
    assert heading < image < table


def test_the_committed_page_and_plots_are_what_relayd_bench_writes(tmp_path: Path) -> None:
    results = load_results()
    drawn = draw(results, tmp_path)
    assert drawn is not None
    for _, name, _ in drawn:
        assert (tmp_path / name).read_bytes() == (PLOTS_DIR / name).read_bytes(), (
            f"regenerate: relayd-bench plots ({name})"
        )
    assert render(results, drawn) == DOC.read_text(), "regenerate: relayd-bench plots"
