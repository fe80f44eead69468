"""Times `bench prepare` per step on a fresh BENCH_HOME (default subject: cnn, 1779 frames; target ≤ 15 min).

Run: BENCH_ASSET_MIRROR=../shared/assets .venv/bin/python benchmarks/prepare_subject.py [subject]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time


def main() -> None:
    subject = sys.argv[1] if len(sys.argv) > 1 else "cnn"
    with tempfile.TemporaryDirectory() as home:
        os.environ["BENCH_HOME"] = home
        os.environ.setdefault("BENCH_OFFLINE", "1")
        from bench.datasets.preprocess.prepared import prepare

        started = time.perf_counter()
        rows = []
        prepare(subject, progress=False, on_step=lambda o: rows.append((o.name, o.seconds)))
        total = time.perf_counter() - started
    print(f"bench prepare {subject} on {os.cpu_count()} CPUs: {total:.1f} s in all (target ≤ 900 s)")
    for name, seconds in rows:
        print(f"  {name:<11} {seconds:8.1f} s")


if __name__ == "__main__":
    main()
