"""How often each offline lip-sync variant prefers a real clip's own audio over the same audio shifted by 1 s.

    BENCH_ASSET_MIRROR=../shared/assets python benchmarks/lipsync_separation.py [--seconds 20] [--json out.json]

For each of the mirror's real talking-head clips (cnn, the four HDTF clips, the six ``videos/extra`` speakers; the
first ``--seconds`` of each at 25 fps), the mouth series is measured once and every audio-visual ``lipsync``
variant scores the clip with its own audio and with that audio rolled by 1 s (25 frames, beyond the ±15-frame offset
search). A variant orders a clip correctly when its score for the true audio is better in its own direction. Prints
a table per clip and the count per variant; the offset-confidence variants also print the offset they found for
the true audio (0 is right; a few frames either way is within the footage's own audio/video skew). The clips and
their controls are ``tests/test_metric_lipsync.py``'s, whose default-suite test holds the recommended variant to
the count measured here.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"


def main() -> int:
    import tempfile

    from bench import registry
    from bench.contracts import MetricInput, MetricKind
    from bench.pipeline import compute_metric

    sys.path.insert(0, str(TESTS))
    from test_metric_lipsync import MIRROR_CLIPS, clip_input

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, help="write the per-clip scores here")
    args = parser.parse_args()
    specs = [s for s in registry.select_metrics(["lipsync"]) if s.kind is MetricKind.AUDIO_VISUAL]
    print(f"machine: {platform.processor() or platform.machine()}, python {sys.version.split()[0]}")
    rows, wins = [], {s.variant: 0 for s in specs}
    with tempfile.TemporaryDirectory() as scratch:
        for name in MIRROR_CLIPS:
            started = time.perf_counter()
            frames, audios = clip_input(name, args.seconds, Path(scratch))
            row = {"clip": name, "frames": len(frames)}
            for spec in specs:
                true, shifted = (compute_metric(spec, MetricInput(pred=frames, gt=None, audio=audios[k]))
                                 for k in ("true", "shifted"))
                better = true.aggregate > shifted.aggregate if spec.higher_is_better else true.aggregate < shifted.aggregate
                wins[spec.variant] += int(bool(better))
                row[spec.variant] = {"true": round(true.aggregate, 4), "shifted": round(shifted.aggregate, 4),
                                     "correct": bool(better), "offset_true": true.extras.get("offset_frames"),
                                     "offset_shifted": shifted.extras.get("offset_frames")}
            row["seconds"] = round(time.perf_counter() - started, 1)
            rows.append(row)
            cells = "  ".join(
                f"{v.split('@')[1]}: {row[v]['true']:.3f}/{row[v]['shifted']:.3f}"
                + (f" (off {row[v]['offset_true']:+d}/{row[v]['offset_shifted']:+d})" if row[v]["offset_true"] is not None else "")
                + (" ok" if row[v]["correct"] else " WRONG")
                for v in wins
            )
            print(f"{name:38s} {len(frames):4d} fr  {cells}  [{row['seconds']} s]", flush=True)
    print("\ntrue audio beats the same audio shifted by 1 s:")
    for variant, count in wins.items():
        print(f"  {variant:32s} {count}/{len(MIRROR_CLIPS)}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "wins": wins}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
