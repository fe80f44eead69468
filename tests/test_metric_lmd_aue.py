"""LMD (mouth landmark distance) and AUE (OpenFace action-unit error).

LMD: the formula against SyncTalk's LMDMeter arithmetic on synthetic landmarks; the dlib variant on real frames of
a SyncTalk render (identity, translation, open vs closed mouth, no face); the FAN variant through bench's asset
path with created checkpoints in the real files' formats. AUE: a real OpenFace CSV against perturbed copies,
checked against TalkingGaussian's auerror.py formula, and the FeatureExtraction path with a stand-in binary.
"""

import stat
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import install_fan_test_weights

from bench import assets, media, registry
from bench.contracts import BenchError, MetricInput
from bench.metrics import aue, lmd
from bench.pipeline import compute_metric, resolve_assets

DLIB_VARIANT = "lmd@dlib-mouth20-centred-px"
FAN_VARIANT = "lmd@fan-mouth20-centred-px"
TALKINGGAUSSIAN_AUS = [  # auerror.py's AUitems, with OpenFace's leading spaces
    " AU01_r", " AU02_r", " AU04_r", " AU05_r", " AU06_r", " AU07_r", " AU09_r", " AU10_r", " AU12_r",
    " AU14_r", " AU15_r", " AU17_r", " AU20_r", " AU23_r", " AU25_r", " AU26_r", " AU45_r",
]


# ---------------------------------------------------------------------------------------------------
# LMD: formula and bookkeeping


def synctalk_lmd(pred: np.ndarray, truth: np.ndarray) -> float:
    """SyncTalk LMDMeter.update for one frame, as written there (68x2 landmarks)."""
    pred, truth = pred[48:68], truth[48:68]
    pred = pred - pred.mean(0)
    truth = truth - truth.mean(0)
    return np.sqrt(((pred - truth) ** 2).sum(1)).mean(0)


def test_mouth_distance_matches_synctalk_and_ignores_translation():
    rng = np.random.default_rng(1)
    pred = rng.uniform(100, 400, (5, 68, 2))
    gt = pred + rng.normal(0, 3, pred.shape)
    expected = [synctalk_lmd(p, g) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(lmd.mouth_distance(pred, gt), expected, rtol=1e-12)
    moved = pred + rng.uniform(-50, 50, (5, 1, 2))  # a different translation per frame
    np.testing.assert_allclose(lmd.mouth_distance(moved, gt), expected, rtol=1e-9)
    np.testing.assert_allclose(lmd.mouth_distance(2 * pred, 2 * gt), 2 * np.array(expected), rtol=1e-12)  # pixels
    pred[3] = np.nan
    assert np.isnan(lmd.mouth_distance(pred, gt)[3])


def test_largest_box_wins_and_ties_keep_the_first():
    assert lmd.largest_box([(0, 0, 10, 10), (5, 5, 40, 30), (0, 0, 2, 2)]) == 1
    assert lmd.largest_box([(0, 0, 10, 10), (20, 20, 30, 30)]) == 0


class FixedLandmarks(lmd._MouthLMD):
    """Landmarks and face counts given up front, keyed by the first pixel value of each frame."""

    def __init__(self, by_value: dict[int, tuple[np.ndarray, int]]):
        super().__init__(registry.metrics.get(DLIB_VARIANT), {})
        self.by_value = by_value

    def landmarks(self, frames):
        found = [self.by_value[int(frame[0, 0, 0])] for frame in frames]
        return np.stack([points for points, _ in found]), np.array([faces for _, faces in found])


def test_frames_other_than_512_are_scaled_and_faceless_frames_counted():
    rng = np.random.default_rng(2)
    shape = rng.uniform(0, 100, (68, 2))
    nothing = np.full((68, 2), np.nan)
    table = {1: (shape, 1), 2: (shape + rng.normal(0, 2, shape.shape), 2), 3: (nothing, 0)}
    frames = np.zeros((3, 128, 256, 3), dtype=np.uint8)  # 256 wide, 128 high
    gt, pred = frames.copy(), frames.copy()
    gt[:, 0, 0, 0] = 1
    pred[:, 0, 0, 0] = [2, 1, 3]
    value = FixedLandmarks(table).compute(MetricInput(pred=pred, gt=gt, audio=None))
    scale = np.array([2.0, 4.0])
    expected = synctalk_lmd(table[2][0] * scale, shape * scale)
    assert value.per_frame[0] == pytest.approx(expected, rel=1e-12)
    assert value.per_frame[1] == 0.0 and np.isnan(value.per_frame[2])
    assert value.aggregate == pytest.approx(expected / 2, rel=1e-12)
    assert value.extras["landmark_scale"] == [2.0, 4.0]
    assert value.extras["no_face_pred"] == 1 and value.extras["no_face_gt"] == 0
    assert value.extras["several_faces_pred"] == 1 and value.extras["frames_unscored"] == 1


# ---------------------------------------------------------------------------------------------------
# LMD with dlib on real frames


@pytest.fixture
def demo_frames(mirror):
    """The first 22 frames of a SyncTalk render of May (512x512): frame 18 has the mouth closed, 21 wide open."""
    frames = []
    for frame in media.iter_video(assets.fetch("synctalk_may_short_demo")):
        frames.append(frame)
        if len(frames) == 22:
            break
    return np.stack(frames)


@pytest.fixture
def dlib_metric(mirror):
    spec = registry.metrics.get(DLIB_VARIANT)
    assert assets.locate("dlib_shape_predictor_68") == "package"  # shipped by face-recognition-models
    return registry.load_object(spec.impl)(spec, resolve_assets(spec))


def test_dlib_identity_is_zero_and_mouth_shape_matters(dlib_metric, demo_frames):
    frames = demo_frames[[0, 18, 21]]
    same = dlib_metric.compute(MetricInput(pred=frames, gt=frames, audio=None))
    assert same.aggregate == 0.0 and same.extras["frames_unscored"] == 0 and same.extras["no_face_gt"] == 0
    open_vs_closed = dlib_metric.compute(MetricInput(pred=demo_frames[[21]], gt=demo_frames[[18]], audio=None))
    assert open_vs_closed.aggregate > 5.0


def test_dlib_translation_moves_landmarks_but_not_lmd(dlib_metric, demo_frames):
    frames = demo_frames[[0, 18, 21]]
    shifted = np.zeros_like(frames)
    shifted[:, 8:, 8:] = frames[:, :-8, :-8]  # 8 px right and down
    before, _ = dlib_metric.landmarks(frames)
    after, _ = dlib_metric.landmarks(shifted)
    mouth_shift = (after - before)[:, 48:68]
    assert np.abs(mouth_shift.mean(axis=1) - 8).max() < 1.5  # the mouth really moved by about (8, 8)
    assert np.linalg.norm(mouth_shift, axis=2).mean() > 10  # uncentred distance: about 8·√2
    value = dlib_metric.compute(MetricInput(pred=shifted, gt=frames, audio=None))
    assert value.per_frame.max() < 1.5 and value.aggregate < 1.0  # detector/predictor jitter only


def test_dlib_black_frame_is_nan_and_counted(dlib_metric, demo_frames):
    frames = demo_frames[[0, 18, 21]]
    pred = frames.copy()
    pred[1] = 0
    value = dlib_metric.compute(MetricInput(pred=pred, gt=frames, audio=None))
    assert np.isnan(value.per_frame[1]) and value.per_frame[0] == 0.0 and value.per_frame[2] == 0.0
    assert value.aggregate == 0.0
    assert value.extras["no_face_pred"] == 1 and value.extras["no_face_gt"] == 0
    assert value.extras["frames_unscored"] == 1


# ---------------------------------------------------------------------------------------------------
# LMD with FAN: created checkpoints in the real formats, through bench's asset lookup


@pytest.fixture
def fan_checkpoints(tmp_path, monkeypatch):
    """Created S3FD and 2D-FAN-4 checkpoints in the published formats, found through bench's asset lookup."""
    return install_fan_test_weights(tmp_path / "mirror", monkeypatch)


def test_fan_loads_both_checkpoints_from_assets_and_scores(fan_checkpoints):
    import torch

    detector, landmarks = fan_checkpoints
    spec = registry.metrics.get(FAN_VARIANT)
    metric = registry.load_object(spec.impl)(spec, resolve_assets(spec))
    loaded_fan = metric.aligner.face_alignment_net.state_dict()
    loaded_s3fd = metric.aligner.face_detector.face_detector.state_dict()
    assert all(torch.equal(loaded_fan[k].cpu(), v) for k, v in landmarks.items())
    assert all(torch.equal(loaded_s3fd[k].cpu(), v) for k, v in detector.items())
    assert metric.aligner.flip_input is False
    rng = np.random.default_rng(3)
    pred, gt = rng.integers(0, 256, (2, 1, 128, 128, 3), dtype=np.uint8)  # one frame each: FAN is slow on CPU
    value = metric.compute(MetricInput(pred=pred, gt=gt, audio=None))
    assert np.isfinite(value.aggregate) and value.aggregate > 0  # random weights still "find" faces
    assert value.extras["no_face_pred"] == 0 and value.extras["landmark_scale"] == [4.0, 4.0]


def test_fan_without_weights_is_unavailable_naming_the_asset(mirror):
    spec = registry.metrics.get(FAN_VARIANT)
    frames = np.zeros((1, 64, 64, 3), dtype=np.uint8)
    with pytest.raises(BenchError) as raised:
        compute_metric(spec, MetricInput(pred=frames, gt=frames, audio=None))
    message = str(raised.value)
    assert lmd.FAN_DETECTOR in message and "s3fd-619a316812.pth" in message and "\n" not in message


# ---------------------------------------------------------------------------------------------------
# AUE


@pytest.fixture
def openface_csv(mirror) -> Path:
    return assets.fetch("openface_au_csv")


def _rewrite(source: Path, target: Path, change) -> Path:
    """Copy an OpenFace CSV field by field (its ", " layout kept), letting ``change(frame, column, text)`` edit
    values; a row for which it returns None is dropped."""
    lines = source.read_text().splitlines()
    header = lines[0].split(",")
    names = [h.strip() for h in header]
    out = [lines[0]]
    for line in lines[1:]:
        fields = line.split(",")
        frame = int(fields[0])
        edited = [change(frame, name, text) for name, text in zip(names, fields)]
        if None not in edited:
            out.append(",".join(edited))
    target.write_text("\n".join(out) + "\n")
    return target


def _aue(pred_csv: Path, gt_csv: Path, n_frames: int):
    spec = registry.metrics.get("aue@openface-17au")
    metric = registry.load_object(spec.impl)(spec, {})
    frames = np.zeros((n_frames, 1, 1, 3), dtype=np.uint8)
    options = {"openface_csv_pred": str(pred_csv), "openface_csv_gt": str(gt_csv)}
    return metric.compute(MetricInput(pred=frames, gt=frames, audio=None, options=options))


def test_aue_half_unit_on_au12_is_a_quarter_in_the_lower_face(openface_csv, tmp_path):
    raised = _rewrite(openface_csv, tmp_path / "pred.csv",
                      lambda f, c, t: f" {float(t) + 0.5:.2f}" if c == "AU12_r" else t)
    value = _aue(raised, openface_csv, 8000)
    assert value.aggregate == pytest.approx(0.25, abs=1e-12)
    np.testing.assert_allclose(value.per_frame, 0.25, atol=1e-12)
    assert value.extras["aue_lower"] == pytest.approx(0.25, abs=1e-12) and value.extras["aue_upper"] == 0.0
    assert value.extras["per_au"]["AU12"] == pytest.approx(0.25, abs=1e-12) and value.extras["frames"] == 8000
    assert value.extras["backend"] == "csv" and value.extras["frames_gt"]["untracked"] == 0


def test_aue_matches_talkinggaussian_auerror(openface_csv, tmp_path):
    rng = np.random.default_rng(4)
    noise = {(f, c): rng.normal(0, 0.4) for f in range(1, 8001) for c in ("AU01_r", "AU25_r", "AU45_r")}
    noisy = _rewrite(openface_csv, tmp_path / "gt.csv",
                     lambda f, c, t: f" {max(0.0, float(t) + noise[f, c]):.2f}" if (f, c) in noise else t)
    value = _aue(openface_csv, noisy, 8000)
    # TalkingGaussian auerror.py, verbatim: columns with OpenFace's leading space, rows paired by position.
    df_1 = pd.read_csv(openface_csv)[TALKINGGAUSSIAN_AUS]
    df_2 = pd.read_csv(noisy)[TALKINGGAUSSIAN_AUS]
    error = (df_1 - df_2) ** 2
    assert value.aggregate == pytest.approx(error.mean().sum(), rel=1e-12)
    lower = [" AU10_r", " AU12_r", " AU14_r", " AU15_r", " AU17_r", " AU20_r", " AU23_r", " AU25_r", " AU26_r"]
    upper = [" AU01_r", " AU02_r", " AU04_r", " AU05_r", " AU06_r", " AU07_r", " AU09_r", " AU45_r"]
    assert value.extras["aue_lower"] == pytest.approx(error[lower].mean().sum(), rel=1e-12)
    assert value.extras["aue_upper"] == pytest.approx(error[upper].mean().sum(), rel=1e-12)


def test_aue_untracked_and_missing_frames_are_nan_and_counted(openface_csv, tmp_path):
    raised = _rewrite(openface_csv, tmp_path / "pred.csv", lambda f, c, t: (
        " 0" if c == "success" and f in (3, 5) else f" {float(t) + 1:.2f}" if c == "AU12_r" else t))
    gaps = _rewrite(openface_csv, tmp_path / "gt.csv", lambda f, c, t: None if f == 7 else t)
    value = _aue(raised, gaps, 10)
    assert np.isnan(value.per_frame[[2, 4, 6]]).all()
    np.testing.assert_allclose(np.delete(value.per_frame, [2, 4, 6]), 1.0, atol=1e-12)
    assert value.aggregate == pytest.approx(1.0) and value.extras["frames_unscored"] == 3
    assert value.extras["frames_pred"] == {"no_row": 0, "untracked": 2, "rows_beyond": 7990}
    assert value.extras["frames_gt"] == {"no_row": 1, "untracked": 0, "rows_beyond": 7990}


def test_aue_reads_headers_without_spaces(openface_csv, tmp_path):
    compact = tmp_path / "compact.csv"
    compact.write_text(openface_csv.read_text().replace(", ", ","))
    assert _aue(compact, openface_csv, 8000).aggregate == 0.0


def test_aue_refuses_bad_or_partial_input(openface_csv, tmp_path, monkeypatch):
    monkeypatch.delenv(aue.OPENFACE_BIN_ENV, raising=False)
    spec = registry.metrics.get("aue@openface-17au")
    metric = registry.load_object(spec.impl)(spec, {})
    frames = np.zeros((3, 1, 1, 3), dtype=np.uint8)
    with pytest.raises(BenchError, match=f"openface_csv_pred=.*{aue.OPENFACE_BIN_ENV}") as nothing:
        metric.compute(MetricInput(pred=frames, gt=frames, audio=None))
    assert "\n" not in str(nothing.value)
    with pytest.raises(BenchError, match="openface_csv_gt is not set"):
        only_pred = {"openface_csv_pred": str(openface_csv)}
        metric.compute(MetricInput(pred=frames, gt=frames, audio=None, options=only_pred))
    no_aus = tmp_path / "landmarks_only.csv"
    no_aus.write_text("frame, face_id, timestamp, confidence, success, x_0\n1, 0, 0.000, 0.98, 1, 12.5\n")
    with pytest.raises(BenchError, match="missing AU01_r"):
        _aue(no_aus, openface_csv, 3)


FAKE_FEATURE_EXTRACTION = """#!{python}
# Stand-in for OpenFace's FeatureExtraction: AU12 intensity = mean pixel value / 100 of each PNG, in name order.
import sys
from pathlib import Path

import numpy as np
from PIL import Image

args = sys.argv[1:]
if {fail!r}:
    sys.exit("Could not find the landmark detection model to load")
assert "-aus" in args
frames = Path(args[args.index("-fdir") + 1])
out = Path(args[args.index("-out_dir") + 1])
out.mkdir(parents=True)
aus = {aus!r}
lines = ["frame, face_id, timestamp, confidence, success, " + ", ".join(au + "_r" for au in aus)]
for number, png in enumerate(sorted(frames.glob("*.png")), start=1):
    level = np.asarray(Image.open(png)).mean() / 100
    values = ", ".join(f"{{level:.2f}}" if au == "AU12" else "0.00" for au in aus)
    lines.append(f"{{number}}, 0, {{(number - 1) * 0.04:.3f}}, 0.98, 1, {{values}}")
(out / (frames.name + ".csv")).write_text("\\n".join(lines) + "\\n")
"""


def _fake_openface(tmp_path: Path, fail: bool = False) -> Path:
    script = tmp_path / "FeatureExtraction"
    script.write_text(FAKE_FEATURE_EXTRACTION.format(python=sys.executable, fail=fail, aus=aue.AUS))
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def test_aue_runs_the_openface_binary_on_written_frames(tmp_path, monkeypatch):
    monkeypatch.setenv(aue.OPENFACE_BIN_ENV, str(_fake_openface(tmp_path)))
    spec = registry.metrics.get("aue@openface-17au")
    gt = np.full((3, 16, 16, 3), 50, dtype=np.uint8)  # AU12 = 0.5
    pred = np.full((3, 16, 16, 3), 100, dtype=np.uint8)  # AU12 = 1.0 ...
    pred[1] = 150  # ... and 1.5 in the second frame
    value = compute_metric(spec, MetricInput(pred=pred, gt=gt, audio=None))
    np.testing.assert_allclose(value.per_frame, [0.25, 1.0, 0.25], atol=1e-12)
    assert value.aggregate == pytest.approx(0.5) and value.extras["aue_lower"] == pytest.approx(0.5)
    assert value.extras["backend"] == "openface-binary"


def test_aue_reports_a_failing_openface_binary_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv(aue.OPENFACE_BIN_ENV, str(_fake_openface(tmp_path, fail=True)))
    spec = registry.metrics.get("aue@openface-17au")
    frames = np.zeros((2, 16, 16, 3), dtype=np.uint8)
    with pytest.raises(BenchError, match="exited 1.*Could not find the landmark detection model") as failed:
        compute_metric(spec, MetricInput(pred=frames, gt=frames, audio=None))
    assert "\n" not in str(failed.value)
    monkeypatch.setenv(aue.OPENFACE_BIN_ENV, str(tmp_path / "missing" / "FeatureExtraction"))
    with pytest.raises(BenchError, match="not an executable"):
        compute_metric(spec, MetricInput(pred=frames, gt=frames, audio=None))


# py-feat's CSVs: the columns Detector.detect(..., save=CSV) writes (py-feat 2.1), landmarks and emotions trimmed
PYFEAT_HEADER = ["frame", "FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore", "x_0", "y_0",
                 *aue.PYFEAT_AUS, "Pitch", "Roll", "Yaw", "happiness", "neutral", "input", "approx_time"]


def _pyfeat_csv(path: Path, rows: list[tuple[int, float, np.ndarray]]) -> Path:
    """A py-feat CSV with one row per (0-based frame, face score, 20 AU probabilities); NaN AUs = no face found."""
    table = pd.DataFrame(
        [[frame, 10.0, 20.0, 100.0, 120.0, score, 1.0, 2.0, *aus, 0.1, 0.2, 0.3, 0.5, 0.5, "clip.mp4", frame / 25]
         for frame, score, aus in rows],
        columns=PYFEAT_HEADER,
    )
    table.to_csv(path, index=False)
    return path


def _pyfeat_aue(pred_csv: Path, gt_csv: Path, n_frames: int):
    spec = registry.metrics.get("aue@pyfeat-xgb-20au")
    frames = np.zeros((n_frames, 1, 1, 3), dtype=np.uint8)
    options = {"pyfeat_csv_pred": str(pred_csv), "pyfeat_csv_gt": str(gt_csv)}
    return compute_metric(spec, MetricInput(pred=frames, gt=frames, audio=None, options=options))


def test_pyfeat_aue_against_the_formula_with_faces_missing_and_doubled(tmp_path):
    rng = np.random.default_rng(7)
    gt_aus, pred_aus = rng.uniform(0, 1, (2, 30, len(aue.PYFEAT_AUS)))
    gt_rows = [(f, 0.99, gt_aus[f]) for f in range(30) if f != 4]  # frame 4: no face in the GT, so no row
    pred_rows = [(f, 0.99, pred_aus[f]) for f in range(30)]
    pred_rows[9] = (9, 0.99, np.full(len(aue.PYFEAT_AUS), np.nan))  # frame 9: a row without a face
    pred_rows.append((12, 0.40, rng.uniform(0, 1, len(aue.PYFEAT_AUS))))  # a second, less certain face: ignored
    value = _pyfeat_aue(_pyfeat_csv(tmp_path / "pred.csv", pred_rows), _pyfeat_csv(tmp_path / "gt.csv", gt_rows), 30)
    # the formula on the frames both sides have, pairing frames by py-feat's 0-based frame number
    kept = [f for f in range(30) if f not in (4, 9)]
    error = (pd.DataFrame(pred_aus[kept]) - pd.DataFrame(gt_aus[kept])) ** 2
    assert value.aggregate == pytest.approx(error.mean().sum(), rel=1e-12)
    lower = [aue.PYFEAT_AUS.index(au) for au in aue.PYFEAT.lower_face]
    upper = [aue.PYFEAT_AUS.index(au) for au in aue.PYFEAT.upper_face]
    assert sorted(lower + upper) == list(range(len(aue.PYFEAT_AUS)))
    assert value.extras["aue_lower"] == pytest.approx(error[lower].mean().sum(), rel=1e-12)
    assert value.extras["aue_upper"] == pytest.approx(error[upper].mean().sum(), rel=1e-12)
    assert np.isnan(value.per_frame[[4, 9]]).all() and value.extras["frames_unscored"] == 2
    assert value.extras["frames_pred"] == {"no_row": 0, "untracked": 1, "rows_beyond": 0}
    assert value.extras["frames_gt"] == {"no_row": 1, "untracked": 0, "rows_beyond": 0}


def test_pyfeat_aue_known_shift_and_one_line_errors(tmp_path):
    aus = np.random.default_rng(8).uniform(0.2, 0.8, (10, len(aue.PYFEAT_AUS)))
    gt = _pyfeat_csv(tmp_path / "gt.csv", [(f, 0.99, aus[f]) for f in range(10)])
    shifted = aus.copy()
    shifted[:, aue.PYFEAT_AUS.index("AU43")] += 0.1  # eyes: upper face
    pred = _pyfeat_csv(tmp_path / "pred.csv", [(f, 0.99, shifted[f]) for f in range(10)])
    value = _pyfeat_aue(pred, gt, 10)
    assert value.aggregate == pytest.approx(0.01, abs=1e-12) and value.extras["aue_upper"] == pytest.approx(0.01)
    assert value.extras["aue_lower"] == 0.0 and value.extras["per_au"]["AU43"] == pytest.approx(0.01)
    spec = registry.metrics.get("aue@pyfeat-xgb-20au")
    frames = np.zeros((3, 1, 1, 3), dtype=np.uint8)
    with pytest.raises(BenchError, match="pyfeat_csv_pred=") as nothing:
        compute_metric(spec, MetricInput(pred=frames, gt=frames, audio=None))
    assert "\n" not in str(nothing.value)
    with pytest.raises(BenchError, match="missing AU01, AU02"):
        _pyfeat_aue(_openface_like(tmp_path), gt, 3)


def _openface_like(tmp_path: Path) -> Path:
    """An OpenFace-style CSV (AU columns named AU01_r ...): not what the py-feat variant reads."""
    path = tmp_path / "openface.csv"
    path.write_text("frame, face_id, confidence, success, " + ", ".join(f"{au}_r" for au in aue.AUS) + "\n"
                    + "1, 0, 0.98, 1, " + ", ".join("0.5" for _ in aue.AUS) + "\n")
    return path
