"""`bench ablate`: a method and each of its registered variants on one subject, written as the paper's Table 4.

Rows are the full method and every variant (``MethodSpec.variants``), all on the track of the paper's full-method
row unless a variant fixes another (SyncTalk's "without Portrait-Sync Generator" is the head track). Each row is an
ordinary ``bench run``: stages are shared through the cache (one preparation, one training per distinct training
config; variants that change only the track reuse the full method's training), and an interrupted ablation resumes
where it stopped. A variant that cannot run here is a row marked unavailable with the reason; it is never replaced
by another configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bench import configs, pipeline
from bench.contracts import BenchError, MethodSpec, RunResult, RunSpec, Track
from bench.store import ResultsStore

FULL = "full"


@dataclass
class AblationRow:
    """One row of the ablation: what runs (``method`` is METHOD or METHOD:VARIANT), on which track, and what came of it."""

    label: str
    method: str
    track: Track
    source: str  # FULL, "paper" (the paper has the row) or "bench" (bench's own)
    unavailable: str | None = None
    plan: dict[str, str] = field(default_factory=dict)
    result: RunResult | None = None


def ablation_track(spec: MethodSpec) -> Track:
    """The track of the paper's full-method Table 4 row (the table4 row no variant stands for), else the first track."""
    variant_rows = {variant.paper_row for variant in spec.variants}
    for result in spec.paper_results:
        if result.table == "table4" and result.row not in variant_rows:
            return result.track
    return spec.capabilities.tracks[0]


def ablation_rows(spec: MethodSpec, track: Track) -> list[AblationRow]:
    """The full method, then each registered variant, in the spec's order."""
    if not spec.variants:
        raise BenchError(f"method {spec.id!r} has no registered variants to ablate (`bench list methods` shows them)")
    rows = [AblationRow(f"{spec.id} (full)", spec.id, track, FULL)]
    for variant in spec.variants:
        rows.append(AblationRow(variant.label, f"{spec.id}:{variant.name}", variant.track or track, variant.source))
    return rows


def _run_spec(row: AblationRow, base: RunSpec) -> RunSpec:
    return replace(base, method=row.method, track=row.track)


def plan(rows: list[AblationRow], base: RunSpec, store: ResultsStore) -> list[AblationRow]:
    """Fill each row's plan (stages cached or to run) or why it is unavailable; nothing is computed."""
    for row in rows:
        try:
            row.plan = pipeline.plan(_run_spec(row, base), store)
        except BenchError as error:
            row.unavailable = str(error)
    return rows


def run(rows: list[AblationRow], base: RunSpec, store: ResultsStore, progress: bool = True) -> list[AblationRow]:
    """Run every row (cached stages reused); a row that cannot run here is marked unavailable and the others go on."""
    for index, row in enumerate(rows, start=1):
        if progress:
            print(f"ablate [{index}/{len(rows)}] {row.method} ({row.label}), {row.track.value} track", flush=True)
        try:
            row.result = pipeline.run(_run_spec(row, base), store, progress)
        except BenchError as error:
            row.unavailable = str(error)
            if progress:
                print(f"ablate [{index}/{len(rows)}] {row.method}: unavailable: {error}", flush=True)
    return rows


def base_spec(
    method: str, subject: str, config: Mapping[str, Any], seed: int, metrics: tuple[str, ...] | None,
    prepare_options: Mapping[str, Mapping[str, Any]],
) -> RunSpec:
    """The run every row shares (self-driven test split); rows set the method variant and track."""
    choice = configs.choose_method(method)
    if choice.variant is not None:
        raise BenchError(f"bench ablate takes a method, not a variant: --method {choice.spec.id}")
    return RunSpec(method=choice.spec.id, subject=subject, config=dict(config), seed=seed, metrics=metrics,
                   prepare_options=dict(prepare_options), reference=False)
