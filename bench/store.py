"""Results store: one SQLite file (default ``$BENCH_HOME/results.sqlite``, or ``$BENCH_RESULTS``).

- ``runs``: one row per run id (the hash of everything that produced the renders) with its provenance.
- ``results``: one row per (run, metric variant): aggregate, direction, kind, extras and provenance.
- ``frame_values``: per-frame values of each result.

Writes are transactions (``BEGIN IMMEDIATE``, WAL journal, long busy timeout), so concurrent ``bench run``
processes lose nothing. Rows are only ever inserted: an existing (run, variant) is a cache hit, never replaced.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    subject TEXT NOT NULL,
    audio TEXT NOT NULL,
    track TEXT NOT NULL,
    seed INTEGER NOT NULL,
    config_json TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    n_frames INTEGER NOT NULL,
    provenance_json TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    variant TEXT NOT NULL,
    metric TEXT NOT NULL,
    value REAL,
    higher_is_better INTEGER NOT NULL,
    kind TEXT NOT NULL,
    extras_json TEXT NOT NULL,
    provenance_json TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, variant)
);
CREATE TABLE IF NOT EXISTS frame_values (
    run_id TEXT NOT NULL,
    variant TEXT NOT NULL,
    frame INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (run_id, variant, frame)
);
"""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _real(value: float | None) -> float | None:
    """SQLite keeps +-inf; NaN becomes NULL."""
    return None if value is None or math.isnan(value) else float(value)


class ResultsStore:
    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._create()

    def _create(self, patience: float = 120.0) -> None:
        """Switch the file to WAL (persistent) and create the tables. Changing the journal mode ignores SQLite's
        busy timeout, so a process racing another one that creates the same store retries here."""
        deadline = time.monotonic() + patience
        while True:
            try:
                with closing(self._connect()) as connection:
                    if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                        connection.execute("PRAGMA journal_mode=WAL")
                    connection.executescript(SCHEMA)
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=120, isolation_level=None)
        connection.row_factory = sqlite3.Row
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        connection = self._connect()
        try:
            connection.execute("BEGIN IMMEDIATE")
            yield connection
            connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                connection.execute("ROLLBACK")
            raise
        finally:
            connection.close()

    def recorded_variants(self, run_id: str) -> set[str]:
        with closing(self._connect()) as connection:
            rows = connection.execute("SELECT variant FROM results WHERE run_id = ?", (run_id,)).fetchall()
        return {row["variant"] for row in rows}

    def record(self, run: Mapping[str, Any], results: list[Mapping[str, Any]]) -> list[str]:
        """Insert the run (if new) and those results not yet present, in one transaction.

        ``run`` has the ``runs`` columns (``config``/``provenance`` as objects); each result has ``variant``,
        ``metric``, ``value``, ``higher_is_better``, ``kind``, ``extras``, ``provenance`` and ``per_frame``.
        Returns the variants actually inserted.
        """
        now = time.time()
        inserted = []
        with self._transaction() as connection:
            connection.execute(
                "INSERT OR IGNORE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run["run_id"], run["method"], run["subject"], run["audio"], run["track"], run["seed"],
                    _json(run["config"]), run["config_hash"], run["n_frames"], _json(run["provenance"]), now,
                ),
            )
            for result in results:
                cursor = connection.execute(
                    "INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        run["run_id"], result["variant"], result["metric"], _real(result["value"]),
                        int(result["higher_is_better"]), result["kind"], _json(result["extras"]),
                        _json(result["provenance"]), now,
                    ),
                )
                if cursor.rowcount == 0:
                    continue  # already recorded: never overwritten
                inserted.append(result["variant"])
                per_frame = result.get("per_frame")
                if per_frame is not None:
                    connection.executemany(
                        "INSERT INTO frame_values VALUES (?,?,?,?)",
                        ((run["run_id"], result["variant"], i, _real(v)) for i, v in enumerate(np.asarray(per_frame, dtype=float))),
                    )
        return inserted

    def query(self, **filters: str | None) -> list[dict[str, Any]]:
        """Result rows joined with their run, filtered by run columns (method, subject, audio, track)."""
        allowed = {"method", "subject", "audio", "track"}
        clauses, params = [], []
        for column, value in filters.items():
            if value is None:
                continue
            if column not in allowed:
                raise ValueError(f"cannot filter on {column!r}")
            clauses.append(f"runs.{column} = ?")
            params.append(value)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = (
            "SELECT runs.*, results.variant, results.metric, results.value, results.higher_is_better, "
            "results.kind, results.extras_json, results.provenance_json AS result_provenance_json, "
            f"results.created_at AS result_created_at FROM results JOIN runs USING (run_id) {where} "
            "ORDER BY runs.subject, runs.method, runs.audio, runs.track, runs.created_at, results.variant"
        )
        with closing(self._connect()) as connection:
            rows = connection.execute(sql, params).fetchall()
        out = []
        for row in rows:
            item = dict(row)
            for key in ("config_json", "provenance_json", "extras_json", "result_provenance_json"):
                item[key.removesuffix("_json")] = json.loads(item.pop(key))
            out.append(item)
        return out

    def result(self, run_id: str, variant: str) -> dict[str, Any] | None:
        """One recorded result (value, extras, provenance) with its per-frame values, or None."""
        with closing(self._connect()) as connection:
            row = connection.execute(
                "SELECT value, extras_json, provenance_json FROM results WHERE run_id = ? AND variant = ?",
                (run_id, variant),
            ).fetchone()
        if row is None:
            return None
        return {
            "value": float("nan") if row["value"] is None else row["value"],
            "extras": json.loads(row["extras_json"]),
            "provenance": json.loads(row["provenance_json"]),
            "per_frame": self.frame_values(run_id, variant),
        }

    def frame_values(self, run_id: str, variant: str) -> np.ndarray:
        with closing(self._connect()) as connection:
            rows = connection.execute(
                "SELECT value FROM frame_values WHERE run_id = ? AND variant = ? ORDER BY frame", (run_id, variant)
            ).fetchall()
        return np.array([np.nan if r["value"] is None else r["value"] for r in rows], dtype=float)
