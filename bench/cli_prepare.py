"""``bench prepare`` and ``bench inspect``: subject preparation from the command line."""

from __future__ import annotations

import argparse
from typing import Any


def cmd_prepare(args: argparse.Namespace) -> int:
    from bench.datasets.preprocess.core import StepOutcome, parse_step_options
    from bench.datasets.preprocess.prepared import prepare

    done: list[StepOutcome] = []

    def report(outcome: StepOutcome) -> None:
        done.append(outcome)
        state = "cached" if outcome.reused else "done"
        print(f"  {outcome.name:<11} {state:<7} {outcome.seconds:8.1f} s  {outcome.folder}", flush=True)

    steps = [s.strip() for s in args.steps.split(",") if s.strip()] if args.steps else None
    print(f"bench prepare {args.target}: step, state, seconds when produced, folder")
    prepared = prepare(
        args.target,
        name=args.name,
        steps=steps,
        force=args.force,
        options=parse_step_options(args.set),
        progress=not args.no_progress,
        on_step=report,
    )
    ran = [o for o in done if not o.reused]
    print(
        f"prepared {prepared.id}: {prepared.n_frames} frames; {len(ran)} steps ran in "
        f"{sum(o.seconds for o in ran):.1f} s, {len(done) - len(ran)} reused; `bench inspect {prepared.id}` shows it"
    )
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    from pathlib import Path

    from bench.datasets.preprocess.inspect import inspect

    report: dict[str, Any] = inspect(args.subject, Path(args.out) if args.out else None)
    for line in report["lines"]:
        print(line)
    for picture in report["pictures"]:
        print(f"  picture: {picture}")
    return 0


def add_prepare_commands(commands: Any, progress: argparse.ArgumentParser) -> None:
    prepare = commands.add_parser(
        "prepare", parents=[progress], help="prepare a subject (registered id or video path) for training and evaluation"
    )
    prepare.add_argument("target", help="registered subject id (bench list subjects) or a video file")
    prepare.add_argument("--name", help="subject id for a video file (default: the file name)")
    prepare.add_argument("--steps", help="comma-separated steps to (re)do with whatever they need; default: all")
    prepare.add_argument("--force", action="store_true", help="redo the chosen steps (and what depends on them)")
    prepare.add_argument("--set", action="append", default=[], metavar="STEP.OPTION=VALUE",
                         help="step option, e.g. landmarks.backend68=dlib (repeatable)")
    prepare.set_defaults(func=cmd_prepare)

    inspect = commands.add_parser("inspect", help="summary and pictures of a prepared subject")
    inspect.add_argument("subject")
    inspect.add_argument("--out", help="folder for the PNG pictures (default: $BENCH_HOME/inspect/<subject>)")
    inspect.set_defaults(func=cmd_inspect)
