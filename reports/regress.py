"""`bench export` and `bench regress`: a baseline file of results, and a comparison of the store against it.

A baseline is the JSON that ``bench export`` writes: one entry per result, keyed by (subject, method, audio, track,
config hash, seed, metric variant); where the store holds the same key twice, the latest result is the one exported.

``bench regress`` classifies every key. The allowed change of a result is ``max(abs, rel * |baseline|)`` with
``abs``/``rel`` taken from the tolerances file (the variant's entry, else its metric family's, else ``default``).
A result worse than its baseline by more than that, in the metric's own direction, is a regression; better by more
is an improvement; a value that became unavailable (NaN) is a regression. Keys only in the store are new, keys
only in the baseline are missing. Tolerances file (TOML)::

    default = { abs = 1e-6, rel = 0.0 }
    [metrics]
    psnr = { abs = 0.05 }
    [variants]
    "lmd@fan-mouth20-centred-px" = { rel = 0.01 }
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.contracts import BenchError, arrow
from bench.reports.results import format_value, json_number

FORMAT = "bench-results"
VERSION = 1
KEY_FIELDS = ("subject", "method", "audio", "track", "config_hash", "seed", "variant")
DEFAULT_TOLERANCE = {"abs": 1e-9, "rel": 1e-6}
"""Without a tolerances file only floating-point noise is tolerated."""

REGRESSION, IMPROVEMENT, WITHIN, NEW, MISSING = "regression", "improvement", "within tolerance", "new", "missing"


def _number(value: Any) -> float | None:
    """A JSON value back to a float: "inf"/"-inf" strings to infinities, null to None."""
    if value is None:
        return None
    return float(value)


def export(rows: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """The baseline document for store rows: the latest result per key, sorted, with what produced the export."""
    from bench import provenance

    latest: dict[tuple, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["created_at"], r["result_created_at"])):
        latest[tuple(row[f] for f in KEY_FIELDS)] = row
    results = [
        {
            **{f: row[f] for f in KEY_FIELDS},
            "metric": row["metric"],
            "value": json_number(row["value"]),
            "higher_is_better": bool(row["higher_is_better"]),
            "kind": row["kind"],
            "n_frames": row["n_frames"],
            "run_id": row["run_id"],
        }
        for _, row in sorted(latest.items(), key=lambda item: tuple(str(part) for part in item[0]))
    ]
    snapshot = provenance.snapshot()
    return {
        "format": FORMAT,
        "version": VERSION,
        "bench_version": snapshot["bench_version"],
        "git": snapshot["git"],
        "results": results,
    }


def write_export(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1, sort_keys=True, allow_nan=False) + "\n")


def load_baseline(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"{path}: baseline not found (write one with `bench export --out {path}`)") from None
    except json.JSONDecodeError as error:
        raise BenchError(f"{path}: not JSON ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT or document.get("version") != VERSION:
        raise BenchError(f"{path}: not a bench baseline (expected format {FORMAT!r} version {VERSION} from `bench export`)")
    return document


@dataclass(frozen=True)
class Tolerance:
    abs: float
    rel: float

    def allowed(self, baseline: float) -> float:
        return max(self.abs, self.rel * abs(baseline)) if math.isfinite(baseline) else self.abs


class Tolerances:
    """Per-variant, per-metric and default tolerances (see the module docstring for the file format)."""

    def __init__(self, default: dict[str, float] | None = None, metrics: dict[str, dict] | None = None,
                 variants: dict[str, dict] | None = None):
        self.default = self._tolerance(DEFAULT_TOLERANCE | (default or {}), "default")
        self.metrics = {name: self._tolerance(entry, f"metrics.{name}") for name, entry in (metrics or {}).items()}
        self.variants = {name: self._tolerance(entry, f"variants.{name}") for name, entry in (variants or {}).items()}

    def _tolerance(self, entry: Any, where: str) -> Tolerance:
        if not isinstance(entry, dict) or set(entry) - {"abs", "rel"}:
            raise BenchError(f"tolerances: {where} must be a table with 'abs' and/or 'rel'")
        values = {key: entry.get(key, 0.0) for key in ("abs", "rel")}
        if not all(isinstance(v, int | float) and v >= 0 for v in values.values()):
            raise BenchError(f"tolerances: {where}: 'abs' and 'rel' must be non-negative numbers")
        return Tolerance(float(values["abs"]), float(values["rel"]))

    @classmethod
    def load(cls, path: Path | None) -> Tolerances:
        if path is None:
            return cls()
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise BenchError(f"{path}: tolerances file not found") from None
        except tomllib.TOMLDecodeError as error:
            raise BenchError(f"{path}: not TOML ({error})") from None
        unknown = set(data) - {"default", "metrics", "variants"}
        if unknown:
            raise BenchError(f"{path}: unknown keys {', '.join(sorted(unknown))} (expected default, metrics, variants)")
        return cls(data.get("default"), data.get("metrics"), data.get("variants"))

    def get(self, metric: str, variant: str) -> Tolerance:
        return self.variants.get(variant) or self.metrics.get(metric) or self.default


@dataclass(frozen=True)
class Comparison:
    key: dict[str, Any]
    status: str
    baseline: float | None
    current: float | None
    allowed: float | None
    higher_is_better: bool

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.current is None:
            return None
        return 0.0 if self.baseline == self.current else self.current - self.baseline


def _classify(baseline: float | None, current: float | None, higher_is_better: bool, tolerance: Tolerance) -> tuple[str, float | None]:
    if baseline is None:
        return (WITHIN if current is None else IMPROVEMENT), None  # a value that became available improves
    if current is None:
        return REGRESSION, None  # a value that became unavailable regresses
    allowed = tolerance.allowed(baseline)
    if baseline == current:
        return WITHIN, allowed
    worse_by = baseline - current if higher_is_better else current - baseline
    if worse_by > allowed:
        return REGRESSION, allowed
    if -worse_by > allowed:
        return IMPROVEMENT, allowed
    return WITHIN, allowed


def compare(baseline: dict[str, Any], current: dict[str, Any], tolerances: Tolerances) -> list[Comparison]:
    """Every key of either document, classified (see the module docstring)."""
    def index(document: dict[str, Any]) -> dict[tuple, dict[str, Any]]:
        return {tuple(entry[f] for f in KEY_FIELDS): entry for entry in document["results"]}

    old, new = index(baseline), index(current)
    out = []
    for key in sorted(old.keys() | new.keys(), key=lambda k: tuple(str(part) for part in k)):
        before, after = old.get(key), new.get(key)
        entry = after or before
        fields = dict(zip(KEY_FIELDS, key))
        higher = bool(entry["higher_is_better"])
        if before is None or after is None:
            status = NEW if before is None else MISSING
            out.append(Comparison(fields, status, _number(before and before["value"]), _number(after and after["value"]), None, higher))
            continue
        status, allowed = _classify(_number(before["value"]), _number(after["value"]), higher, tolerances.get(entry["metric"], key[-1]))
        out.append(Comparison(fields, status, _number(before["value"]), _number(after["value"]), allowed, higher))
    return out


def _value(value: float | None) -> str:
    return "n/a" if value is None else format_value(value)


def _section(title: str, comparisons: list[Comparison], with_change: bool) -> list[str]:
    if not comparisons:
        return []
    header = ["subject", "method", "audio", "track", "config", "seed", "metric", "baseline", "current"]
    if with_change:
        header += ["change", "tolerance"]
    lines = [f"### {title} ({len(comparisons)})", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in comparisons:
        mark = arrow(c.higher_is_better)
        cells = [c.key["subject"], c.key["method"], c.key["audio"], c.key["track"], c.key["config_hash"], str(c.key["seed"]),
                 f"{c.key['variant']} {mark}", _value(c.baseline), _value(c.current)]
        if with_change:
            change = c.change
            cells += ["n/a" if change is None else f"{change:+.4f}", "n/a" if c.allowed is None else f"±{c.allowed:.4g}"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return [*lines, ""]


def markdown_report(comparisons: list[Comparison], baseline_path: Path, baseline: dict[str, Any], fail_on_missing: bool) -> str:
    """A markdown summary for a CI job: verdict, counts, then one table per kind of change."""
    by_status: dict[str, list[Comparison]] = {s: [] for s in (REGRESSION, IMPROVEMENT, WITHIN, NEW, MISSING)}
    for comparison in comparisons:
        by_status[comparison.status].append(comparison)
    failed = failures(comparisons, fail_on_missing)
    verdict = f"FAIL ({failed} failing)" if failed else "pass"
    commit = (baseline.get("git") or {}).get("commit")
    source = f"`{baseline_path}` (bench {baseline.get('bench_version')}" + (f", commit {commit[:12]})" if commit else ")")
    counts = ", ".join(f"{len(items)} {status}" for status, items in by_status.items())
    lines = [f"## bench regress: {verdict}", "", f"Compared {len(comparisons)} results with baseline {source}: {counts}.", ""]
    lines += _section("Regressions", by_status[REGRESSION], True)
    lines += _section("Improvements", by_status[IMPROVEMENT], True)
    lines += _section("Missing (in the baseline, not in the store)" + (": failing" if fail_on_missing else ""), by_status[MISSING], False)
    lines += _section("New (in the store, not in the baseline)", by_status[NEW], False)
    within = _section("Within tolerance", by_status[WITHIN], True)
    if within:
        lines += ["<details><summary>Within tolerance</summary>", "", *within[2:], "</details>", ""]
    return "\n".join(lines)


def failures(comparisons: list[Comparison], fail_on_missing: bool) -> int:
    """How many comparisons fail the check: regressions, plus missing results with ``fail_on_missing``."""
    failing = {REGRESSION, MISSING} if fail_on_missing else {REGRESSION}
    return sum(c.status in failing for c in comparisons)
