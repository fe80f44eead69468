"""Held-out sync accuracy of SyncTalk's audio-visual encoder trainer (``bench train-ave``) under the settings compared
when tuning it, one training run per row, on one CPU thread.

    BENCH_HOME=... BENCH_ASSET_MIRROR=../shared/assets python benchmarks/ave_accuracy.py [--rows default,wav2lip]

Each row trains ``train_ave`` from scratch (seed 0) and prints the sync accuracy (chance 0.5; definition in
methods/engine/ave.py) on every 9th training window (train) and on the held-aside last 10% of cnn's frames
(held-out), plus the pool of every clip's held-out windows where a row trains on several clips, the seconds and the
machine. Rows: Wav2Lip's recipe (sampled pairs, lr 1e-4, 96-px crops, width-32 tower: the former defaults), the
default (the same on 64-px crops and a width-16 tower), sampled pairs at lr 1e-3, all same-clip pairs at lr 1e-4
and at lr 1e-3 (with and without the reconstruction loss, and on more footage: the four 8 s HDTF subjects, then
also the six catalogued extra clips, 5-20 s, landmarks by dlib as the landmarks step finds them without FAN).
The held-out part is only ~7 s (174 windows): successive checkpoints of one run differ by up to ~0.06, so compare
curves (--eval-every 100), not single numbers. All rows take ~50 min on the 2-core reference machine, the wav2lip
row ~13 of them (1.5 s a step). The best held-out accuracy seen: ``--rows default --steps 2000 --eval-every 250``.
"""

from __future__ import annotations

import argparse
import os
import platform
from typing import Any

import numpy as np
import torch

from bench.methods.engine.ave import AveClip, train_ave

HDTF = ("hdtf_WDA_KatieHill_000", "hdtf_WDA_AlexandriaOcasioCortez_000", "hdtf_RD_Radio34_000", "hdtf_RD_Radio2_000")
EXTRA = ("videoretalking_face1", "videoretalking_face2", "videoretalking_face3", "videoretalking_face4",
         "videoretalking_face5", "mimictalk_german_20s")  # fmt: skip
WAV2LIP = {"face_size": 96, "face_width": 32}  # with the default sampled pairs and lr 1e-4: Wav2Lip's recipe
ALL = {"negatives": "all", "lr": 1e-3}
ROWS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "wav2lip": (("cnn",), {**WAV2LIP, "steps": 500}),  # 1.5 s a step on one thread: fewer steps
    "default": (("cnn",), {}),  # sampled pairs, lr 1e-4, 64-px crops, width-16 face tower
    "sampled-lr1e-3": (("cnn",), {"lr": 1e-3}),
    "all-lr1e-4": (("cnn",), {"negatives": "all"}),
    "all-lr1e-3": (("cnn",), ALL),
    "all-lr1e-3-no-recon": (("cnn",), {**ALL, "recon_weight": 0.0}),
    "all-lr1e-3-cnn+hdtf": (("cnn", *HDTF), ALL),
    "all-lr1e-3-cnn+hdtf+extra": (("cnn", *HDTF, *EXTRA), ALL),
}


def subject_clip(subject: str) -> AveClip:
    """A registered subject prepared up to landmarks, as ``bench train-ave`` loads it."""
    from bench.datasets.preprocess.prepared import prepare

    prepared = prepare(subject, steps=["landmarks"], progress=False)
    landmarks = np.asarray(prepared.array("landmarks", "lms68.npy"))
    return AveClip(prepared.frames(), landmarks, prepared.audio())


def extra_clip(asset: str) -> AveClip:
    """A catalogued clip that is no subject: 25 fps frames, 16 kHz audio, dlib 68 points (NaN where none found)."""
    from bench import assets, media
    from bench.datasets.preprocess.landmarks import DlibLandmarks68
    from bench.metrics.lmd import DLIB_PREDICTOR

    path = assets.fetch(asset)
    frames = np.stack(list(media.iter_video(path)))
    located = DlibLandmarks68(assets.fetch(DLIB_PREDICTOR), downscale=2).locate(frames)
    landmarks = np.stack([p if p is not None else np.full((68, 2), np.nan, np.float32) for p in located])
    return AveClip(frames, landmarks, media.decode_audio(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, from: {', '.join(ROWS)}")
    parser.add_argument("--steps", type=int, default=600, help="steps for rows that do not set their own")
    parser.add_argument("--eval-every", type=int, default=0, help="also print both accuracies every N steps")
    args = parser.parse_args()
    rows = [row.strip() for row in args.rows.split(",") if row.strip()]
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        parser.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    torch.set_num_threads(1)
    print(f"machine: {platform.platform()}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch {torch.__version__} on 1 thread")  # fmt: skip
    clips: dict[str, AveClip] = {}
    print(f"{'row':26} {'clips':>5} {'steps':>5} {'train':>6} {'held-out cnn':>12} {'held-out all':>12} {'seconds':>8}")
    for row in rows:
        names, options = ROWS[row]
        for name in names:
            if name not in clips:
                clips[name] = subject_clip(name) if name == "cnn" or name in HDTF else extra_clip(name)
        options = {"steps": args.steps, **options}
        _, report = train_ave([clips[name] for name in names], progress=False, eval_every=args.eval_every, **options)
        for point in report["curve"]:
            print(f"  {row} step {point['step']}: train {point['train_sync_accuracy']:.3f}, "
                  f"held-out {point['held_out_sync_accuracy']:.3f}")  # fmt: skip
        after = report["after"]
        pooled = f"{after['sync_accuracy']:12.3f}" if len(names) > 1 else f"{'':12}"
        print(f"{row:26} {len(names):5d} {options['steps']:5d} {report['train']['sync_accuracy']:6.3f} "
              f"{after['per_clip_sync_accuracy'][0]:12.3f} {pooled} {report['seconds']:8.0f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
