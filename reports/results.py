"""`bench results`: recorded results as a text table (one row per run, one column per metric variant),
CSV (one row per run and metric) or JSON (everything, with provenance)."""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from bench.contracts import arrow

RUN_COLUMNS = ("subject", "method", "audio", "track", "seed", "config_hash", "run_id", "n_frames")


def format_value(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4f}"


def json_number(value: float | None) -> float | str | None:
    """Strict JSON has no infinities: they become the strings "inf"/"-inf"; NaN/None become null."""
    if value is None or math.isnan(value):
        return None
    return format_value(value) if math.isinf(value) else value


def as_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "no results"
    variants = sorted({r["variant"] for r in rows})
    arrows = {r["variant"]: arrow(bool(r["higher_is_better"])) for r in rows}
    header = ["subject", "method", "audio", "track", "run", "frames", *(f"{v} {arrows[v]}" for v in variants)]
    runs: dict[str, dict[str, str]] = {}
    for row in rows:
        line = runs.setdefault(
            row["run_id"],
            {
                "subject": row["subject"], "method": row["method"], "audio": row["audio"], "track": row["track"],
                "run": row["run_id"][:8], "frames": str(row["n_frames"]),
            },
        )
        line[f"{row['variant']} {arrows[row['variant']]}"] = format_value(row["value"])
    table = [header] + [[line.get(column, "") for column in header] for line in runs.values()]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(r, widths)).rstrip() for r in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def as_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*RUN_COLUMNS, "metric", "variant", "value", "higher_is_better", "kind"])
    for row in rows:
        writer.writerow(
            [*(row[c] for c in RUN_COLUMNS), row["metric"], row["variant"], format_value(row["value"]),
             bool(row["higher_is_better"]), row["kind"]]
        )
    return buffer.getvalue().rstrip("\n")


def as_json(rows: list[dict[str, Any]]) -> str:
    out = []
    for row in rows:
        item = {key: row[key] for key in (*RUN_COLUMNS, "metric", "variant", "kind")}
        item.update(
            value=json_number(row["value"]),
            higher_is_better=bool(row["higher_is_better"]),
            config=row["config"],
            extras=row["extras"],
            run_provenance=row["provenance"],
            result_provenance=row["result_provenance"],
        )
        out.append(item)
    return json.dumps(out, indent=1, sort_keys=True, allow_nan=False, default=str)


FORMATS = {"table": as_table, "csv": as_csv, "json": as_json}
