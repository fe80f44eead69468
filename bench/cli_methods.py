"""``bench train-ave`` and ``bench speed``: SyncTalk's audio-visual encoder trainer and speed measurement."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def cmd_train_ave(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from bench import home, media
    from bench.contracts import BenchError
    from bench.datasets.preprocess.prepared import prepare
    from bench.hashing import sha256_json
    from bench.methods.synctalk.ave import AveClip, train_ave
    from bench.methods.synctalk.training import save_checkpoint

    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    if not subjects:
        raise BenchError("bench train-ave --subjects a,b,...: name at least one subject")
    clips, sources = [], {}
    for subject in subjects:
        prepared = prepare(subject, steps=["landmarks"], progress=not args.no_progress)
        frames = prepared.frames()
        clips.append(AveClip(frames, np.asarray(prepared.array("landmarks", "lms68.npy")),
                             media.read_wav(prepared.folder("ingest") / "audio.wav")))
        sources[subject] = prepared.sha256
    settings = {"subjects": sources, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed}
    out = Path(args.out) if args.out else home.bench_home() / "ave" / f"ave-{sha256_json(settings)[:12]}.pth"
    if out.exists() and not args.overwrite:
        raise BenchError(f"{out} exists; pass --overwrite or another --out (results are never silently replaced)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    state, report = train_ave(clips, steps=args.steps, batch_size=args.batch_size, lr=args.lr, seed=args.seed,
                              device=device, progress=not args.no_progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, state)
    summary = {key: value for key, value in report.items() if key != "losses"}
    out.with_suffix(".json").write_text(json.dumps({"settings": settings, "device": device, "report": report}, indent=1, default=str))
    print(json.dumps(summary, indent=1, default=str))
    print(f"audio-visual encoder: {out}  (use it with --config ave_path={out})")
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    from bench.methods.synctalk.speed import measure

    config: dict[str, Any] = {"preset": args.preset}
    report = measure(args.subject, config, frames=args.frames, train_steps=args.train_steps, progress=not args.no_progress)
    print(json.dumps(report, indent=1, default=str))
    return 0


def add_method_commands(commands: Any, progress: argparse.ArgumentParser) -> None:
    ave = commands.add_parser("train-ave", parents=[progress], help="train SyncTalk's audio-visual encoder on prepared subjects")
    ave.add_argument("--subjects", required=True, help="comma-separated subject ids (prepared up to landmarks on demand)")
    ave.add_argument("--steps", type=int, default=2000)
    ave.add_argument("--batch-size", type=int, default=32)
    ave.add_argument("--lr", type=float, default=1e-4)
    ave.add_argument("--seed", type=int, default=0)
    ave.add_argument("--out", help="where to write the encoder (.pth, SyncTalk's released layout)")
    ave.add_argument("--overwrite", action="store_true")
    ave.set_defaults(func=cmd_train_ave)

    speed = commands.add_parser("speed", parents=[progress], help="SyncTalk speed: train it/s, seconds per 512² frame, FPS, memory")
    speed.add_argument("--method", default="synctalk", choices=("synctalk",))
    speed.add_argument("--subject", required=True)
    speed.add_argument("--preset", default="smoke")
    speed.add_argument("--frames", type=int, default=10, help="frames rendered for the timing (after one warm-up frame)")
    speed.add_argument("--train-steps", type=int, default=30, help="training steps timed (after warm-up)")
    speed.set_defaults(func=cmd_speed)
