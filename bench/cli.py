"""The ``bench`` command. Parsing imports nothing heavy; each subcommand imports what it needs when it runs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.cli_common import parse_pairs, print_rows, store_of
from bench.cli_methods import add_method_commands
from bench.cli_prepare import add_prepare_commands
from bench.cli_reports import add_report_commands
from bench.contracts import GROUND_TRUTH, SELF_AUDIO, BenchError

DEMO_METHODS = (GROUND_TRUTH, "still-frame")


def cmd_list(args: argparse.Namespace) -> int:
    from bench import registry

    if args.what == "methods":
        print_rows(_method_rows())
        return 0
    specs = registry.ALL[args.what].all().values()
    rows: list[tuple[str, ...]]
    if args.what == "metrics":
        rows = [(s.variant, s.arrow, s.kind.value, ",".join(s.assets) or "-", s.description) for s in specs]
    elif args.what == "subjects":
        rows = [(s.id, s.video_asset or s.video_path or "(user supplies video)", s.description) for s in specs]
    else:
        rows = [(s.id, s.language or "?", s.description) for s in specs]
    print_rows(rows)
    return 0


def _method_rows() -> list[tuple[str, ...]]:
    """Each method, then each of its variants: what it does, its status and, where it cannot run here, why."""
    from bench import configs, registry

    rows = [("method", "training", "audio", "tracks", "status")]
    for spec in registry.methods.all().values():
        choice = configs.MethodChoice(spec)
        reason = configs.unavailable(choice)
        status = f"unavailable: {reason}" if reason else spec.status.value + (f" ({spec.status_note})" if spec.status_note else "")
        rows.append((spec.id, "train" if spec.capabilities.needs_training else "no training",
                     "ood" if spec.capabilities.ood_audio else "self audio only",
                     "/".join(t.value for t in spec.capabilities.tracks), f"{status}. {spec.description}"))
        for variant in spec.variants:
            variant_choice = configs.MethodChoice(spec, variant)
            reason = configs.unavailable(variant_choice)
            overrides = ", ".join(f"{k}={v}" for k, v in variant.config.items())
            what = "; ".join(part for part in (overrides, f"{variant.track.value} track" if variant.track else "") if part)
            paper_row = f"paper row: {variant.paper_row!r}" if variant.paper_row else "bench's row"
            rows.append((f"  {variant_choice.name}", "", "", "",
                         f"{'unavailable: ' + reason if reason else 'runs'}. {variant.label} ({what}; {paper_row})"))
    return rows


def cmd_run(args: argparse.Namespace) -> int:
    from bench import pipeline
    from bench.contracts import RunSpec, Track
    from bench.datasets.preprocess.core import parse_step_options

    config = parse_pairs(args.config)
    if args.renders:
        config["renders"] = args.renders
    if args.preset:
        config["preset"] = args.preset
    spec = RunSpec(
        method=args.method,
        subject=args.subject,
        audio=args.audio,
        track=Track(args.track),
        config=config,
        seed=args.seed,
        metrics=tuple(args.metrics.split(",")) if args.metrics else None,
        metric_options=parse_pairs(args.metric_option),
        prepare_options=parse_step_options(args.prepare),
    )
    result = pipeline.run(spec, store=store_of(args), progress=not args.no_progress)
    _report_run(result)
    return 0


def _report_run(result) -> None:
    from bench.reports.results import format_value

    spec = result.spec
    print(
        f"run {result.run_id[:8]}: {spec.method} on {spec.subject}, audio {spec.audio}, {result.track.value} track, "
        f"{result.n_frames} frames scored"
    )
    reference = {}
    if result.reference:
        reference = {o.spec.variant: o.value for o in result.reference.outcomes if o.value is not None}
    rows = [("metric", "", spec.method, "ground truth" if reference else "", "")]
    for outcome in result.outcomes:
        metric = outcome.spec
        gt = format_value(reference[metric.variant].aggregate) if metric.variant in reference else ""
        if outcome.value is not None:
            state = "cached" if outcome.cached else "new"
            rows.append((metric.variant, metric.arrow, format_value(outcome.value.aggregate), gt, state))
        else:
            rows.append((metric.variant, metric.arrow, "unavailable", gt, outcome.unavailable or ""))
    print_rows(rows)
    if result.video:
        print(f"video (with the driving audio): {result.video}")


def cmd_score(args: argparse.Namespace) -> int:
    from bench.reports.results import format_value, json_number
    from bench.score import score

    report = score(
        Path(args.pred), gt=Path(args.gt) if args.gt else None, audio=Path(args.audio) if args.audio else None,
        metrics=args.metrics.split(",") if args.metrics else None, options=parse_pairs(args.metric_option),
    )
    if args.format == "json":
        out = {
            "inputs": report.inputs,
            "alignment": report.alignment,
            "provenance": report.provenance,
            "metrics": [
                {
                    "variant": o.spec.variant, "metric": o.spec.id, "higher_is_better": o.spec.higher_is_better,
                    "kind": o.spec.kind.value, "unavailable": o.unavailable,
                    "value": json_number(o.value.aggregate) if o.value else None,
                    "extras": o.value.extras if o.value else None,
                    "per_frame": [json_number(v) for v in o.value.per_frame] if o.value and o.value.per_frame is not None else None,
                }
                for o in report.outcomes
            ],
        }
        print(json.dumps(out, indent=1, default=str, allow_nan=False))
        return 0
    print(f"scored {report.alignment['scored_frames']} frames ({report.alignment})")
    print_rows(
        [(o.spec.variant, o.spec.arrow, format_value(o.value.aggregate) if o.value else "unavailable", o.unavailable or "")
         for o in report.outcomes]
    )
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from bench import registry
    from bench.pipeline import missing_requirement

    rows = [("variant", "", "kind", "assets", "status")]
    for spec in registry.metrics.all().values():
        reason = missing_requirement(spec)
        rows.append((spec.variant, spec.arrow, spec.kind.value, ",".join(spec.assets) or "-",
                     f"unavailable: {reason}" if reason else "available"))
    print_rows(rows)
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    from bench.reports.results import FORMATS

    rows = store_of(args).query(subject=args.subject, method=args.method, audio=args.audio, track=args.track)
    print(FORMATS[args.format](rows))
    return 0


def cmd_assets(args: argparse.Namespace) -> int:
    from bench import assets

    if args.action == "list":
        rows = [
            (a.name, a.kind, f"{a.size / 1e6:.1f} MB" if a.size else "size ?", assets.locate(a.name), a.license)
            for a in assets.catalog().values()
        ]
        print_rows(rows)
    elif args.action == "fetch":
        if not args.names:
            raise BenchError("bench assets fetch NAME [NAME ...] (or 'all')")
        names = list(assets.catalog()) if args.names == ["all"] else args.names
        failed = 0
        for name in names:
            try:
                print(f"{name}: {assets.fetch(name)}")
            except assets.AssetUnavailable as error:
                print(f"{name}: {error}", file=sys.stderr)
                failed += 1
        return 1 if failed else 0
    else:
        report = assets.verify()
        print_rows([(name, state) for name, state in report.items()])
        return 1 if "corrupt" in report.values() else 0
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from bench import pipeline
    from bench.contracts import RunSpec
    from bench.reports.results import as_table

    store = store_of(args)
    run_ids = []
    for method in DEMO_METHODS:
        result = pipeline.run(RunSpec(method=method, subject=args.subject), store=store, progress=not args.no_progress)
        _report_run(result)
        run_ids.append(result.run_id)
    rows = [r for r in store.query(subject=args.subject) if r["run_id"] in run_ids]
    print(f"\nbench demo: reference methods on {args.subject} (test split), results in {store.path}\n")
    print(as_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bench", description="Benchmark and evaluation suite for speech-driven talking-head synthesis."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", help="results store (SQLite); default $BENCH_RESULTS or $BENCH_HOME/results.sqlite")
    progress = argparse.ArgumentParser(add_help=False)
    progress.add_argument("--no-progress", action="store_true", help="hide progress bars")

    listing = commands.add_parser("list", help="list registered methods, metrics, subjects or audio")
    listing.add_argument("what", choices=("methods", "metrics", "subjects", "audio"))
    listing.set_defaults(func=cmd_list)

    run = commands.add_parser("run", parents=[store, progress], help="run a method on a subject and score it")
    run.add_argument("--method", required=True, help="METHOD or METHOD:VARIANT (bench list methods)")
    run.add_argument("--subject", required=True)
    run.add_argument("--audio", default=SELF_AUDIO, help="OOD audio id (bench list audio); default: the subject's own test audio")
    run.add_argument("--track", choices=("head", "portrait"), default="head")
    run.add_argument("--metrics", help="comma-separated metric ids or variants; default: all")
    run.add_argument("--renders", help="for --method video: rendered video, frame folder or image")
    run.add_argument("--config", action="append", default=[], metavar="KEY=VALUE", help="method option (repeatable)")
    run.add_argument("--preset", help="training preset of methods that have them (synctalk: smoke, fast, paper); "
                     "same as --config preset=NAME")
    run.add_argument("--metric-option", action="append", default=[], metavar="KEY=VALUE",
                     help="metric option, e.g. openface_csv_pred=path (repeatable)")
    run.add_argument("--prepare", action="append", default=[], metavar="STEP.OPTION=VALUE",
                     help="preparation option of a step the method reads (as bench prepare --set; repeatable)")
    run.add_argument("--seed", type=int, default=0)
    run.set_defaults(func=cmd_run)

    results = commands.add_parser("results", parents=[store], help="show recorded results")
    results.add_argument("--subject")
    results.add_argument("--method")
    results.add_argument("--audio")
    results.add_argument("--track", choices=("head", "portrait"))
    results.add_argument("--format", choices=("table", "csv", "json"), default="table")
    results.set_defaults(func=cmd_results)

    asset = commands.add_parser("assets", help="list, fetch or verify external files (videos, audio, weights)")
    asset.add_argument("action", choices=("list", "fetch", "verify"))
    asset.add_argument("names", nargs="*", help="asset names for fetch, or 'all'")
    asset.set_defaults(func=cmd_assets)

    scoring = commands.add_parser("score", help="score any prediction against a ground truth (videos, frame folders, images)")
    scoring.add_argument("pred", help="predicted video, frame folder or image")
    scoring.add_argument("--gt", help="ground-truth video, frame folder or image (full-reference metrics)")
    scoring.add_argument("--audio", help="driving speech (audio-visual metrics); default: the prediction's soundtrack")
    scoring.add_argument("--metrics", help="comma-separated metric ids or variants; default: all")
    scoring.add_argument("--metric-option", action="append", default=[], metavar="KEY=VALUE", help="metric option (repeatable)")
    scoring.add_argument("--format", choices=("table", "json"), default="table")
    scoring.set_defaults(func=cmd_score)

    metric_list = commands.add_parser("metrics", help="every metric variant: direction, kind, assets, availability")
    metric_list.set_defaults(func=cmd_metrics)

    demo = commands.add_parser("demo", parents=[store, progress], help="run the reference methods on a subject and print a table")
    demo.add_argument("--subject", default="cnn")
    demo.set_defaults(func=cmd_demo)
    add_prepare_commands(commands, progress)
    add_method_commands(commands, progress, store)
    add_report_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BenchError as error:
        print(f"bench: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; finished stages are kept, run the same command again to resume", file=sys.stderr)
        return 130
