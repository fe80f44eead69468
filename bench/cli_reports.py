"""Report subcommands of ``bench``: ``table``, ``leaderboard``, ``regress``, ``export`` and ``plot``.

``add_report_commands`` only declares arguments (nothing heavy is imported); each handler imports what it needs,
returns an exit code and raises ``BenchError`` for problems the user can fix.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli_common import uncertainty_of, uncertainty_parser, write_or_print
from bench.contracts import SELF_AUDIO, BenchError


def _store(args: argparse.Namespace):
    from bench import home
    from bench.store import ResultsStore

    path = Path(args.store).resolve() if args.store else home.results_store_path()
    if not path.is_file():
        raise BenchError(f"{path}: no results store (run `bench run` or `bench demo` first, or pass --store)")
    return ResultsStore(path)


def cmd_table(args: argparse.Namespace) -> int:
    from bench.reports import leaderboard, tables

    built = tables.BUILDERS[args.layout](_store(args), args.subject, args.track, uncertainty_of(args))
    write_or_print(leaderboard.render_table(built, args.format), args.out)
    return 0


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from bench.reports import leaderboard

    index = leaderboard.build(_store(args), Path(args.out), uncertainty_of(args), frames=not args.no_frames, plots_wanted=not args.no_plots)
    print(f"leaderboard: {index} (open it in a browser; it works from file://)")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from bench.reports import regress

    store = _store(args)
    document = regress.export(store.query(subject=args.subject, method=args.method, audio=args.audio, track=args.track))
    regress.write_export(document, Path(args.out))
    print(f"exported {len(document['results'])} results to {args.out}")
    return 0


def cmd_regress(args: argparse.Namespace) -> int:
    from bench.reports import regress

    baseline_path = Path(args.baseline)
    baseline = regress.load_baseline(baseline_path)
    tolerances = regress.Tolerances.load(Path(args.tolerances) if args.tolerances else None)
    filters = {"subject": args.subject, "method": args.method, "audio": args.audio, "track": args.track}
    current = regress.export(_store(args).query(**filters))
    baseline["results"] = [r for r in baseline["results"] if all(v is None or r[k] == v for k, v in filters.items())]
    comparisons = regress.compare(baseline, current, tolerances)
    report = regress.markdown_report(comparisons, baseline_path, baseline, args.fail_on_missing)
    print(report)
    if args.report:
        Path(args.report).write_text(report)
    return 1 if regress.failures(comparisons, args.fail_on_missing) else 0


def cmd_plot(args: argparse.Namespace) -> int:
    from bench.reports import plots

    formats = tuple(args.formats.split(","))
    unknown = set(formats) - set(plots.PLOT_FORMATS)
    if unknown:
        raise BenchError(f"--formats: unknown {', '.join(sorted(unknown))} (choose from {', '.join(plots.PLOT_FORMATS)})")
    paths = plots.write_metric_plots(_store(args), args.subject, args.metric, Path(args.out), args.track, args.audio, formats)
    for path in paths:
        print(path)
    return 0


def add_report_commands(commands: argparse._SubParsersAction) -> None:
    """Add ``table``, ``leaderboard``, ``regress``, ``export`` and ``plot`` to the ``bench`` subcommands."""
    store = argparse.ArgumentParser(add_help=False)
    store.add_argument("--store", help="results store (SQLite); default $BENCH_RESULTS or $BENCH_HOME/results.sqlite")
    uncertainty = uncertainty_parser()
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--subject")
    filters.add_argument("--method")
    filters.add_argument("--audio")
    filters.add_argument("--track", choices=("head", "portrait"))

    table = commands.add_parser(
        "table", parents=[store, uncertainty],
        help="paper-style tables (Table 1, 2, 4) with intervals, ranks and the paper's reference rows",
    )
    table.add_argument("--subject", action="append", help="subject (repeatable); default: every subject with results")
    table.add_argument("--layout", choices=("table1", "table2", "table4"), default="table1")
    table.add_argument("--format", choices=("md", "latex", "csv", "html"), default="md")
    table.add_argument("--track", choices=("head", "portrait"), default="head", help="one track per table (default head)")
    table.add_argument("--out", help="write to this file instead of standard output")
    table.set_defaults(func=cmd_table)

    board = commands.add_parser(
        "leaderboard", parents=[store, uncertainty], help="static HTML leaderboard (works from file://, no network)"
    )
    board.add_argument("--out", required=True, help="output folder, e.g. site/")
    board.add_argument("--no-frames", action="store_true", help="skip side-by-side sample frames")
    board.add_argument("--no-plots", action="store_true", help="skip per-frame metric plots")
    board.set_defaults(func=cmd_leaderboard)

    export = commands.add_parser("export", parents=[store, filters], help="write results as a baseline JSON for `bench regress`")
    export.add_argument("--out", required=True, help="baseline file to write, e.g. results.json")
    export.set_defaults(func=cmd_export)

    regress = commands.add_parser(
        "regress", parents=[store, filters], help="compare results with a baseline export; exit 1 on regression"
    )
    regress.add_argument("--baseline", required=True, help="baseline JSON written by `bench export`")
    regress.add_argument("--tolerances", help="TOML of per-metric tolerances (default: floating-point noise only)")
    regress.add_argument("--report", help="also write the markdown report here (e.g. $GITHUB_STEP_SUMMARY)")
    regress.add_argument("--fail-on-missing", action="store_true", help="results missing from the store also fail")
    regress.set_defaults(func=cmd_regress)

    plot = commands.add_parser("plot", parents=[store], help="per-frame curves and distributions of one metric (PNG, SVG)")
    plot.add_argument("--subject", required=True)
    plot.add_argument("--metric", required=True, help="metric id (every variant) or one variant")
    plot.add_argument("--track", choices=("head", "portrait"), default="head")
    plot.add_argument("--audio", default=SELF_AUDIO)
    plot.add_argument("--out", default="plots", help="output folder (default plots/)")
    plot.add_argument("--formats", default="png,svg", help="comma-separated: png, svg (default both)")
    plot.set_defaults(func=cmd_plot)
