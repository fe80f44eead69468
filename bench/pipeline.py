"""The run pipeline: prepare -> train -> render -> evaluate -> record.

Every stage's output is cached under a key hashed from its inputs (see ``bench.stages``), so re-running reuses
finished work and an interrupted run resumes from the last finished stage. The run id is the render stage's key:
it covers the method (and its version), config, seed, subject frames, driving audio and track.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench import assets, home, media, provenance, registry, stages
from bench.contracts import (
    SELF_AUDIO,
    BenchError,
    DrivingAudio,
    Method,
    MetricInput,
    MetricKind,
    MetricOutcome,
    MetricSpec,
    MetricValue,
    RunResult,
    RunSpec,
    Subject,
    Track,
)
from bench.datasets.prepare import driving_audio, prepare_subject
from bench.hashing import options_fingerprint, sha256_file, sha256_json
from bench.store import ResultsStore

GROUND_TRUTH = "ground-truth"
VIDEO = "video.mp4"  # in every render stage folder: the frames as H.264 with the driving audio muxed in


def _renders_fingerprint(path: Path) -> str:
    """sha256 of a render file, or of a frame folder's (name, sha256) list."""
    if path.is_dir():
        return sha256_json(sorted((p.name, sha256_file(p)) for p in path.iterdir() if p.is_file()))
    return sha256_file(path)


def method_config(spec: RunSpec) -> dict[str, Any]:
    method_spec = registry.methods.get(spec.method)
    config = {**method_spec.default_config, **spec.config}
    if method_spec.capabilities.external_renders and config.get("renders"):
        renders = Path(config["renders"]).expanduser().resolve()
        if not renders.exists():
            raise BenchError(f"{renders}: no such file or folder (--renders)")
        config["renders"] = str(renders)
        config["renders_sha256"] = _renders_fingerprint(renders)
    return config


def _render(method: Method, subject: Subject, checkpoint: Path | None, audio: DrivingAudio, track: Track, out: Path, progress: bool) -> dict:
    frames = method.render(subject, checkpoint, audio, track)
    bar = tqdm(frames, desc=f"render {method.spec.id}", total=audio.n_frames, disable=not progress, unit="frame")
    count = media.write_frames(out / "frames", bar)
    media.write_video(out / VIDEO, media.open_frames(out / "frames"), audio.samples())
    return {"frames": count, "video": VIDEO}


def not_applicable(spec: MetricSpec, data: MetricInput) -> str | None:
    if spec.kind is MetricKind.FULL_REFERENCE and data.gt is None:
        return "needs ground-truth frames; OOD audio has none"
    if spec.kind is MetricKind.FULL_REFERENCE and data.pred.shape[1:] != data.gt.shape[1:]:
        return f"rendered frames are {data.pred.shape[2]}x{data.pred.shape[1]}, GT {data.gt.shape[2]}x{data.gt.shape[1]}"
    if spec.kind is MetricKind.AUDIO_VISUAL and data.audio is None:
        return "needs the driving audio"
    return None


def missing_requirement(spec: MetricSpec) -> str | None:
    """Why the metric cannot run in this environment (a package or an asset absent), importing nothing."""
    packages = [name for name in spec.requires if importlib.util.find_spec(name) is None]
    if packages:
        return f"needs the Python package(s) {', '.join(packages)}; install bench's dependencies"
    for name in spec.assets:
        if assets.locate(name) == "missing":
            if home.offline():
                return f"asset {name!r} is missing: {assets.where_to_put(assets.get(name))}"
            return f"asset {name!r} is not here yet (`bench assets fetch {name}` downloads it)"
    return None


def resolve_assets(spec: MetricSpec) -> dict[str, Path]:
    """Verified paths of the metric's assets; raises AssetUnavailable naming the first missing one."""
    missing = [name for name in spec.requires if importlib.util.find_spec(name) is None]
    if missing:
        raise BenchError(f"metric {spec.variant} needs the Python package(s) {', '.join(missing)}")
    return {name: assets.fetch(name) for name in spec.assets}


def compute_metric(spec: MetricSpec, data: MetricInput) -> MetricValue:
    """Resolve the metric's assets and compute it; BenchError (incl. AssetUnavailable) if it cannot run."""
    if reason := not_applicable(spec, data):
        raise BenchError(reason)
    return registry.load_object(spec.impl)(spec, resolve_assets(spec)).compute(data)


def _evaluate(spec: MetricSpec, data: MetricInput, out: Path) -> dict:
    value = compute_metric(spec, data)
    if value.per_frame is not None:
        np.save(out / "per_frame.npy", np.asarray(value.per_frame, dtype=np.float64))
    (out / "value.json").write_text(json.dumps({"aggregate": value.aggregate, "extras": value.extras}, default=str))
    return {"aggregate": value.aggregate}


def _load_value(folder: Path) -> MetricValue:
    stored = json.loads((folder / "value.json").read_text())
    per_frame = folder / "per_frame.npy"
    return MetricValue(
        aggregate=float(stored["aggregate"]),
        per_frame=np.load(per_frame) if per_frame.exists() else None,
        extras=stored["extras"],
    )


@dataclass(frozen=True)
class Trained:
    method: Method
    subject: Subject
    config: dict[str, Any]
    checkpoint: Path | None  # None for methods that learn nothing
    inputs: dict[str, Any]  # the train stage's key inputs


def train(spec: RunSpec, progress: bool = True) -> Trained:
    """Prepare the subject and train the method on it (a cached stage): the first half of a run."""
    method_spec = registry.methods.get(spec.method)
    config = method_config(spec)
    subject = prepare_subject(spec.subject, progress)
    method: Method = registry.load_object(method_spec.impl)(method_spec, config, spec.seed)
    method.progress = progress
    inputs = {
        "method": method_spec.id,
        "method_version": method_spec.version,
        "config": config,
        "seed": spec.seed,
        "subject": subject.key,
    }
    checkpoint = None
    if method_spec.capabilities.needs_training:
        checkpoint, _ = stages.ensure("train", inputs, lambda out: method.train(subject, out))
    return Trained(method, subject, config, checkpoint, inputs)


def run(spec: RunSpec, store: ResultsStore | None = None, progress: bool = True) -> RunResult:
    """Run ``spec`` end to end and record its results; finished stages and recorded results are reused."""
    store = store or ResultsStore(home.results_store_path())
    method_spec = registry.methods.get(spec.method)
    capabilities = method_spec.capabilities
    track = Track(spec.track)
    if track not in capabilities.tracks:
        tracks = ", ".join(t.value for t in capabilities.tracks)
        raise BenchError(f"method {method_spec.id!r} has no {track.value} track (it has: {tracks})")
    metric_specs = registry.select_metrics(spec.metrics)
    if spec.audio != SELF_AUDIO:
        if not capabilities.ood_audio:
            raise BenchError(f"method {method_spec.id!r} cannot be driven by OOD audio {spec.audio!r}")
        registry.audio.get(spec.audio)  # an unknown audio id fails now, not after training
    trained = train(spec, progress)
    method, subject, config, checkpoint = trained.method, trained.subject, trained.config, trained.checkpoint
    audio = driving_audio(subject, spec.audio)
    render_inputs = {**trained.inputs, "audio": audio.id, "audio_sha256": audio.sha256, "track": track.value}
    render_dir, _ = stages.ensure(
        "render", render_inputs, lambda out: _render(method, subject, checkpoint, audio, track, out, progress)
    )
    # a run is its renders plus any metric options (e.g. user-supplied OpenFace CSVs) that change its scores
    options = options_fingerprint(spec.metric_options)
    run_id = render_dir.name if not options else sha256_json([render_dir.name, options])[:24]

    pred = media.open_frames(render_dir / "frames")
    gt = subject.test_frames() if audio.has_ground_truth else None
    n_frames = min(len(pred), len(gt)) if gt is not None else len(pred)
    alignment = {"rendered_frames": len(pred), "gt_frames": None if gt is None else len(gt), "scored_frames": n_frames}
    if gt is not None and len(pred) != len(gt):
        alignment["rule"] = "truncated to the shorter sequence"
    data = MetricInput(
        pred=pred[:n_frames], gt=None if gt is None else gt[:n_frames], audio=audio, options=spec.metric_options
    )

    recorded = store.recorded_variants(run_id)
    outcomes: list[MetricOutcome] = []
    new_results: list[dict[str, Any]] = []
    for metric_spec in tqdm(metric_specs, desc="evaluate", disable=not progress, unit="metric"):
        outcome = MetricOutcome(spec=metric_spec)
        outcomes.append(outcome)
        if metric_spec.variant in recorded:
            outcome.cached = True
            continue
        outcome.unavailable = not_applicable(metric_spec, data)
        if outcome.unavailable:
            continue
        eval_inputs = {
            "run": run_id,
            "variant": metric_spec.variant,
            "gt": subject.key if gt is not None else None,
            "scored_frames": n_frames,
            "options": options,
            "assets": {name: assets.get(name).sha256 for name in metric_spec.assets},
        }
        try:
            folder, _ = stages.ensure("evaluate", eval_inputs, lambda out: _evaluate(metric_spec, data, out))
        except BenchError as error:  # missing weights, unusable input: this metric only
            outcome.unavailable = str(error)
            continue
        outcome.value = _load_value(folder)
        new_results.append(
            {
                "variant": metric_spec.variant,
                "metric": metric_spec.id,
                "value": outcome.value.aggregate,
                "higher_is_better": metric_spec.higher_is_better,
                "kind": metric_spec.kind.value,
                "extras": {**outcome.value.extras, "alignment": alignment},
                "per_frame": outcome.value.per_frame,
                "provenance": {
                    **provenance.snapshot(),
                    "requires": provenance.module_versions(metric_spec.requires),
                    "evaluate_stage": folder.name,
                    "seconds": stages.record("evaluate", folder.name)["seconds"],
                    "assets": eval_inputs["assets"],
                },
            }
        )

    run_provenance = {
        **provenance.snapshot(),
        "decoder": media.decoder_description(),
        "subject_key": subject.key,
        "subject_sources": dict(subject.sources),
        "audio_sha256": audio.sha256,
        "method_version": method_spec.version,
        "metric_options": options,
        "stages": {
            name: {"key": key, "seconds": stages.record(name, key)["seconds"]}
            for name, key in (
                ("prepare", subject.key),
                ("train", checkpoint.name if checkpoint else None),
                ("render", render_dir.name),
            )
            if key
        },
    }
    store.record(
        {
            "run_id": run_id,
            "method": method_spec.id,
            "subject": subject.id,
            "audio": audio.id,
            "track": track.value,
            "seed": spec.seed,
            "config": config,
            "config_hash": sha256_json(config)[:12],
            "n_frames": n_frames,
            "provenance": run_provenance,
        },
        new_results,
    )
    for outcome in outcomes:
        if outcome.cached:
            stored = store.result(run_id, outcome.spec.variant)
            outcome.value = MetricValue(aggregate=stored["value"], per_frame=stored["per_frame"], extras=stored["extras"])
    video = render_dir / VIDEO
    result = RunResult(
        run_id=run_id, spec=spec, outcomes=outcomes, provenance=run_provenance, n_frames=n_frames,
        video=video if video.is_file() else None,
    )
    reference_metrics = tuple(
        o.spec.variant for o in outcomes if o.spec.kind is not MetricKind.FULL_REFERENCE or o.spec.ground_truth_row
    )
    if spec.reference and reference_metrics and method_spec.id != GROUND_TRUTH:
        reference_spec = RunSpec(
            method=GROUND_TRUTH, subject=spec.subject, track=track, metrics=reference_metrics,
            metric_options=spec.metric_options, reference=False,
        )
        result.reference = run(reference_spec, store, progress)
    return result
