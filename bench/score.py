"""`bench score`: score any prediction against any ground truth (videos, frame folders or single images),
outside the run pipeline: nothing is trained, rendered or stored, frames are decoded once for all metrics."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import home, media, provenance, registry
from bench.contracts import SAMPLES_PER_FRAME, BenchError, DrivingAudio, MetricInput, MetricOutcome, align_frames
from bench.hashing import sha256_file
from bench.pipeline import compute_metric, not_applicable


@dataclass
class ScoreReport:
    outcomes: list[MetricOutcome]
    inputs: dict[str, Any]
    alignment: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=provenance.snapshot)


def _driving_audio(source: Path, folder: Path, has_gt: bool) -> DrivingAudio:
    samples = media.decode_audio(source)
    path = folder / "audio.wav"
    media.write_wav(path, samples)
    return DrivingAudio(
        id=source.name, path=path, n_frames=len(samples) // SAMPLES_PER_FRAME, sha256=sha256_file(path),
        has_ground_truth=has_gt,
    )


def _has_audio(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() not in media.IMAGE_SUFFIXES and media.video_info(path)["has_audio"]


def score(
    pred: Path, gt: Path | None = None, audio: Path | None = None, metrics: list[str] | None = None,
    options: dict[str, Any] | None = None,
) -> ScoreReport:
    """Score ``pred`` (against ``gt`` when given); the audio defaults to the prediction's own soundtrack."""
    specs = registry.select_metrics(metrics)
    scratch = home.bench_home() / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    audio_source = audio or (pred if _has_audio(pred) else None)
    inputs = {
        str(label): {"path": str(path), "sha256": sha256_file(path) if path.is_file() else "folder"}
        for label, path in (("pred", pred), ("gt", gt), ("audio", audio_source))
        if path is not None
    }
    with tempfile.TemporaryDirectory(dir=scratch) as folder:
        workdir = Path(folder)
        media.write_frames(workdir / "pred", media.iter_frames(pred))
        predicted = media.open_frames(workdir / "pred")
        reference = None
        if gt is not None:
            media.write_frames(workdir / "gt", media.iter_frames(gt))
            reference = media.open_frames(workdir / "gt")
        predicted, reference, alignment = align_frames(predicted, reference)
        driving = _driving_audio(audio_source, workdir, gt is not None) if audio_source else None
        data = MetricInput(pred=predicted, gt=reference, audio=driving, options=options or {})
        outcomes = []
        for spec in specs:
            outcome = MetricOutcome(spec=spec, unavailable=not_applicable(spec, data))
            if not outcome.unavailable:
                try:
                    outcome.value = compute_metric(spec, data)
                except BenchError as error:
                    outcome.unavailable = str(error)
            outcomes.append(outcome)
        del predicted, reference, data
    return ScoreReport(outcomes=outcomes, inputs=inputs, alignment=alignment)
