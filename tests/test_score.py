"""`bench score` on any two videos, frame folders or images, and `bench metrics`."""

import json

import numpy as np
import pytest
from conftest import make_video, run_bench
from PIL import Image

from bench import media
from bench.metrics.psnr import psnr_per_frame


def test_score_two_videos_as_json(tmp_path, tiny_video):
    pred = make_video(tmp_path / "pred.mp4", n_frames=60, size=192)
    out = json.loads(run_bench("score", str(pred), "--gt", str(tiny_video), "--format", "json").stdout)
    assert out["alignment"] == {"pred_frames": 60, "gt_frames": 55, "scored_frames": 55,
                                "rule": "truncated to the shorter sequence"}
    psnr = next(m for m in out["metrics"] if m["variant"] == "psnr@frame-mean")
    expected = psnr_per_frame(np.stack(list(media.iter_video(pred)))[:55], np.stack(list(media.iter_video(tiny_video))))
    np.testing.assert_allclose([float(v) if v != "inf" else np.inf for v in psnr["per_frame"]], expected)
    assert out["inputs"]["pred"]["sha256"] and out["provenance"]["packages"]["numpy"]


def test_score_frame_folder_and_image_without_gt(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (170, 170, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    same = run_bench("score", str(folder), "--gt", str(folder), "--metrics", "psnr,ms_ssim").stdout
    assert "inf" in same and "1.0000" in same
    alone = run_bench("score", str(folder / "1.png")).stdout
    assert "needs ground-truth frames" in alone


def test_score_real_renders_with_audio(mirror):
    """The issue's real-video check: a SyncTalk render of May scored against GeneFace's render of May (the
    shorter, 272 frames, decides), with the demo's driving audio: NIQE, BRISQUE and dlib LMD on every frame."""
    rendered = mirror / "rendered"
    out = json.loads(run_bench(
        "score", str(rendered / "synctalk_may_short_demo.mp4"), "--gt", str(rendered / "geneface_may_zozo.mp4"),
        "--audio", str(mirror / "audio" / "synctalk_test.wav"),
        "--metrics", "niqe@live,brisque@live,lmd@dlib-mouth20-centred-px", "--format", "json",
    ).stdout)
    assert out["alignment"]["scored_frames"] == 272 and out["inputs"]["audio"]["sha256"]
    values = {m["variant"]: m for m in out["metrics"]}
    for variant, expected in (("niqe@live", 5.0136), ("brisque@live", 26.596), ("lmd@dlib-mouth20-centred-px", 3.3406)):
        assert values[variant]["unavailable"] is None and values[variant]["extras"]["frames_unscored"] == 0
        assert values[variant]["value"] == pytest.approx(expected, rel=1e-3), variant
    assert values["lmd@dlib-mouth20-centred-px"]["extras"]["no_face_pred"] == 0


def test_score_bad_input_is_a_one_line_error(tmp_path):
    missing = run_bench("score", str(tmp_path / "nope.mp4"), check=False)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nope.mp4" in missing.stderr


def test_metrics_command_lists_variants_with_status():
    status = {line.split()[0]: line for line in run_bench("metrics").stdout.splitlines()[1:]}
    assert status["psnr@frame-mean"].endswith("available")
    # tests run offline with no weights: the LPIPS backbone is missing and the line says which asset and where
    assert "unavailable: asset 'torchvision_alexnet' is missing" in status["lpips@alex-v0.1"]
