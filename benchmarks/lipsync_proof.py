"""Is lip sync learned, not memorised? One trained model, its test split driven by the true audio and by controls.

    BENCH_ASSET_MIRROR=../shared/assets python benchmarks/lipsync_proof.py --method synctalk --subject cnn \
        --preset cpu [--config audio_encoder=whisper] [--other-audio eng] [--out DIR] [--json F]

The model is trained as ``bench run`` trains it (a cached stage). The test split is then rendered three times with
everything but the audio unchanged (poses, expressions, backgrounds): with the clip's own audio, with that audio
shifted by 1 s, and with another speaker's speech (a registered OOD audio, ``--other-audio``) in place of the test
segment. Each render is scored against the GT frames and its driving audio: PSNR, dlib LMD, the mouth-opening
correlation with GT (``lipsync@mouth-corr-gt``, lag of the best cross-correlation in brackets), THEval's lip-sync
score and bench's Whisper offset-confidence; the GT row scores the real frames with the true audio. Before the
renders, ``engine.probe.audio_sensitivity`` reports how much the image changes inside and outside the lip box when
a frame's audio code is swapped. Prints a markdown table; ``--out`` keeps the renders as MP4 with their audio.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

METRICS = ("psnr@frame-mean", "lmd@dlib-mouth20-centred-px", "lipsync@mouth-corr-gt", "lipsync@theval-sync",
           "lipsync@offset-conf-whisper")  # fmt: skip


def score(frames: np.ndarray, gt: np.ndarray, samples: np.ndarray, folder: Path, label: str) -> dict[str, str]:
    from bench import media, registry
    from bench.contracts import DrivingAudio, MetricInput
    from bench.hashing import sha256_file
    from bench.pipeline import compute_metric

    wav = folder / f"{label}.wav"
    media.write_wav(wav, samples)
    audio = DrivingAudio(id=label, path=wav, n_frames=len(frames), sha256=sha256_file(wav), has_ground_truth=True)
    data = MetricInput(pred=frames, gt=gt, audio=audio)
    cells = {}
    for variant in METRICS:
        value = compute_metric(registry.metrics.get(variant), data)
        cell = f"{value.aggregate:.3f}"
        if "lag_frames" in value.extras:
            cell += f" (lag {value.extras['lag_frames']:+d}, spread {value.extras['spread_ratio']:.2f})"
        cells[variant] = cell
    return cells


def main() -> int:
    from bench import cli_common, media, pipeline, registry
    from bench.contracts import SAMPLES_PER_FRAME, RunSpec, Track
    from bench.datasets.prepare import prepare_audio
    from bench.methods.engine import probe
    from bench.methods.engine.method import prepared_subject

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="synctalk")
    parser.add_argument("--subject", default="cnn")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--track", default="head", choices=("head", "portrait"))
    parser.add_argument("--other-audio", default="eng", help="registered OOD audio for the other-speaker control")
    parser.add_argument("--out", type=Path, help="keep the renders here (MP4 with their audio)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    config = {**cli_common.parse_pairs(args.config), "preset": args.preset}
    trained = pipeline.train(RunSpec(method=args.method, subject=args.subject, config=config))
    method, subject, checkpoint = trained.method, trained.subject, trained.checkpoint
    prepared = prepared_subject(subject)
    test = prepared.split.test
    gt = np.asarray(prepared.frames()[test.start : test.stop])
    samples = prepared.audio()
    other = prepare_audio(registry.audio.get(args.other_audio)).samples()
    meta = json.loads((checkpoint / "meta.json").read_text())
    print(f"{args.method} on {args.subject}, preset {args.preset}, audio front end {meta['audio_encoder']}, "
          f"{meta['steps']} steps in {meta['train_seconds']} s ({meta['device']}, {platform.processor() or platform.machine()})")
    sensitivity = probe.audio_sensitivity(method, subject, checkpoint)
    print(f"audio sensitivity (0-255, median over {sensitivity['frames']} test frames at {sensitivity['render_side']}²): "
          f"lip box max {sensitivity['lip_box_max']}, mean {sensitivity['lip_box_mean']}; rest of the lower face max "
          f"{sensitivity['jaw_max']}, mean {sensitivity['jaw_mean']}; elsewhere max {sensitivity['elsewhere_max']}, "
          f"mean {sensitivity['elsewhere_mean']}", flush=True)
    drives = {
        "true audio": samples,
        "shifted by 1 s": probe.control_audio(samples, test, "shifted"),
        f"other speaker ({args.other_audio})": probe.control_audio(samples, test, "other-speaker", other),
    }
    segment = slice(test.start * SAMPLES_PER_FRAME, test.stop * SAMPLES_PER_FRAME)
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        rows["GT"] = score(gt, gt, samples[segment], Path(scratch), "gt")
        for label, drive in drives.items():
            started = time.perf_counter()
            frames = np.stack(list(method.render_test_split(subject, checkpoint, Track(args.track), drive)))
            seconds = time.perf_counter() - started
            if args.out:
                args.out.mkdir(parents=True, exist_ok=True)
                media.write_video(args.out / f"{label.split()[0]}.mp4", frames, audio=drive[segment])
            rows[label] = score(frames, gt, drive[segment], Path(scratch), label.split()[0])
            print(f"rendered and scored {label}: {len(frames)} frames, {seconds / len(frames):.2f} s/frame", flush=True)
    print("\n| driving audio | " + " | ".join(METRICS) + " |")
    print("|---|" + "---|" * len(METRICS))
    for label, cells in rows.items():
        print(f"| {label} | " + " | ".join(cells[m] for m in METRICS) + " |")
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "sensitivity": sensitivity, "rows": rows}, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
