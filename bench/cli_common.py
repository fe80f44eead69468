"""Helpers the ``bench`` subcommand modules share: KEY=VALUE options, the results store, aligned rows."""

from __future__ import annotations

import argparse
import json
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
