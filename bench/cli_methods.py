"""``bench train-ave`` and ``bench speed``: SyncTalk's audio-visual encoder trainer and speed measurement."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def cmd_train_ave(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from bench import home
    from bench.contracts import BenchError
    from bench.datasets.preprocess.prepared import prepare
    from bench.hashing import sha256_json
    from bench.methods.engine.ave import AveClip, train_ave
    from bench.methods.engine.training import save_checkpoint

    subjects = [s.strip() for s in args.subjects.split(",") if s.strip()]
    if not subjects:
        raise BenchError("bench train-ave --subjects a,b,...: name at least one subject")
    clips, sources = [], {}
    for subject in subjects:
        prepared = prepare(subject, steps=["landmarks"], progress=not args.no_progress)
        frames = prepared.frames()
        clips.append(AveClip(frames, np.asarray(prepared.array("landmarks", "lms68.npy")),
                             prepared.audio()))
        sources[subject] = prepared.sha256
    settings = {"subjects": sources, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
                "face_size": args.face_size, "face_width": args.face_width, "recon_weight": args.recon_weight,
                "negatives": args.negatives, "group_size": args.group_size}
    out = Path(args.out) if args.out else home.bench_home() / "ave" / f"ave-{sha256_json(settings)[:12]}.pth"
    if out.exists() and not args.overwrite:
        raise BenchError(f"{out} exists; pass --overwrite or another --out (results are never silently replaced)")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    options = {key: value for key, value in settings.items() if key != "subjects"}
    state, report = train_ave(clips, device=device, progress=not args.no_progress, **options)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, state)
    summary = {key: value for key, value in report.items() if key not in ("losses", "curve")}
    out.with_suffix(".json").write_text(json.dumps({"settings": settings, "device": device, "report": report}, indent=1, default=str))
    print(json.dumps(summary, indent=1, default=str))
    print(f"audio-visual encoder: {out}  (use it with --config ave_path={out})")
    return 0


def cmd_speed(args: argparse.Namespace) -> int:
    from bench.methods.engine.speed import measure

    config: dict[str, Any] = {"preset": args.preset}
    report = measure(args.method, args.subject, config, frames=args.frames, train_steps=args.train_steps, progress=not args.no_progress)
    print(json.dumps(report, indent=1, default=str))
    return 0


def cmd_ablate(args: argparse.Namespace) -> int:
    from bench import ablate, configs
    from bench.cli_common import parse_pairs, print_rows, store_of, uncertainty_of, write_or_print
    from bench.contracts import Track
    from bench.datasets.preprocess.core import parse_step_options
    from bench.reports import leaderboard, tables

    config = parse_pairs(args.config)
    if args.preset:
        config["preset"] = args.preset
    metrics = tuple(args.metrics.split(",")) if args.metrics else None
    base = ablate.base_spec(args.method, args.subject, config, args.seed, metrics, parse_step_options(args.prepare))
    spec = configs.choose_method(args.method).spec
    track = Track(args.track) if args.track else ablate.ablation_track(spec)
    rows = ablate.ablation_rows(spec, track)
    store = store_of(args)
    if args.dry_run:
        ablate.plan(rows, base, store)
        lines = [("row", "runs", "track", "status")]
        for row in rows:
            status = f"unavailable: {row.unavailable}" if row.unavailable else ", ".join(f"{k} {v}" for k, v in row.plan.items())
            lines.append((row.label, row.method, row.track.value, status))
        print_rows(lines)
        return 0
    ablate.run(rows, base, store, progress=not args.no_progress)
    entries = [
        tables.AblationEntry(
            row.label, row.method, row.track.value, row.source, row.result.run_id if row.result else None,
            {o.spec.variant: (o.value.aggregate, o.spec.higher_is_better) for o in (row.result.outcomes if row.result else [])
             if o.value is not None},
            row.unavailable,
        )
        for row in rows
    ]
    preset = next((row.result.provenance["config_resolution"]["preset"] for row in rows if row.result), None)
    title = f"Table 4: ablation of {spec.id} on {args.subject}, self-driven test split" + (f", preset {preset}" if preset else "")
    paper_rows = [result for result in spec.paper_results if result.table == "table4"]
    table = tables.ablation(title, entries, paper_rows, store, uncertainty_of(args))
    write_or_print(leaderboard.render_table([table], args.format), args.out)
    return 0


def add_method_commands(commands: Any, progress: argparse.ArgumentParser, store: argparse.ArgumentParser) -> None:
    from bench.cli_common import uncertainty_parser

    ablation = commands.add_parser(
        "ablate", parents=[store, progress, uncertainty_parser()],
        help="run a method's registered variants on a subject and write the paper's Table 4 layout",
    )
    ablation.add_argument("--method", required=True)
    ablation.add_argument("--subject", required=True)
    ablation.add_argument("--preset", help="training preset for every row (same as --config preset=NAME)")
    ablation.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="method option for every row")
    ablation.add_argument("--prepare", action="append", default=[], metavar="STEP.OPTION=VALUE",
                          help="preparation option (as bench prepare --set), e.g. capture.openface_csv=PATH")
    ablation.add_argument("--metrics", help="comma-separated metric ids or variants; default: all")
    ablation.add_argument("--track", choices=("head", "portrait"), help="default: the track of the paper's full-method row")
    ablation.add_argument("--seed", type=int, default=0)
    ablation.add_argument("--format", choices=("md", "latex", "csv", "html"), default="md")
    ablation.add_argument("--out", help="write the table here instead of printing it")
    ablation.add_argument("--dry-run", action="store_true", help="show what would run, what is cached, what is unavailable")
    ablation.set_defaults(func=cmd_ablate)

    ave = commands.add_parser("train-ave", parents=[progress], help="train SyncTalk's audio-visual encoder on prepared subjects")
    ave.add_argument("--subjects", required=True, help="comma-separated subject ids (prepared up to landmarks on demand)")
    ave.add_argument("--steps", type=int, default=2000)
    ave.add_argument("--batch-size", type=int, default=32)
    ave.add_argument("--lr", type=float, default=1e-4)
    ave.add_argument("--seed", type=int, default=0)
    ave.add_argument("--face-size", type=int, default=64, help="square crop side; the lower half is used (Wav2Lip: 96)")
    ave.add_argument("--face-width", type=int, default=16, help="face tower base width (Wav2Lip: 32)")
    ave.add_argument("--recon-weight", type=float, default=1.0, help="weight of the reconstruction loss (Eq. 3)")
    ave.add_argument("--negatives", choices=("sampled", "all"), default="sampled",
                     help="sampled: Wav2Lip's one shifted partner per window; all: every same-clip pair >= 5 frames apart")
    ave.add_argument("--group-size", type=int, default=16, help="windows drawn from one clip at a time (negatives=all)")
    ave.add_argument("--out", help="where to write the encoder (.pth, SyncTalk's released layout)")
    ave.add_argument("--overwrite", action="store_true")
    ave.set_defaults(func=cmd_train_ave)

    speed = commands.add_parser("speed", parents=[progress], help="NeRF method speed: train it/s, seconds per 512² frame, FPS, memory")
    speed.add_argument("--method", default="synctalk", help="a method built on the NeRF engine (METHOD or METHOD:VARIANT)")
    speed.add_argument("--subject", required=True)
    speed.add_argument("--preset", default="smoke")
    speed.add_argument("--frames", type=int, default=10, help="frames rendered for the timing (after one warm-up frame)")
    speed.add_argument("--train-steps", type=int, default=30, help="training steps timed (after warm-up)")
    speed.set_defaults(func=cmd_speed)
