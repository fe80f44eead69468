"""`bench leaderboard`: a static HTML site built with Jinja2 from the results store.

- ``index.html``: one ranking per subject, track, driving audio and metric family (tracks are never mixed).
- ``subjects/<id>.html``: the paper's Table 1 and Table 2 for each track, side-by-side sample frames (ground truth
  and each method, where the render stage's frames are still in ``$BENCH_HOME``) and per-frame metric plots.
- ``methods/<id>.html``: every result of the method with its provenance (metric variant, package versions, git
  commit, asset sha256s, config); every number on the site links to its entry there.

Pages are plain HTML tables, readable without JavaScript; an inline script (no network, no CDN) makes column
headers sortable, so the site works opened from ``file://``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import GROUND_TRUTH, SELF_AUDIO
from bench.reports import plots, tables
from bench.reports.results import format_value
from bench.reports.tables import MEASURED, Table, Uncertainty

TEMPLATES = Path(__file__).resolve().parent / "templates"
SAMPLE_FRAMES = 3
THUMBNAIL_WIDTH = 256


@cache
def _environment():
    import jinja2

    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True,
    )
    environment.filters.update(value=format_value, slug=plots.slug, cell_text=tables.cell_text, anchor=result_anchor,
                               sort_value=sort_value, pretty_json=lambda v: json.dumps(v, indent=1, sort_keys=True, default=str))
    return environment


def render_template(name: str, **context: Any) -> str:
    return _environment().get_template(name).render(**context)


def tables_page(built: list[Table]) -> str:
    """A standalone HTML page with the tables (the same markup as the leaderboard's)."""
    return render_template("table_page.html.j2", tables=built, title="bench tables", root=None, subjects=[], methods=[])


def render_table(built: list[Table], fmt: str) -> str:
    """Tables in one of ``tables.FORMATS``."""
    return tables_page(built) if fmt == "html" else tables.RENDERERS[fmt](built)


def result_anchor(run_id: str | None, variant: str | None) -> str:
    """The id of a result's provenance entry on its method page."""
    return plots.slug(f"r-{run_id}-{variant}")


def sort_value(cell: tables.Cell | None) -> str:
    """The ``data-value`` the sorting script compares: the number (``Infinity`` for inf), empty for none."""
    if cell is None or cell.value is None or np.isnan(cell.value):
        return ""
    return repr(float(cell.value)).replace("inf", "Infinity")


@dataclass
class Group:
    """Results of one subject, track and driving audio: the unit inside which methods are ranked."""

    subject: str
    track: str
    audio: str
    rows: list[dict[str, Any]]
    rankings: list[Table] = field(default_factory=list)


def _groups(store: Any) -> list[Group]:
    grouped: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in store.query():
        grouped[(row["subject"], row["track"], row["audio"])].append(row)
    keys = sorted(grouped, key=lambda k: (k[0], k[1], k[2] != SELF_AUDIO, k[2]))
    return [Group(*key, grouped[key]) for key in keys]


def _family_rankings(group: Group, frames: tables.FrameValues, uncertainty: Uncertainty) -> list[Table]:
    """One ranked table per metric family in the group; measured rows ordered best first by the first variant."""
    families: dict[str, set[str]] = defaultdict(set)
    for row in group.rows:
        families[row["metric"]].add(row["variant"])
    rankings = []
    for family in sorted(families):
        rows = [r for r in group.rows if r["metric"] == family]
        columns = tables.columns_for(sorted(families[family]), rows)
        title = f"{columns[0].label}: {group.subject}, {group.track} track, audio {group.audio}"
        table = tables.ranked_table(title, columns, rows, frames, uncertainty)
        table.subject, table.track, table.audio = group.subject, group.track, group.audio
        lead = columns[0]

        def order(row: tables.Row) -> tuple:
            value = row.cells[lead.key].value
            missing = value is None or np.isnan(value)
            return (row.source != MEASURED, missing, 0.0 if missing else (-value if lead.higher_is_better else value))

        table.rows.sort(key=order)
        rankings.append(table)
    return rankings


def _sample_frames(group: Group, out: Path) -> dict[str, Any] | None:
    """Thumbnails of a few test-split frames of the ground truth and each method, side by side; None when no
    render stage of the group still has its frames."""
    from PIL import Image

    from bench import media, stages

    sources: dict[str, np.ndarray] = {}
    for row in sorted(group.rows, key=lambda r: (r["method"] != GROUND_TRUTH, r["method"])):
        key = ((row["provenance"] or {}).get("stages") or {}).get("render", {}).get("key")
        if not key or row["method"] in sources:
            continue
        stem = stages.stage_path("render", key) / "frames"
        if stem.with_suffix(".json").is_file() and stem.with_suffix(".u8").is_file():
            sources[row["method"]] = media.open_frames(stem)
    if not sources:
        return None
    length = min(len(frames) for frames in sources.values())
    if length == 0:
        return None
    indices = sorted({int(i) for i in np.linspace(0, length - 1, SAMPLE_FRAMES)})
    images: dict[int, dict[str, str]] = {}
    for method, frames in sources.items():
        for index in indices:
            image = Image.fromarray(np.ascontiguousarray(frames[index]))
            image.thumbnail((THUMBNAIL_WIDTH, THUMBNAIL_WIDTH * 4))
            name = plots.slug(f"{group.subject}-{group.track}-{group.audio}-{method}-{index}") + ".png"
            (out / "frames").mkdir(parents=True, exist_ok=True)
            image.save(out / "frames" / name)
            images.setdefault(index, {})[method] = f"frames/{name}"
    return {"methods": list(sources), "indices": indices, "images": images}


def _frame_plots(store: Any, group: Group, out: Path) -> list[dict[str, str]]:
    """A per-frame curve (PNG) of each variant of the group that has per-frame values."""
    made = []
    for family in sorted({r["metric"] for r in group.rows}):
        for variant, (higher, series) in plots.collect(store, group.subject, family, group.track, group.audio).items():
            title = f"{variant} per frame: {group.subject}, {group.track} track, audio {group.audio}"
            stem = out / "plots" / plots.slug(f"{group.subject}-{group.track}-{group.audio}-{variant}-frames")
            plots.save(plots.curves_figure(variant, higher, series, title), stem, ("png",))
            made.append({"variant": variant, "src": f"plots/{stem.name}.png", "alt": f"{title}; methods: " + ", ".join(s.label for s in series)})
    return made


def _method_results(rows: list[dict[str, Any]], frames: tables.FrameValues, uncertainty: Uncertainty) -> dict[str, list[dict[str, Any]]]:
    """Per method: every result with its interval and the provenance shown on the method page."""
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: (r["subject"], r["track"], r["audio"], r["variant"], r["created_at"])):
        cell = tables.measured_cell(row, frames, uncertainty)
        result_provenance = row["result_provenance"] or {}
        run_provenance = row["provenance"] or {}
        out[row["method"]].append({
            "row": row,
            "cell": cell,
            "anchor": result_anchor(row["run_id"], row["variant"]),
            "git": result_provenance.get("git") or run_provenance.get("git"),
            "packages": result_provenance.get("packages") or run_provenance.get("packages") or {},
            "assets": result_provenance.get("assets") or {},
            "bench_version": result_provenance.get("bench_version") or run_provenance.get("bench_version"),
            "run_provenance": run_provenance,
        })
    return out


def build(store: Any, out: Path, uncertainty: Uncertainty = Uncertainty(), frames: bool = True, plots_wanted: bool = True) -> Path:
    """Write the site under ``out``; returns the path of ``index.html``."""
    frame_values = tables.FrameValues(store)
    groups = _groups(store)
    for group in groups:
        group.rankings = _family_rankings(group, frame_values, uncertainty)
    subjects = sorted({g.subject for g in groups})
    methods = sorted({r["method"] for g in groups for r in g.rows})
    (out / "subjects").mkdir(parents=True, exist_ok=True)
    (out / "methods").mkdir(parents=True, exist_ok=True)
    common = {"subjects": subjects, "methods": methods}
    (out / "index.html").write_text(render_template("index.html.j2", root="", groups=groups, **common))
    store_rows = [r for g in groups for r in g.rows]
    for subject in subjects:
        subject_groups = [g for g in groups if g.subject == subject]
        paper_tables = []
        for track in sorted({g.track for g in subject_groups}):
            paper_tables += tables.table1(store, [subject], track, uncertainty)
            if any(g.track == track and g.audio != SELF_AUDIO for g in subject_groups):
                paper_tables += tables.table2(store, [subject], track, uncertainty)[:-1]
        media_sections = [
            {
                "group": group,
                "frames": _sample_frames(group, out) if frames else None,
                "plots": _frame_plots(store, group, out) if plots_wanted else [],
            }
            for group in subject_groups
        ]
        (out / "subjects" / f"{plots.slug(subject)}.html").write_text(
            render_template("subject.html.j2", root="../", subject=subject, tables=paper_tables, media=media_sections, **common)
        )
    for method, results in _method_results(store_rows, frame_values, uncertainty).items():
        (out / "methods" / f"{plots.slug(method)}.html").write_text(
            render_template("method.html.j2", root="../", method=method, results=results, **common)
        )
    return out / "index.html"
