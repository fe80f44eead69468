"""Helpers the ``bench`` subcommand modules share: KEY=VALUE options, the results store, aligned rows."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bench.contracts import BenchError


def parse_pairs(pairs: list[str]) -> dict:
    config = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise BenchError(f"{pair!r}: expected KEY=VALUE")
        try:
            config[key] = json.loads(raw)
        except json.JSONDecodeError:
            config[key] = raw
    return config


def store_of(args: argparse.Namespace):
    from bench import home
    from bench.store import ResultsStore

    return ResultsStore(Path(args.store).resolve() if args.store else home.results_store_path())


def print_rows(rows: list[tuple[str, ...]]) -> None:
    if not rows:
        print("(none)")
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join([*(c.ljust(w) for c, w in zip(row, widths)), row[-1]]))


def uncertainty_parser() -> argparse.ArgumentParser:
    """The options of bootstrap intervals and paired tests that every table command takes."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--no-ci", action="store_true", help="skip bootstrap intervals and paired tests")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default 2000)")
    parser.add_argument("--ci-seed", type=int, default=0, help="bootstrap seed (default 0: deterministic)")
    return parser


def uncertainty_of(args: argparse.Namespace):
    from bench.reports.tables import Uncertainty

    if args.resamples < 100:
        raise BenchError("--resamples: use at least 100 bootstrap resamples")
    return Uncertainty(enabled=not args.no_ci, resamples=args.resamples, seed=args.ci_seed)


def write_or_print(text: str, out: str | None) -> None:
    if out:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
