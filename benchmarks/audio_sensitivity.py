"""Does a trained engine model's mouth respond to its audio? (``engine.probe.audio_sensitivity``)

    BENCH_ASSET_MIRROR=../shared/assets python benchmarks/audio_sensitivity.py --method synctalk --subject cnn \
        --preset cpu --config audio_encoder=whisper [--compare audio_encoder=mel ...]

Trains each model as ``bench run`` would (a cached stage), then renders 8 test frames at the training size with
their own audio code and with the code of a test frame half the split away, and prints the change (0-255, median
over frames) in the lip box, on the rest of the lower face and elsewhere. Several ``--compare KEY=VALUE`` options
add one model each with that config value changed (for example the audio front end), measured side by side.
"""

from __future__ import annotations

import argparse


def main() -> int:
    from bench import cli_common, pipeline
    from bench.contracts import RunSpec
    from bench.methods.engine import probe

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="synctalk")
    parser.add_argument("--subject", default="cnn")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--config", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--compare", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    base = {**cli_common.parse_pairs(args.config), "preset": args.preset}
    configs = [base] + [{**base, **cli_common.parse_pairs([change])} for change in args.compare]
    print("| config | lip box max | lip box mean | rest of lower face max | mean | elsewhere max | mean |")
    print("|---|---|---|---|---|---|---|")
    for config in configs:
        trained = pipeline.train(RunSpec(method=args.method, subject=args.subject, config=config))
        report = probe.audio_sensitivity(trained.method, trained.subject, trained.checkpoint)
        label = ", ".join(f"{k}={v}" for k, v in config.items()) + f" ({report['audio_encoder']})"
        cells = (report[k] for k in ("lip_box_max", "lip_box_mean", "jaw_max", "jaw_mean", "elsewhere_max", "elsewhere_mean"))
        print(f"| {label} | " + " | ".join(f"{c:.1f}" for c in cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
