"""Wall time of the CPU metrics (PSNR, MS-SSIM, NIQE, BRISQUE, dlib LMD) on 250 frames of 512x512 from the cnn
clip, one process, frames decoded once and shared (target: 60 s in all on the 2-core reference machine).

    BENCH_ASSET_MIRROR=../shared/assets python benchmarks/cpu_metrics.py [--frames 250]

The prediction is the clip delayed by one frame (a plausible "almost right" render); GT is the clip itself.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from itertools import islice

import numpy as np

from bench import assets, media, registry
from bench.contracts import MetricInput
from bench.pipeline import resolve_assets

VARIANTS = ("psnr@frame-mean", "ms_ssim@rgb", "niqe@live", "brisque@live", "lmd@dlib-mouth20-centred-px")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    args = parser.parse_args()
    frames = np.stack(list(islice(media.iter_video(assets.fetch("cnn2_25fps")), args.frames + 1)))
    data = MetricInput(pred=frames[:-1], gt=frames[1:], audio=None)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs; {args.frames} frames of {frames.shape[2]}x{frames.shape[1]}")
    total = 0.0
    for variant in VARIANTS:
        spec = registry.metrics.get(variant)
        metric = registry.load_object(spec.impl)(spec, resolve_assets(spec))
        start = time.perf_counter()
        value = metric.compute(data)
        seconds = time.perf_counter() - start
        total += seconds
        print(f"{variant:<30} {seconds:7.2f} s  ({seconds / args.frames * 1000:6.1f} ms/frame)  value {value.aggregate:.4f}")
    print(f"{'total':<30} {total:7.2f} s")


if __name__ == "__main__":
    main()
