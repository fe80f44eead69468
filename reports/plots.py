"""`bench plot`: per-frame curves and per-method distributions of one metric on one subject (PNG and SVG).

Figures use matplotlib's Agg backend (no display needed). SVGs are written without a date and with a fixed hash
salt, so the same results give byte-identical files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import GROUND_TRUTH, SELF_AUDIO, BenchError, arrow

PLOT_FORMATS = ("png", "svg")


@dataclass(frozen=True)
class Series:
    """Per-frame values of one run for one variant."""

    label: str
    values: np.ndarray
    run_id: str


def slug(text: str) -> str:
    """A file-name-safe form of an id (``lmd@fan-mouth20-centred-px`` -> ``lmd_fan-mouth20-centred-px``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


def collect(store: Any, subject: str, metric: str, track: str = "head", audio: str = SELF_AUDIO) -> dict[str, tuple[bool, list[Series]]]:
    """For each variant of ``metric`` (a family id or one variant): its direction and the per-frame series of each
    method (the latest run per method, config and seed), ground truth last."""
    rows = [r for r in store.query(subject=subject, track=track, audio=audio) if metric in (r["metric"], r["variant"])]
    latest: dict[tuple[str, str, str, int], dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["created_at"], r["result_created_at"])):
        latest[(row["variant"], row["method"], row["config_hash"], row["seed"])] = row
    out: dict[str, tuple[bool, list[Series]]] = {}
    for (variant, method, config_hash, seed), row in sorted(latest.items(), key=lambda i: (i[0][0], i[0][1] == GROUND_TRUTH, i[0][1:])):
        values = store.frame_values(row["run_id"], variant)
        if values.size == 0:
            continue
        several = sum(1 for k in latest if k[0] == variant and k[1] == method) > 1
        label = f"{method} [config {config_hash}, seed {seed}]" if several else method
        out.setdefault(variant, (bool(row["higher_is_better"]), []))[1].append(Series(label, values, row["run_id"]))
    return out


def _plottable(series: Series) -> tuple[np.ndarray, str]:
    """Values with infinities hidden (matplotlib cannot draw them) and a label that says so."""
    values = np.where(np.isfinite(series.values), series.values, np.nan)
    hidden = int(np.count_nonzero(np.isinf(series.values)))
    return values, series.label + (f" ({hidden} infinite frames not drawn)" if hidden else "")


def curves_figure(variant: str, higher_is_better: bool, series: list[Series], title: str):
    """Per-frame values of every method against the frame index of the test split."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8, 3.6), layout="constrained")
    axes = figure.add_subplot()
    for item in series:
        values, label = _plottable(item)
        style = {"color": "black", "linestyle": "--"} if item.label.startswith(GROUND_TRUTH) else {}
        axes.plot(np.arange(values.size), values, linewidth=1.1, label=label, **style)
    axes.set_xlabel("test-split frame")
    axes.set_ylabel(f"{variant} {arrow(higher_is_better)}")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="best")
    return figure


def distribution_figure(variant: str, higher_is_better: bool, series: list[Series], title: str):
    """Box plot of the per-frame values of each method (mean marked), frames that have a finite value."""
    from matplotlib.figure import Figure

    drawn = [(item.label, item.values[np.isfinite(item.values)]) for item in series]
    drawn = [(label, values) for label, values in drawn if values.size]
    figure = Figure(figsize=(max(4.0, 1.4 * len(drawn) + 2), 3.6), layout="constrained")
    axes = figure.add_subplot()
    if drawn:
        axes.boxplot([values for _, values in drawn], tick_labels=[label for label, _ in drawn], showmeans=True)
    axes.set_ylabel(f"{variant} {arrow(higher_is_better)}")
    axes.set_title(title)
    axes.grid(alpha=0.3, axis="y")
    axes.tick_params(axis="x", labelrotation=20)
    return figure


def save(figure, stem: Path, formats: tuple[str, ...] = PLOT_FORMATS) -> list[Path]:
    """Write ``stem.<format>`` for each format; SVGs reproducibly (no date, fixed hash salt)."""
    import matplotlib

    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        path = stem.with_suffix(f".{fmt}")
        with matplotlib.rc_context({"svg.hashsalt": "bench"}):
            figure.savefig(path, dpi=110, metadata={"Date": None} if fmt == "svg" else {"Software": "bench"})
        paths.append(path)
    return paths


def write_metric_plots(
    store: Any, subject: str, metric: str, out: Path, track: str = "head", audio: str = SELF_AUDIO,
    formats: tuple[str, ...] = PLOT_FORMATS,
) -> list[Path]:
    """Curves and distributions of every variant of ``metric`` on ``subject``; returns the files written."""
    found = collect(store, subject, metric, track, audio)
    if not found:
        raise BenchError(f"no per-frame values of {metric!r} for subject {subject!r} ({track} track, audio {audio})")
    paths = []
    for variant, (higher, series) in found.items():
        title = f"{variant} on {subject} ({track} track, audio {audio})"
        stem = out / slug(f"{subject}-{track}-{audio}-{variant}")
        paths += save(curves_figure(variant, higher, series, title), stem.with_name(stem.name + "-frames"), formats)
        paths += save(distribution_figure(variant, higher, series, title), stem.with_name(stem.name + "-distribution"), formats)
    return paths
