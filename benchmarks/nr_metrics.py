"""Speed and agreement of bench's NIQE and BRISQUE against per-image references, on real 512x512 frames
(the first frames of the cnn subject video).

    BENCH_ASSET_MIRROR=../shared/assets python benchmarks/nr_metrics.py [--frames 250] [--chunk 25]

References, each run on the same frames in the same process, chunk by chunk alternating with bench's code:
- niqe@live: a straightforward per-image port of the LIVE MATLAB code (loops over 96x96 blocks, the full shape table,
  MATLAB's imresize algorithm), ``reference_niqe`` in tests/test_metric_niqe_brisque.py;
- brisque@live: the same kind of per-image port of ``brisque_feature.m``, scaled with ``allrange`` and predicted
  with libsvm's own ``svm_predict`` (as MATLAB's brisquescore calls svm-predict);
- brisque@pypi-brisque: the brisque 0.2.0 package's ``BRISQUE().score`` (its last step patched for NumPy 2.4).
Variants whose model file is not available are reported and skipped. bench's scorers run their batches on one
thread per available core; the references are single-threaded per-image code, as their authors wrote them. Times
are medians over chunks of the per-frame wall time; the machine is shared, so only ratios measured side by side
mean much.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent.parent / "tests"


def load_frames(count: int) -> np.ndarray:
    from bench import assets, media

    return np.stack(list(itertools.islice(media.iter_video(assets.fetch("cnn2_25fps")), count)))


def contenders(references) -> dict[str, tuple[Callable, Callable]]:
    """variant -> (bench's batched scorer, per-frame reference scorer); variants without their model are left out."""
    from bench import assets, registry
    from bench.metrics import brisque

    found: dict[str, tuple[Callable, Callable]] = {}
    for variant in ("niqe@live", "brisque@live", "brisque@pypi-brisque"):
        spec = registry.metrics.get(variant)
        try:
            paths = {name: assets.fetch(name) for name in spec.assets}
        except assets.AssetUnavailable as error:
            print(f"{variant}: skipped ({error})")
            continue
        metric = registry.load_object(spec.impl)(spec, paths)
        if variant == "niqe@live":
            mu, cov = metric.mu_pristine, metric.cov_pristine
            reference = lambda frame, mu=mu, cov=cov: references.reference_niqe(frame, mu, cov)  # noqa: E731
        elif variant == "brisque@live":
            model_path = paths["brisque_live_allmodel"]

            def reference(frame, model_path=model_path):
                features = references.reference_live_brisque_features(frame)[None]
                scaled = brisque.scale_to_unit_range(features, brisque.LIVE_ALLRANGE)
                return references.libsvm_predict(model_path, scaled)[0]

        else:
            scorer = references.package_brisque()
            if scorer is None:
                print(f"{variant}: skipped (the brisque package is not installed)")
                continue
            reference = scorer.score
        found[variant] = (metric.scores, reference)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=250)
    parser.add_argument("--chunk", type=int, default=25)
    args = parser.parse_args()

    sys.path.insert(0, str(TESTS))
    import test_metric_niqe_brisque as references

    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
          f"numpy {np.__version__}")
    frames = load_frames(args.frames)
    print(f"frames: {len(frames)} x {frames.shape[1]}x{frames.shape[2]} from cnn2_25fps, chunks of {args.chunk}")
    rows = []
    for variant, (ours, reference) in contenders(references).items():
        ours(frames[:2])  # warm-up: imports, model tables
        ours_times, reference_times, ours_values, reference_values = [], [], [], []
        for start in range(0, len(frames), args.chunk):
            chunk = frames[start : start + args.chunk]
            began = time.perf_counter()
            ours_values.append(ours(chunk))
            ours_times.append((time.perf_counter() - began) / len(chunk))
            began = time.perf_counter()
            reference_values.append([reference(frame) for frame in chunk])
            reference_times.append((time.perf_counter() - began) / len(chunk))
        ours_all, reference_all = np.concatenate(ours_values), np.concatenate(reference_values)
        difference = np.abs(ours_all - reference_all)
        ours_ms, reference_ms = statistics.median(ours_times) * 1e3, statistics.median(reference_times) * 1e3
        rows.append((variant, ours_ms, reference_ms, reference_ms / ours_ms, float(np.mean(ours_all)),
                     float(np.mean(reference_all)), float(np.max(difference)), float(np.median(difference))))
    print(f"\n{'variant':<22} {'bench ms/f':>10} {'ref ms/f':>9} {'speed-up':>8} {'bench mean':>11} {'ref mean':>10} "
          f"{'max |diff|':>11} {'median |diff|':>13}")
    for variant, ours_ms, reference_ms, ratio, ours_mean, reference_mean, max_diff, median_diff in rows:
        print(f"{variant:<22} {ours_ms:10.1f} {reference_ms:9.1f} {ratio:7.1f}x {ours_mean:11.4f} "
              f"{reference_mean:10.4f} {max_diff:11.2e} {median_diff:13.2e}")


if __name__ == "__main__":
    main()
