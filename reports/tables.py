"""`bench table`: the paper's table layouts filled from the results store, with uncertainty.

- ``table1``: image quality and sync metrics per method (self-driven, test split), one table per subject and, with
  several subjects, their average (only for methods that have every subject; the others are named).
- ``table2``: LSE-D / LSE-C per driving audio (the subject's own audio first, then each OOD audio).
- ``table4``: ablation rows: every configuration of every method on the subject.

Every table covers one track: head-only and portrait renders are never ranked together. Rows come in blocks:
measured methods (ranked: best in bold, second underlined), the ground-truth reference row (never ranked) and the
paper's numbers (never ranked, from ``reports.paper``). A measured mean that is the mean of its per-frame values
gets a 95 % circular block-bootstrap interval (``reports.stats``) shown as ``± half-width``; a value that a paired
block-bootstrap test cannot tell from the column's best is marked †.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bench.contracts import GROUND_TRUTH, SELF_AUDIO, BenchError, PaperResult, arrow
from bench.reports import paper
from bench.reports.results import format_value
from bench.reports.stats import DEFAULT_RESAMPLES, DEFAULT_SEED, Interval, mean_interval, paired_test

MEASURED, REFERENCE, PAPER = "measured", "ground truth", "paper"
NOT_SIGNIFICANT = "†"
LAYOUTS = ("table1", "table2", "table4")
FORMATS = ("md", "latex", "csv", "html")


@dataclass
class Cell:
    value: float | None
    interval: Interval | None = None
    rank: int | None = None  # 1 best, 2 second best among the measured rows of the column
    not_significant: bool = False  # a paired test cannot tell it from the column's best
    run_id: str | None = None
    variant: str | None = None


@dataclass(frozen=True)
class Column:
    key: str  # the variant, or "<audio>/<variant>" in table2
    variant: str
    label: str
    higher_is_better: bool

    @property
    def heading(self) -> str:
        return f"{self.label} {arrow(self.higher_is_better)}"


@dataclass
class Row:
    label: str
    source: str  # MEASURED, REFERENCE or PAPER
    cells: dict[str, Cell] = field(default_factory=dict)
    method: str | None = None


@dataclass
class Table:
    title: str
    columns: list[Column]
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    subject: str | None = None
    track: str | None = None
    audio: str | None = None


@dataclass(frozen=True)
class Uncertainty:
    """Whether and how to compute intervals and paired tests (seeded: deterministic)."""

    enabled: bool = True
    resamples: int = DEFAULT_RESAMPLES
    seed: int = DEFAULT_SEED


# ---------------------------------------------------------------------------------------------------
# Gathering measured values


RunKey = tuple[str, str, int]  # (method, config_hash, seed)


def _latest_by_run(rows: Iterable[dict[str, Any]]) -> dict[RunKey, dict[str, dict[str, Any]]]:
    """Results grouped by (method, config hash, seed) and variant; the latest recorded result wins."""
    grouped: dict[RunKey, dict[str, dict[str, Any]]] = {}
    for row in sorted(rows, key=lambda r: (r["created_at"], r["result_created_at"])):
        grouped.setdefault((row["method"], row["config_hash"], row["seed"]), {})[row["variant"]] = row
    return grouped


def _row_labels(keys: Iterable[RunKey]) -> dict[RunKey, str]:
    """The method name, plus config hash and seed where a method has several configurations or seeds."""
    keys = list(keys)
    labels = {}
    for key in keys:
        method, config_hash, seed = key
        siblings = [k for k in keys if k[0] == method]
        labels[key] = method if len(siblings) == 1 else f"{method} [config {config_hash}, seed {seed}]"
    return labels


def _is_frame_mean(value: float | None, per_frame: np.ndarray) -> bool:
    """True when the aggregate is the mean of the scored frames (so a bootstrap over frames describes it)."""
    scored = per_frame[~np.isnan(per_frame)]
    if value is None or scored.size == 0 or not math.isfinite(value):
        return False
    return math.isclose(float(scored.mean()), value, rel_tol=1e-9, abs_tol=1e-12)


class FrameValues:
    """Per-frame values from the store, read once, kept only where the aggregate is their mean."""

    def __init__(self, store: Any):
        self.store = store
        self._cache: dict[tuple[str, str], np.ndarray | None] = {}

    def get(self, result: dict[str, Any]) -> np.ndarray | None:
        key = (result["run_id"], result["variant"])
        if key not in self._cache:
            values = self.store.frame_values(*key)
            self._cache[key] = values if _is_frame_mean(result["value"], values) else None
        return self._cache[key]


def measured_cell(result: dict[str, Any] | None, frames: FrameValues, uncertainty: Uncertainty) -> Cell:
    if result is None:
        return Cell(None)
    per_frame = frames.get(result) if uncertainty.enabled else None
    interval = None
    if per_frame is not None:
        interval = mean_interval(per_frame, resamples=uncertainty.resamples, seed=uncertainty.seed)
    return Cell(result["value"], interval, run_id=result["run_id"], variant=result["variant"])


def _rank(table: Table, frames: FrameValues | None, uncertainty: Uncertainty, results: dict[tuple[int, str], dict]) -> None:
    """Rank measured rows per column (dense ranks; ties share a rank) and test each against the best."""
    measured = [row for row in table.rows if row.source == MEASURED]
    for column in table.columns:
        cells = [row.cells.get(column.key) for row in measured]
        valued = [c for c in cells if c is not None and c.value is not None and not math.isnan(c.value)]
        distinct = sorted({c.value for c in valued}, reverse=column.higher_is_better)
        if len(valued) < 2:
            continue
        for cell in valued:
            position = distinct.index(cell.value) + 1
            cell.rank = position if position <= 2 else None
        if frames is None or not uncertainty.enabled:
            continue
        best = [(i, c) for i, c in enumerate(cells) if c is not None and c.rank == 1]
        if len(best) != 1:
            continue
        best_index, _ = best[0]
        best_frames = frames.get(results[(best_index, column.key)])
        if best_frames is None:
            continue
        for index, cell in enumerate(cells):
            if cell is None or cell.value is None or index == best_index or (index, column.key) not in results:
                continue
            other = frames.get(results[(index, column.key)])
            if other is None:
                continue
            test = paired_test(best_frames, other, resamples=uncertainty.resamples, seed=uncertainty.seed)
            cell.not_significant = test is not None and not test.significant


def _measured_table(
    title: str, columns: list[Column], rows: list[dict[str, Any]], select: Callable[[dict[str, Any], Column], bool],
    frames: FrameValues, uncertainty: Uncertainty, *, label: Callable[[RunKey, str], str] | None = None,
) -> tuple[Table, dict[tuple[int, str], dict]]:
    """Measured and ground-truth rows for ``columns`` from store rows; ``select`` says which result fills a column."""
    grouped = _latest_by_run(rows)
    labels = _row_labels(grouped)
    table = Table(title, columns, [])
    results: dict[tuple[int, str], dict] = {}
    order = sorted(grouped, key=lambda k: (k[0] == GROUND_TRUTH, k))
    for key in order:
        source = REFERENCE if key[0] == GROUND_TRUTH else MEASURED
        row = Row(label(key, labels[key]) if label else labels[key], source, method=key[0])
        for column in columns:
            matches = [r for r in grouped[key].values() if select(r, column)]
            result = max(matches, key=lambda r: r["result_created_at"]) if matches else None
            row.cells[column.key] = measured_cell(result, frames, uncertainty)
            if result is not None and source == MEASURED:
                results[(len(table.rows), column.key)] = result
        table.rows.append(row)
    return table, results


def by_variant(result: dict[str, Any], column: Column) -> bool:
    return result["variant"] == column.variant


def ranked_table(
    title: str, columns: list[Column], rows: list[dict[str, Any]], frames: FrameValues, uncertainty: Uncertainty,
    select: Callable[[dict[str, Any], Column], bool] = by_variant, label: Callable[[RunKey, str], str] | None = None,
) -> Table:
    """Measured rows (ranked, with intervals and paired tests against each column's best) and the ground-truth row."""
    table, results = _measured_table(title, columns, rows, select, frames, uncertainty, label=label)
    _rank(table, frames, uncertainty, results)
    return table


def columns_for(variants: Iterable[str], rows: list[dict[str, Any]]) -> list[Column]:
    directions = {r["variant"]: bool(r["higher_is_better"]) for r in rows}
    return [
        Column(v, v, paper.LABELS.get(v, v.split("@")[0].upper()), directions.get(v, paper.HIGHER_IS_BETTER.get(v, True)))
        for v in variants
    ]


def _paper_rows(entries: Iterable[PaperResult], columns: list[Column]) -> list[Row]:
    return [Row(entry.row, PAPER, {c.key: Cell(entry.values.get(c.key)) for c in columns}) for entry in entries]


def _variant_notes(columns: list[Column]) -> list[str]:
    return ["columns: " + ", ".join(f"{c.label} = {c.variant}" for c in columns if not c.key.startswith(("A/", "B/")))]


UNCERTAINTY_NOTE = (
    "± is half the 95 % circular block-bootstrap interval over frames (blocks of 25 frames, fewer for short series); "
    f"{NOT_SIGNIFICANT}: not significantly different from the column's best (paired block bootstrap, 95 %)."
)


# ---------------------------------------------------------------------------------------------------
# Layouts


def _subjects(store: Any, subjects: list[str] | None) -> list[str]:
    found = sorted({r["subject"] for r in store.query()})
    if not subjects:
        if not found:
            raise BenchError("the results store is empty: run `bench run` or `bench demo` first")
        return found
    missing = [s for s in subjects if s not in found]
    if missing:
        raise BenchError(f"no results for subject {', '.join(missing)} (subjects with results: {', '.join(found) or 'none'})")
    return subjects


def table1(store: Any, subjects: list[str] | None = None, track: str = "head", uncertainty: Uncertainty = Uncertainty()) -> list[Table]:
    """Paper Table 1 for each subject (self-driven, one track) and, for several subjects, their average."""
    frames = FrameValues(store)
    tables = []
    for subject in _subjects(store, subjects):
        rows = store.query(subject=subject, track=track, audio=SELF_AUDIO)
        columns = columns_for(paper.TABLE1_VARIANTS, rows)
        table = ranked_table(f"Table 1: {subject}, {track} track, self-driven (test split)", columns, rows, frames, uncertainty)
        table.subject, table.track, table.audio = subject, track, SELF_AUDIO
        table.rows += _paper_rows(paper.rows("table1"), columns)
        table.notes += [*_variant_notes(columns), UNCERTAINTY_NOTE, _paper_note()]
        tables.append(table)
    if len(tables) > 1:
        tables.append(_average(tables, track))
    return tables


def _paper_note() -> str:
    return f"paper rows: {paper.SOURCE}, averages over the paper's own subjects; never ranked; {paper.TABLE1_SETTINGS}."


def _average(tables: list[Table], track: str) -> Table:
    """Mean over subjects per method, only where the method has a value on every subject."""
    subjects = [t.subject for t in tables]
    columns = tables[0].columns
    by_label: dict[str, dict[str, Row]] = {}
    sources = {}
    for table in tables:
        for row in table.rows:
            if row.source != PAPER:
                by_label.setdefault(row.label, {})[table.subject] = row
                sources[row.label] = row.source
    average = Table(f"Table 1: average over {', '.join(subjects)}, {track} track, self-driven", columns, [], track=track)
    for label, per_subject in by_label.items():
        row = Row(label, sources[label], method=next(iter(per_subject.values())).method)
        missing: dict[str, list[str]] = {}
        for column in columns:
            values = {}
            for subject in subjects:
                cell = per_subject[subject].cells.get(column.key) if subject in per_subject else None
                if cell is not None and cell.value is not None:
                    values[subject] = cell.value
            complete = len(values) == len(subjects)
            row.cells[column.key] = Cell(float(np.mean(list(values.values()))) if complete else None)
            for subject in subjects if values and not complete else ():
                if subject not in values:
                    missing.setdefault(subject, []).append(column.label)
        average.rows.append(row)
        for subject, labels in missing.items():
            what = "no results" if subject not in per_subject else ", ".join(labels) + " missing"
            average.notes.append(f"{label}: {what} on {subject}; not averaged")
    _rank(average, None, Uncertainty(enabled=False), {})
    average.rows += _paper_rows(paper.rows("table1"), columns)
    average.notes += [*_variant_notes(columns), "averages over subjects carry no interval.", _paper_note()]
    return average


def table2(store: Any, subjects: list[str] | None = None, track: str = "head", uncertainty: Uncertainty = Uncertainty()) -> list[Table]:
    """Paper Table 2: LSE-D and LSE-C per driving audio, per subject; then the paper's rows (audios A and B)."""
    frames = FrameValues(store)
    tables = []
    for subject in _subjects(store, subjects):
        rows = [r for r in store.query(subject=subject, track=track) if r["variant"] in (paper.LSE_D, paper.LSE_C)]
        audios = sorted({r["audio"] for r in rows}, key=lambda a: (a != SELF_AUDIO, a))
        columns = [
            Column(f"{audio}/{c.variant}", c.variant, f"{audio}: {c.label}", c.higher_is_better)
            for audio in audios for c in columns_for((paper.LSE_D, paper.LSE_C), rows)
        ]
        table = ranked_table(
            f"Table 2: {subject}, {track} track, lip sync per driving audio", columns, rows, frames, uncertainty,
            select=lambda r, c: f"{r['audio']}/{r['variant']}" == c.key,
        )
        table.subject, table.track = subject, track
        if not audios:
            table.notes.append(f"no LSE results for {subject} on the {track} track")
        table.notes += [
            f"columns: LSE-D = {paper.LSE_D}, LSE-C = {paper.LSE_C}; '{SELF_AUDIO}' is the subject's own test audio.",
            UNCERTAINTY_NOTE,
        ]
        tables.append(table)
    paper_columns = [
        Column(f"{audio}/{c.variant}", c.variant, f"audio {audio}: {c.label}", c.higher_is_better)
        for audio in paper.TABLE2_AUDIOS for c in columns_for((paper.LSE_D, paper.LSE_C), [])
    ]
    reference = Table("Table 2 (paper): lip sync with the paper's two OOD audios", paper_columns, [])
    reference.rows = _paper_rows(paper.rows("table2"), paper_columns)
    reference.notes.append(f"{paper.SOURCE}; audios A and B were never released (SyncTalk#188), so bench cannot rerun them.")
    return [*tables, reference]


def table4(store: Any, subjects: list[str] | None = None, track: str = "head", uncertainty: Uncertainty = Uncertainty()) -> list[Table]:
    """Paper Table 4: one row per configuration of each method on the subject (an ablation), self-driven."""
    frames = FrameValues(store)
    tables = []
    for subject in _subjects(store, subjects):
        rows = store.query(subject=subject, track=track, audio=SELF_AUDIO)
        columns = columns_for(paper.TABLE4_VARIANTS, rows)
        configs = {(r["method"], r["config_hash"], r["seed"]): r["config"] for r in rows}

        def label(key: RunKey, default: str) -> str:
            varying = _varying_options(key, configs)
            return f"{key[0]} ({varying})" if varying else default

        table = ranked_table(
            f"Table 4: ablation on {subject}, {track} track, self-driven (test split)", columns, rows, frames,
            uncertainty, label=label,
        )
        table.subject, table.track, table.audio = subject, track, SELF_AUDIO
        table.rows += _paper_rows(paper.rows("table4"), columns)
        table.notes += [
            *_variant_notes(columns), UNCERTAINTY_NOTE,
            f"paper rows: {paper.SOURCE}, subject {paper.TABLE4_SUBJECT} only; never ranked.",
        ]
        tables.append(table)
    return tables


def _varying_options(key: RunKey, configs: dict[RunKey, dict]) -> str:
    """The config options of ``key`` that differ between the configurations of the same method."""
    siblings = [config for k, config in configs.items() if k[0] == key[0]]
    if len(siblings) < 2:
        return ""
    names = sorted({name for config in siblings for name in config})
    varying = [n for n in names if len({repr(config.get(n)) for config in siblings}) > 1]
    config = configs[key]
    return ", ".join(f"{n}={config[n]!r}" if n in config else f"{n} unset" for n in varying) + (f", seed {key[2]}" if _seeds_vary(key, configs) else "")


def _seeds_vary(key: RunKey, configs: dict[RunKey, dict]) -> bool:
    return len({k[2] for k in configs if k[0] == key[0]}) > 1


@dataclass(frozen=True)
class AblationEntry:
    """One row of ``bench ablate``: its label, what ran, and the run id and outcomes it produced (or why none)."""

    label: str
    method: str  # METHOD or METHOD:VARIANT
    track: str
    source: str  # "full", "paper" or "bench"
    run_id: str | None
    values: dict[str, tuple[float, bool]]  # variant -> (aggregate, higher_is_better)
    unavailable: str | None = None


def ablation(
    title: str, entries: list[AblationEntry], paper_rows: Iterable[PaperResult], store: Any,
    uncertainty: Uncertainty = Uncertainty(),
) -> Table:
    """Table 4's layout for ``bench ablate``: PSNR, LPIPS, LMD, then every other metric some row has; each measured
    row with its bootstrap interval and, against the full method (the first entry), a paired block-bootstrap test
    (†: no significant difference); the paper's rows beside, never ranked."""
    directions = {variant: higher for entry in entries for variant, (_, higher) in entry.values.items()}
    extra = sorted(v for v in directions if v not in paper.TABLE4_VARIANTS)
    # the paper's columns by its names; the others by variant id, since several variants of one family may appear
    columns = [Column(v, v, paper.LABELS.get(v, v) if v in paper.TABLE4_VARIANTS else v,
                      directions.get(v, paper.HIGHER_IS_BETTER.get(v, True)))
               for v in (*paper.TABLE4_VARIANTS, *extra)]
    frames = FrameValues(store)
    table = Table(title, columns, [])
    for entry in entries:
        label = entry.label if entry.source != "bench" else f"{entry.label} [bench]"
        row = Row(f"{label} — unavailable" if entry.unavailable else label, MEASURED, method=entry.method)
        for column in columns:
            value = entry.values.get(column.variant)
            result = None if value is None else {"run_id": entry.run_id, "variant": column.variant, "value": value[0]}
            row.cells[column.key] = measured_cell(result, frames, uncertainty)
        table.rows.append(row)
    _rank(table, None, uncertainty, {})
    full = table.rows[0]
    for row in table.rows[1:]:
        for column in columns:
            cell, reference = row.cells[column.key], full.cells[column.key]
            if not uncertainty.enabled or cell.value is None or reference.value is None:
                continue
            a = frames.get({"run_id": reference.run_id, "variant": column.variant, "value": reference.value})
            b = frames.get({"run_id": cell.run_id, "variant": column.variant, "value": cell.value})
            test = None if a is None or b is None else paired_test(a, b, resamples=uncertainty.resamples, seed=uncertainty.seed)
            cell.not_significant = test is not None and not test.significant
    table.rows += _paper_rows(paper_rows, columns)
    table.notes += [
        *_variant_notes(columns),
        "± is half the 95 % circular block-bootstrap interval over frames; "
        f"{NOT_SIGNIFICANT}: not significantly different from the full method (paired block bootstrap over the same "
        "frames, 95 %); bold/underline: best/second among bench's rows.",
        *(f"{entry.method} ({entry.track} track): {entry.unavailable}" for entry in entries if entry.unavailable),
        *(f"{entry.method} runs on the {entry.track} track" for entry in entries[1:] if entry.track != entries[0].track),
        "[bench]: a row bench adds beside the paper's.",
        f"paper rows: {paper.SOURCE}, subject {paper.TABLE4_SUBJECT} only; never ranked.",
    ]
    return table


BUILDERS = {"table1": table1, "table2": table2, "table4": table4}


# ---------------------------------------------------------------------------------------------------
# Formats


def cell_text(cell: Cell | None, with_interval: bool = True) -> str:
    """The value with ``± half-width`` and the † mark; '–' for no value."""
    if cell is None or cell.value is None:
        return "–"
    text = format_value(cell.value)
    if with_interval and cell.interval is not None:
        text += f" ± {cell.interval.half_width:.4f}"
    if cell.not_significant:
        text += f" {NOT_SIGNIFICANT}"
    return text


def _emphasis(text: str, cell: Cell | None, bold: Callable[[str], str], underline: Callable[[str], str]) -> str:
    if cell is None or cell.rank is None:
        return text
    return bold(text) if cell.rank == 1 else underline(text)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def as_markdown(tables: list[Table]) -> str:
    """GitHub markdown: **best**, <ins>second</ins> (markdown has no underline), notes as a list."""
    out = []
    for table in tables:
        out += [f"### {_md_escape(table.title)}", ""]
        out.append("| source | method | " + " | ".join(_md_escape(c.heading) for c in table.columns) + " |")
        out.append("|---|---|" + "---:|" * len(table.columns))
        for row in table.rows:
            cells = [
                _emphasis(cell_text(row.cells.get(c.key)), row.cells.get(c.key), lambda t: f"**{t}**", lambda t: f"<ins>{t}</ins>")
                for c in table.columns
            ]
            label = f"*{_md_escape(row.label)}*" if row.source == PAPER else _md_escape(row.label)
            out.append(f"| {row.source} | {label} | " + " | ".join(cells) + " |")
        out += [""] + [f"- {_md_escape(note)}" for note in table.notes] + [""]
    return "\n".join(out).rstrip("\n") + "\n"


LATEX_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "↑": r"$\uparrow$", "↓": r"$\downarrow$", "±": r"$\pm$",
    "†": r"$^\dagger$", "–": "--", "≈": r"$\approx$",
}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIALS.get(char, char) for char in text)


def as_latex(tables: list[Table]) -> str:
    """booktabs tables: \\textbf best, \\underline second; a rule between measured, reference and paper blocks."""
    out = []
    for table in tables:
        out += [r"\begin{table}[t]", r"\centering", f"\\caption{{{latex_escape(table.title)}}}", r"\small"]
        out.append(r"\begin{tabular}{ll" + "r" * len(table.columns) + "}")
        out.append(r"\toprule")
        out.append(" & ".join(["Source", "Method", *(latex_escape(c.heading) for c in table.columns)]) + r" \\")
        previous = None
        for row in table.rows:
            if row.source != previous:
                out.append(r"\midrule")
                previous = row.source
            cells = [
                _emphasis(latex_escape(cell_text(row.cells.get(c.key))), row.cells.get(c.key),
                          lambda t: f"\\textbf{{{t}}}", lambda t: f"\\underline{{{t}}}")
                for c in table.columns
            ]
            label = latex_escape(row.label)
            if row.source == PAPER:
                label = f"\\textit{{{label}}}"
            out.append(" & ".join([latex_escape(row.source), label, *cells]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
        out += [r"\par\footnotesize " + latex_escape(note) for note in table.notes]
        out += [r"\end{table}", ""]
    return "\n".join(out)


CSV_HEADER = ("table", "source", "row", "column", "variant", "higher_is_better", "value", "ci_low", "ci_high",
              "ci_frames", "ci_block", "rank", "not_significant_vs_best", "run_id")


def as_csv(tables: list[Table]) -> str:
    """One line per table cell (long format), intervals and ranks in their own columns."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for table in tables:
        for row in table.rows:
            for column in table.columns:
                cell = row.cells.get(column.key) or Cell(None)
                interval = cell.interval
                writer.writerow([
                    table.title, row.source, row.label, column.key, column.variant, column.higher_is_better,
                    format_value(cell.value) if cell.value is not None else "",
                    *(("", "", "", "") if interval is None else (format_value(interval.low), format_value(interval.high), interval.frames, interval.block)),
                    cell.rank or "", cell.not_significant, cell.run_id or "",
                ])
    return buffer.getvalue()


RENDERERS = {"md": as_markdown, "latex": as_latex, "csv": as_csv}
"""Text formats; "html" is ``bench.reports.leaderboard.tables_page`` (the leaderboard's markup)."""

