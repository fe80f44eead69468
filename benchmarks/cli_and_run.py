"""Start-up time of `bench --help` / `bench list`, and wall time and peak memory of one
`bench run --method still-frame --subject cnn` (cold: fresh BENCH_HOME; warm: everything cached).

    BENCH_ASSET_MIRROR=../shared/assets python benchmarks/cli_and_run.py [--repeats 15]

Figures are medians of repeated runs (start-up) or single runs in one process tree (run), on this machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = [sys.executable, "-m", "bench"]


def timed(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak resident memory (MiB) of one child process."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as bench_home:
        env = {**os.environ, "BENCH_HOME": bench_home}
        print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
        for label, command in (("bench --help", ["--help"]), ("bench list metrics", ["list", "metrics"])):
            walls = [timed(BENCH + command, env)[0] for _ in range(args.repeats)]
            print(f"{label:<24} median {statistics.median(walls) * 1000:7.1f} ms over {args.repeats} runs")
        run = BENCH + ["run", "--method", "still-frame", "--subject", "cnn", "--no-progress"]
        for label in ("cold (fresh BENCH_HOME)", "warm (all cached)"):
            wall, peak = timed(run, env)
            print(f"bench run still-frame cnn, {label:<24} wall {wall:6.2f} s   peak RSS {peak:7.1f} MiB")


if __name__ == "__main__":
    main()
