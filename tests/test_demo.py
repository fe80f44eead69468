"""End to end on the real cnn clip from the asset mirror: the demo, the bounds and the results table."""

import json

from conftest import REPO, run_bench

BASELINES = REPO / "tests" / "baselines"


def test_demo_on_cnn_scores_ground_truth_above_still_frame(mirror):
    out = run_bench("demo", "--no-progress").stdout
    assert "ground-truth" in out and "still-frame" in out

    rows = json.loads(run_bench("results", "--subject", "cnn", "--format", "json").stdout)
    scores = {(r["method"], r["variant"]): r["value"] for r in rows}
    assert {r["n_frames"] for r in rows} == {162}
    assert scores[("ground-truth", "psnr@frame-mean")] == "inf"
    assert scores[("ground-truth", "ms_ssim@rgb")] > 0.9999
    assert 10 < scores[("still-frame", "psnr@frame-mean")] < 30
    assert 0.2 < scores[("still-frame", "ms_ssim@rgb")] < 0.95
    sources = rows[0]["run_provenance"]["subject_sources"]
    assert sources == {"cnn2_25fps": "9c18a0492531858bff0bce41a7a213337f69fd432e0fe2f254b579e40d6877e7"}

    again = run_bench("run", "--method", "still-frame", "--subject", "cnn", "--metrics", "psnr,ms_ssim", "--no-progress")
    assert again.stdout.count("cached") == 3  # psnr and both MS-SSIM variants

    # the committed baseline of the demo's results: any regression fails CI, with a markdown report
    regress = run_bench(
        "regress", "--subject", "cnn", "--baseline", str(BASELINES / "demo_cnn.json"),
        "--tolerances", str(BASELINES / "tolerances.toml"), "--fail-on-missing", check=False,
    )
    print(regress.stdout)
    assert regress.returncode == 0, regress.stdout + regress.stderr
