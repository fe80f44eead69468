"""The run pipeline: prepare -> train -> render -> evaluate -> record.

Every stage's output is cached under a key hashed from its inputs (see ``bench.stages``), so re-running reuses
finished work and an interrupted run resumes from the last finished stage. The run id is the render stage's key:
it covers the method (and its version), config, seed, subject frames, driving audio and track.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from bench import assets, configs, home, media, provenance, registry, stages
from bench.configs import MethodChoice, ResolvedConfig
from bench.contracts import (
    GROUND_TRUTH,
    SELF_AUDIO,
    BenchError,
    DrivingAudio,
    Method,
    MethodSpec,
    MetricInput,
    MetricKind,
    MetricOutcome,
    MetricSpec,
    MetricValue,
    RunResult,
    RunSpec,
    Subject,
    Track,
    align_frames,
)
from bench.datasets.prepare import driving_audio, driving_audio_identity, prepare_subject
from bench.hashing import options_fingerprint, sha256_file, sha256_json
from bench.store import ResultsStore

VIDEO = "video.mp4"  # in every render stage folder: the frames as H.264 with the driving audio muxed in


def _renders_fingerprint(path: Path) -> str:
    """sha256 of a render file, or of a frame folder's (name, sha256) list."""
    if path.is_dir():
        return sha256_json(sorted((p.name, sha256_file(p)) for p in path.iterdir() if p.is_file()))
    return sha256_file(path)


def _with_renders(spec: MethodSpec, config: dict[str, Any]) -> dict[str, Any]:
    """For methods that score external renders: the resolved path and the file's sha256 in the config (its key)."""
    if not (spec.capabilities.external_renders and config.get("renders")):
        return config
    renders = Path(config["renders"]).expanduser().resolve()
    if not renders.exists():
        raise BenchError(f"{renders}: no such file or folder (--renders)")
    return {**config, "renders": str(renders), "renders_sha256": _renders_fingerprint(renders)}


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
    return configs.missing(spec.requires, spec.assets)


def resolve_assets(spec: MetricSpec) -> dict[str, Path]:
    """Verified paths of the metric's assets; raises AssetUnavailable naming the first missing one."""
    if reason := configs.missing(spec.requires, ()):
        raise BenchError(f"metric {spec.variant} {reason}")
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
    choice: MethodChoice
    subject: Subject
    config: ResolvedConfig
    checkpoint: Path | None  # None for methods that learn nothing
    inputs: dict[str, Any]  # the train stage's key inputs


def _read_steps(spec: MethodSpec) -> list[str]:
    """The `bench prepare` steps the method reads and every step they read, in running order."""
    from bench.datasets import preprocess  # preparation steps load only for the methods that read them
    from bench.datasets.preprocess.core import closure

    return closure(preprocess.steps(), spec.prepare_steps)


def prepare_for(spec: MethodSpec, subject_id: str, options: Mapping[str, Mapping[str, Any]], progress: bool) -> Subject:
    """The subject with exactly the preparation steps the method reads (and what they read), each by its stage key."""
    subject = prepare_subject(subject_id, progress)
    if not spec.prepare_steps:
        if options:
            raise BenchError(f"method {spec.id!r} reads no `bench prepare` steps, so preparation options do not apply")
        return subject
    from bench.datasets.preprocess.prepared import prepare

    prepared = prepare(subject_id, steps=spec.prepare_steps, options=options, progress=progress)
    return replace(subject, steps={name: prepared.folders[name] for name in _read_steps(spec)})


def _prepared_or_none(spec: MethodSpec, subject_id: str, options: Mapping[str, Mapping[str, Any]]) -> Subject | None:
    """``prepare_for`` when every stage it needs is finished, else None; computes nothing."""
    subject = prepare_subject(subject_id, progress=False, run=False)
    if subject is None or not spec.prepare_steps:
        return subject
    from bench.datasets import preprocess
    from bench.datasets.preprocess.core import STAGE_PREFIX, plan_steps
    from bench.datasets.preprocess.prepared import resolve_source

    read = _read_steps(spec)
    planned = plan_steps(resolve_source(subject_id), preprocess.steps(), read, options)
    folders = {name: stages.stage_path(STAGE_PREFIX + name, key) for name, (key, _) in planned.items()}
    if not all(stages.is_done(STAGE_PREFIX + name, folder.name) for name, folder in folders.items()):
        return None
    return replace(subject, steps=folders)


def _train_inputs(choice: MethodChoice, config: ResolvedConfig, subject: Subject, seed: int) -> dict[str, Any]:
    return {
        "method": choice.spec.id,
        "method_version": choice.spec.version,
        "config": config.values,
        "seed": seed,
        "subject": subject.key,
        "prepared": {name: folder.name for name, folder in subject.steps.items()},
    }


def resolve_run(spec: RunSpec) -> tuple[MethodChoice, ResolvedConfig]:
    """The method (and variant) of a run and its resolved config; ``Unavailable`` when it cannot run here."""
    choice = configs.choose_method(spec.method)
    configs.require(choice, spec.prepare_options)
    resolved = configs.resolve(choice, spec.config)
    return choice, replace(resolved, values=_with_renders(choice.spec, resolved.values))


def train(spec: RunSpec, progress: bool = True) -> Trained:
    """Resolve the config, prepare what the method reads and train it (a cached stage): the first half of a run."""
    choice, resolved = resolve_run(spec)
    subject = prepare_for(choice.spec, spec.subject, spec.prepare_options, progress)
    method: Method = registry.load_object(choice.spec.impl)(choice.spec, resolved.values, spec.seed)
    method.progress = progress
    inputs = _train_inputs(choice, resolved, subject, spec.seed)
    checkpoint = None
    if choice.spec.capabilities.needs_training:
        checkpoint, _ = stages.ensure("train", inputs, lambda out: method.train(subject, out))
    return Trained(method, choice, subject, resolved, checkpoint, inputs)


CACHED, TO_RUN = "cached", "to run"


def _run_identity(render_key: str, metric_options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(run id, fingerprint of the metric options): a run is its renders plus any metric options (e.g. user-supplied
    OpenFace CSVs) that change its scores."""
    options = options_fingerprint(metric_options)
    return (render_key if not options else sha256_json([render_key, options])[:24]), options


def plan(spec: RunSpec, store: ResultsStore | None = None) -> dict[str, str]:
    """What ``run(spec)`` would do, computing keys only: "cached" or "to run" for the stages prepare, train and
    render, and for the run's metrics ("metrics": how many are recorded). Raises what ``run`` would raise first."""
    choice, resolved = resolve_run(spec)
    _check_runnable(choice, configs.run_track(choice, Track(spec.track)), spec.audio)
    subject = _prepared_or_none(choice.spec, spec.subject, spec.prepare_options)
    if subject is None:
        return {"prepare": TO_RUN, "train": TO_RUN, "render": TO_RUN, "metrics": TO_RUN}
    inputs = _train_inputs(choice, resolved, subject, spec.seed)
    trained = not choice.spec.capabilities.needs_training or stages.is_done("train", stages.stage_key("train", inputs))
    track = configs.run_track(choice, Track(spec.track))
    audio_id, audio_sha256 = driving_audio_identity(subject, spec.audio)
    render_inputs = {**inputs, "audio": audio_id, "audio_sha256": audio_sha256, "track": track.value}
    render_key = stages.stage_key("render", render_inputs)
    rendered = trained and stages.is_done("render", render_key)
    wanted = {m.variant for m in registry.select_metrics(spec.metrics)}
    run_id, _ = _run_identity(render_key, spec.metric_options)
    store = store or ResultsStore(home.results_store_path())
    recorded = len(wanted & store.recorded_variants(run_id)) if rendered else 0
    return {
        "prepare": CACHED, "train": CACHED if trained else TO_RUN, "render": CACHED if rendered else TO_RUN,
        "metrics": f"{recorded}/{len(wanted)} recorded",
    }


def _check_runnable(choice: MethodChoice, track: Track, audio_id: str) -> None:
    """Refuse, before any work, a track or an audio the method cannot do."""
    capabilities = choice.spec.capabilities
    if track not in capabilities.tracks:
        tracks = ", ".join(t.value for t in capabilities.tracks)
        raise BenchError(f"method {choice.name!r} has no {track.value} track (it has: {tracks})")
    if audio_id != SELF_AUDIO:
        if not capabilities.ood_audio:
            raise BenchError(f"method {choice.name!r} cannot be driven by OOD audio {audio_id!r}")
        registry.audio.get(audio_id)  # an unknown audio id fails now, not after training


def _metric_result(spec: MetricSpec, value: MetricValue, folder: Path, inputs: dict, alignment: dict) -> dict[str, Any]:
    """A computed metric as the store records it, with what produced it."""
    return {
        "variant": spec.variant,
        "metric": spec.id,
        "value": value.aggregate,
        "higher_is_better": spec.higher_is_better,
        "kind": spec.kind.value,
        "extras": {**value.extras, "alignment": alignment},
        "per_frame": value.per_frame,
        "provenance": {
            **provenance.snapshot(),
            "requires": provenance.module_versions(spec.requires),
            "evaluate_stage": folder.name,
            "seconds": stages.record("evaluate", folder.name)["seconds"],
            "assets": inputs["assets"],
        },
    }


def _score(
    run: dict[str, Any], metric_specs: list[MetricSpec], data: MetricInput, gt_key: str | None, alignment: dict,
    store: ResultsStore, progress: bool,
) -> list[MetricOutcome]:
    """Each metric once (a cached stage), its result stored as soon as it is computed; recorded ones are read back."""
    run_id = run["run_id"]
    recorded = store.recorded_variants(run_id)
    outcomes: list[MetricOutcome] = []
    for metric_spec in tqdm(metric_specs, desc="evaluate", disable=not progress, unit="metric"):
        outcome = MetricOutcome(spec=metric_spec)
        outcomes.append(outcome)
        if metric_spec.variant in recorded:
            stored = store.result(run_id, metric_spec.variant)
            outcome.cached = True
            outcome.value = MetricValue(aggregate=stored["value"], per_frame=stored["per_frame"], extras=stored["extras"])
            continue
        outcome.unavailable = not_applicable(metric_spec, data)
        if outcome.unavailable:
            continue
        inputs = {
            "run": run_id,
            "variant": metric_spec.variant,
            "gt": gt_key,
            "scored_frames": alignment["scored_frames"],
            "options": run["provenance"]["metric_options"],
            "assets": {name: assets.get(name).sha256 for name in metric_spec.assets},
        }
        try:
            folder, _ = stages.ensure("evaluate", inputs, lambda out: _evaluate(metric_spec, data, out))
        except BenchError as error:  # missing weights, unusable input: this metric only
            outcome.unavailable = str(error)
            continue
        outcome.value = _load_value(folder)
        store.record(run, [_metric_result(metric_spec, outcome.value, folder, inputs, alignment)])
    return outcomes


def _reference_run(spec: RunSpec, track: Track, outcomes: list[MetricOutcome], store: ResultsStore, progress: bool) -> RunResult | None:
    """Ground truth's own scores on the no-reference and audio-visual metrics of the run (stored beside it)."""
    variants = tuple(
        o.spec.variant for o in outcomes if o.spec.kind is not MetricKind.FULL_REFERENCE or o.spec.ground_truth_row
    )
    if not (spec.reference and variants) or spec.method == GROUND_TRUTH:
        return None
    reference = RunSpec(
        method=GROUND_TRUTH, subject=spec.subject, track=track, metrics=variants, metric_options=spec.metric_options,
        reference=False,
    )
    return run(reference, store, progress)


def run(spec: RunSpec, store: ResultsStore | None = None, progress: bool = True) -> RunResult:
    """Run ``spec`` end to end and record its results; finished stages and recorded results are reused.

    In order: check the method can do the track and audio; resolve its config and train (``train``); render the
    driving audio (a cached stage); align the render with the ground truth; score each metric (``_score``); score
    the ground truth on the same no-reference metrics (``_reference_run``)."""
    store = store or ResultsStore(home.results_store_path())
    choice = configs.choose_method(spec.method)
    track = configs.run_track(choice, Track(spec.track))
    _check_runnable(choice, track, spec.audio)
    metric_specs = registry.select_metrics(spec.metrics)

    trained = train(spec, progress)
    method, subject, checkpoint = trained.method, trained.subject, trained.checkpoint
    audio = driving_audio(subject, spec.audio)
    render_inputs = {**trained.inputs, "audio": audio.id, "audio_sha256": audio.sha256, "track": track.value}
    render_dir, _ = stages.ensure(
        "render", render_inputs, lambda out: _render(method, subject, checkpoint, audio, track, out, progress)
    )
    run_id, options = _run_identity(render_dir.name, spec.metric_options)

    gt = subject.test_frames() if audio.has_ground_truth else None
    pred, gt, alignment = align_frames(media.open_frames(render_dir / "frames"), gt)
    data = MetricInput(pred=pred, gt=gt, audio=audio, options=spec.metric_options)
    run_provenance = {
        **provenance.snapshot(),
        "decoder": media.decoder_description(),
        "method_variant": choice.variant.name if choice.variant else None,
        "config_resolution": trained.config.record(),
        "subject_key": subject.key,
        "subject_sources": dict(subject.sources),
        "prepared_steps": trained.inputs["prepared"],
        "audio_sha256": audio.sha256,
        "method_version": choice.spec.version,
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
    config = trained.config.values
    record = {
        "run_id": run_id, "method": choice.spec.id, "subject": subject.id, "audio": audio.id, "track": track.value,
        "seed": spec.seed, "config": config, "config_hash": sha256_json(config)[:12], "n_frames": len(pred),
        "provenance": run_provenance,
    }
    store.record(record, [])
    gt_key = subject.key if gt is not None else None
    outcomes = _score(record, metric_specs, data, gt_key, alignment, store, progress)
    video = render_dir / VIDEO
    result = RunResult(
        run_id=run_id, spec=spec, outcomes=outcomes, provenance=run_provenance, n_frames=len(pred),
        video=video if video.is_file() else None, track=track,
    )
    result.reference = _reference_run(spec, track, outcomes, store, progress)
    return result
