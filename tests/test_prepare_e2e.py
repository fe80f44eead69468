"""`bench prepare` and `bench inspect` end to end on a short real clip (3 s of an HDTF video from the mirror)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import run_bench, write_clip


def test_prepare_export_inspect_and_resume(clip_source, tmp_path, bench_home):
    frames, audio = clip_source
    clip = write_clip(tmp_path / "clip.mp4", frames, audio)
    first = run_bench("prepare", str(clip), "--name", "clip", "--no-progress")
    assert "prepared clip: 75 frames" in first.stdout
    pointer = json.loads((bench_home / "prepared" / "clip.json").read_text())
    export = Path(pointer["folders"]["export"])
    synctalk = export / "synctalk"
    train = json.loads((synctalk / "transforms_train.json").read_text())
    val = json.loads((synctalk / "transforms_val.json").read_text())
    assert [f["img_id"] for f in train["frames"]] == list(range(68))
    assert [f["img_id"] for f in val["frames"]] == list(range(68, 75))
    assert train["cx"] == 256 and train["cy"] == 256 and 200 < train["focal_len"] < 5000
    c2w = np.array([f["transform_matrix"] for f in train["frames"]])
    rotations = c2w[:, :3, :3]
    assert np.allclose(rotations @ rotations.transpose(0, 2, 1), np.eye(3), atol=1e-5)
    distance = np.linalg.norm(c2w[:, :3, 3], axis=1)
    assert 0.2 < np.median(distance) < 2.0, f"camera {np.median(distance):.2f} m from the head"
    assert np.load(synctalk / "bs.npy").shape == (75, 52)
    for name in ("ori_imgs/0.jpg", "ori_imgs/74.lms", "parsing/0.png", "parsing/0_face.png", "gt_imgs/3.jpg",
                 "torso_imgs/3.png", "face_mask/3.png", "bc.jpg", "aud.wav"):
        assert (synctalk / name).is_file(), name
    assert np.loadtxt(synctalk / "ori_imgs" / "10.lms").shape == (68, 2)
    index = json.loads((export / "index.json").read_text())
    assert set(index["steps"]) >= {"ingest", "landmarks", "parsing", "pose", "bundle"}
    assert index["provenance"]["packages"]

    again = run_bench("prepare", str(clip), "--name", "clip", "--no-progress")
    assert again.stdout.count("cached") == 10 and "0 steps ran" in again.stdout

    forced = run_bench("prepare", str(clip), "--name", "clip", "--steps", "capture", "--force", "--no-progress")
    ran = [line.split()[0] for line in forced.stdout.splitlines() if " done " in line]
    assert ran == ["capture", "export"], forced.stdout  # export reads capture: redone, not left stale

    inspected = run_bench("inspect", "clip", "--out", str(tmp_path / "pictures"))
    pictures = sorted(p.name for p in (tmp_path / "pictures").glob("*.png"))
    assert pictures == ["background.png", "blendshapes.png", "landmarks.png", "masks.png", "points.png", "pose.png"]
    assert "landmarks" in inspected.stdout


def test_bad_inputs_give_one_line_errors(clip_source, tmp_path):
    frames, audio = clip_source
    silent = write_clip(tmp_path / "silent.mp4", frames[:60], None)
    result = run_bench("prepare", str(silent), "--no-progress", check=False)
    assert result.returncode == 2 and "has no audio stream" in result.stderr and len(result.stderr.splitlines()) == 1
    short = write_clip(tmp_path / "short.mp4", frames[:30], audio[: 30 * 640])
    result = run_bench("prepare", str(short), "--no-progress", check=False)
    assert result.returncode == 2 and "at least 2 s" in result.stderr
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    result = run_bench("prepare", str(broken), "--no-progress", check=False)
    assert result.returncode == 2 and "broken.mp4" in result.stderr
    result = run_bench("inspect", "nobody", check=False)
    assert result.returncode == 2 and "bench prepare nobody" in result.stderr


def test_non_square_input_is_cropped_around_the_face(clip_source, tmp_path, bench_home):
    frames, audio = clip_source
    wide = np.zeros((60, 512, 704, 3), dtype=np.uint8)
    wide[:, :, 160:672] = frames[:60]  # face offset to the right of centre
    clip = write_clip(tmp_path / "wide.mp4", wide, audio[: 60 * 640])
    run_bench("prepare", str(clip), "--steps", "ingest", "--no-progress")
    pointer = json.loads((bench_home / "prepared" / "wide.json").read_text())
    summary = json.loads((Path(pointer["folders"]["ingest"]) / "stage.json").read_text())["outputs"]
    left, top, right, bottom = summary["crop_box"]
    assert right - left == bottom - top and "crop" in summary["policy"]
    assert left > 100, "the crop follows the face, not the frame centre"
    assert summary["width"] == summary["height"] == 512
    # scored by name, the subject's ground truth is the ingested crop (the frames renders are made in), exactly
    from bench import media, registry
    from bench.datasets.prepare import subject_video
    from bench.datasets.preprocess.prepared import open_prepared

    video, _ = subject_video(registry.subjects.get("wide"))
    np.testing.assert_array_equal(np.stack(list(media.iter_video(video))), open_prepared("wide").frames())
    assert registry.subjects.fallback("../wide") is None
