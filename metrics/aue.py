"""AUE, the action-unit error: AU values of the prediction against those of the GT, from one AU tool.

AUE = sum over the tool's AUs of the mean over frames of (pred - gt)², the formula of TalkingGaussian's
``auerror.py``. ``extras`` has the lower-face and upper-face splits and each AU's term. The per-frame value is the
sum over AUs of (pred - gt)² in that frame, so the aggregate is its mean over frames. Two variants, one per tool;
their numbers are not comparable with each other:

- ``aue@openface-17au`` (the paper's): OpenFace 2.2 intensities (0 to 5) of AU01, 02, 04, 05, 06, 07, 09, 10, 12,
  14, 15, 17, 20, 23, 25, 26, 45 (the ``_r`` columns); lower face AU10, 12, 14, 15, 17, 20, 23, 25, 26, upper face
  AU01, 02, 04, 05, 06, 07, 09, 45. From CSVs the user made with OpenFace's ``FeatureExtraction``
  (``--metric-option openface_csv_pred=PATH`` and ``openface_csv_gt=PATH``), or from the ``FeatureExtraction``
  binary named by ``BENCH_OPENFACE_BIN``, run on the frames written as PNGs (``-fdir DIR -aus -out_dir DIR``).
  Frames are matched by OpenFace's 1-based ``frame`` column; an untracked frame (``success == 0``) is NaN.
- ``aue@pyfeat-xgb-20au``: py-feat's default AU model (``Detector(au_model="xgb")``), whose 20 outputs are AU
  occurrence probabilities (0 to 1): AU01, 02, 04, 05, 06, 07, 09, 10, 11, 12, 14, 15, 17, 20, 23, 24, 25, 26, 28,
  43; lower face AU10, 11, 12, 14, 15, 17, 20, 23, 24, 25, 26, 28, upper face AU01, 02, 04, 05, 06, 07, 09, 43. From
  the CSVs py-feat writes (``Detector().detect(video, data_type="video", save=CSV)``; ``--metric-option
  pyfeat_csv_pred=PATH`` and ``pyfeat_csv_gt=PATH``). Frames are matched by py-feat's 0-based ``frame`` column; a
  frame without a face (no row, or NaN AUs) is NaN. bench does not run py-feat's detector itself: its model files
  download at run time from py-feat's releases with no published sha256, so they cannot go through bench's asset
  registry.

A frame that has no row or no tracked face on either side is NaN and counted (``frames_pred``/``frames_gt``);
TalkingGaussian instead pairs rows by position and scores failed frames with the zeros OpenFace writes for them.
With several rows for one frame (several faces), the most confident is taken.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.contracts import BenchError, Metric, MetricInput, MetricKind, MetricSpec, MetricValue

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class AUTool:
    """An AU extractor as its CSVs present it: which AUs, in which columns, and how frames and faces are marked."""

    name: str
    aus: tuple[str, ...]
    columns: tuple[str, ...]  # the column of each AU
    lower_face: tuple[str, ...]
    upper_face: tuple[str, ...]
    first_frame: int  # the ``frame`` number of the first video frame
    confidence: str  # the column that ranks several faces in one frame
    success: str | None  # a column that is 0 for untracked frames; None: NaN AU values mark them
    csv_options: tuple[str, str]  # run options naming the prediction's and the GT's CSV


AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
       "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")  # fmt: skip
OPENFACE = AUTool(
    name="OpenFace",
    aus=AUS,
    columns=tuple(f"{au}_r" for au in AUS),
    lower_face=("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26"),
    upper_face=("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU45"),
    first_frame=1,
    confidence="confidence",
    success="success",
    csv_options=("openface_csv_pred", "openface_csv_gt"),
)
PYFEAT_AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU11", "AU12",
              "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28", "AU43")  # fmt: skip
PYFEAT = AUTool(
    name="py-feat",
    aus=PYFEAT_AUS,
    columns=PYFEAT_AUS,
    lower_face=("AU10", "AU11", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU24", "AU25", "AU26", "AU28"),
    upper_face=("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU43"),
    first_frame=0,
    confidence="FaceScore",
    success=None,
    csv_options=("pyfeat_csv_pred", "pyfeat_csv_gt"),
)

OPENFACE_BIN_ENV = "BENCH_OPENFACE_BIN"

SPECS = (
    MetricSpec(
        id="aue",
        variant="aue@openface-17au",
        impl="bench.metrics.aue:OpenFaceAUE",
        higher_is_better=False,
        kind=MetricKind.FULL_REFERENCE,
        description="sum over 17 OpenFace 2.2 AU intensities (_r) of the mean over frames of (pred-gt)² "
        "(TalkingGaussian auerror.py); from user CSVs or BENCH_OPENFACE_BIN; lower/upper-face splits in extras",
        requires=("pandas",),
    ),
    MetricSpec(
        id="aue",
        variant="aue@pyfeat-xgb-20au",
        impl="bench.metrics.aue:PyFeatAUE",
        higher_is_better=False,
        kind=MetricKind.FULL_REFERENCE,
        description="sum over py-feat's 20 xgb AU probabilities of the mean over frames of (pred-gt)²; from the "
        "CSVs py-feat's Detector writes; lower/upper-face splits in extras",
        requires=("pandas",),
    ),
)

HOW_TO_PROVIDE = {
    "OpenFace": "AUE needs OpenFace 2.2 AU intensities: pass --metric-option openface_csv_pred=PRED.csv "
    "--metric-option openface_csv_gt=GT.csv (FeatureExtraction output), "
    f"or set {OPENFACE_BIN_ENV} to OpenFace's FeatureExtraction binary",
    "py-feat": "AUE (py-feat) needs the CSVs py-feat writes for both videos "
    "(feat.Detector().detect(VIDEO, data_type='video', save='PRED.csv')): pass --metric-option "
    "pyfeat_csv_pred=PRED.csv --metric-option pyfeat_csv_gt=GT.csv",
}


def read_au_values(path: Path, tool: AUTool) -> tuple[pd.DataFrame, pd.Series]:
    """The tool's AU columns of its CSV, renamed to the AUs and indexed by frame (NaN where the face is untracked),
    and whether each frame was tracked. OpenFace writes ``", "``-separated headers (``" AU01_r"``); both forms are
    read."""
    import pandas as pd

    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError) as error:
        raise BenchError(f"{path}: not a readable {tool.name} CSV ({error})") from error
    table.columns = table.columns.str.strip()
    needed = ("frame", *((tool.success,) if tool.success else ()), *tool.columns)
    missing = [c for c in needed if c not in table.columns]
    if missing:
        raise BenchError(f"{path}: not a {tool.name} CSV with AU values; missing {', '.join(missing)}")
    if tool.confidence in table.columns:
        table = table.sort_values(tool.confidence, ascending=False, kind="stable")
    table = table.drop_duplicates("frame").set_index("frame").sort_index()
    values = table.loc[:, list(tool.columns)].astype(np.float64)
    values.columns = list(tool.aus)
    tracked = table[tool.success] != 0 if tool.success else values.notna().all(axis=1)
    values.loc[~tracked] = np.nan
    return values, tracked


def coverage(tracked: pd.Series, frame_numbers: np.ndarray) -> dict[str, int]:
    """How many of the scored frames have no row or an untracked face, and how many rows lie beyond them."""
    scored = tracked[tracked.index.isin(frame_numbers)]
    return {
        "no_row": len(frame_numbers) - len(scored),
        "untracked": int((~scored).sum()),
        "rows_beyond": int((tracked.index > frame_numbers[-1]).sum()),
    }


def squared_errors(pred: pd.DataFrame, gt: pd.DataFrame, frame_numbers: np.ndarray) -> np.ndarray:
    """(frames, AUs) squared AU differences of the scored frames; NaN rows where a side has no tracked face."""
    difference = pred.reindex(frame_numbers).to_numpy() - gt.reindex(frame_numbers).to_numpy()
    return difference**2


def aue_value(errors: np.ndarray, tool: AUTool, **extras: object) -> MetricValue:
    """AUE, its per-frame values and the per-AU terms and face splits from (N, AUs) squared errors."""
    from bench.metrics._frames import frame_mean

    per_frame = errors.sum(axis=1)  # NaN where the frame is not scored
    scored = ~np.isnan(per_frame)
    per_au = errors[scored].mean(axis=0) if scored.any() else np.full(len(tool.aus), np.nan)
    terms = {au: float(v) for au, v in zip(tool.aus, per_au)}
    return frame_mean(
        per_frame,
        aue_lower=sum(terms[au] for au in tool.lower_face),
        aue_upper=sum(terms[au] for au in tool.upper_face),
        per_au=terms,
        **extras,
    )


def score_csvs(pred_csv: Path, gt_csv: Path, n_frames: int, tool: AUTool, source: dict) -> MetricValue:
    """AUE of the first ``n_frames`` video frames from the tool's CSVs for the prediction and the GT."""
    frame_numbers = np.arange(tool.first_frame, tool.first_frame + n_frames)
    pred, pred_tracked = read_au_values(pred_csv, tool)
    gt, gt_tracked = read_au_values(gt_csv, tool)
    return aue_value(
        squared_errors(pred, gt, frame_numbers),
        tool,
        **source,
        frames_pred=coverage(pred_tracked, frame_numbers),
        frames_gt=coverage(gt_tracked, frame_numbers),
    )


def given_csvs(data: MetricInput, tool: AUTool) -> tuple[Path, Path] | None:
    """The prediction's and GT's CSVs named by the run options, checked; None when neither is given."""
    given = {name: data.options.get(name) for name in tool.csv_options}
    if not any(given.values()):
        return None
    unset = [name for name, value in given.items() if not value]
    if unset:
        raise BenchError(f"AUE from CSVs needs both {' and '.join(tool.csv_options)}; {unset[0]} is not set")
    pred, gt = (Path(str(value)).expanduser() for value in given.values())
    for path in (pred, gt):
        if not path.is_file():
            raise BenchError(f"{path}: no such {tool.name} CSV")
    return pred, gt


def score_given_csvs(data: MetricInput, tool: AUTool) -> MetricValue | None:
    """AUE from the CSVs the run options name, with their sha256s as provenance; None when none are named."""
    from bench.hashing import sha256_file

    paths = given_csvs(data, tool)
    if paths is None:
        return None
    source = {"backend": "csv", "csv_sha256": {name: sha256_file(p) for name, p in zip(tool.csv_options, paths)}}
    return score_csvs(*paths, len(data.pred), tool, source)


def run_feature_extraction(binary: str, frames: np.ndarray, workdir: Path) -> Path:
    """Write ``frames`` as PNGs into ``workdir/frames`` and run OpenFace on them; the path of its CSV."""
    import subprocess

    from PIL import Image

    image_dir = workdir / "frames"
    out_dir = workdir / "openface"
    image_dir.mkdir()
    for number in range(len(frames)):
        Image.fromarray(np.asarray(frames[number])).save(image_dir / f"{number + 1:06d}.png", compress_level=1)
    command = [binary, "-fdir", str(image_dir), "-aus", "-out_dir", str(out_dir)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        output = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise BenchError(f"OpenFace FeatureExtraction exited {result.returncode} ({' '.join(command)}): {output}")
    csvs = sorted(out_dir.glob("*.csv")) if out_dir.is_dir() else []
    if len(csvs) != 1:
        raise BenchError(f"OpenFace FeatureExtraction wrote {len(csvs)} CSV files to {out_dir}; expected one")
    return csvs[0]


class OpenFaceAUE(Metric):
    def compute(self, data: MetricInput) -> MetricValue:
        value = score_given_csvs(data, OPENFACE)
        if value is not None:
            return value
        binary_setting = os.environ.get(OPENFACE_BIN_ENV)
        if not binary_setting:
            raise BenchError(HOW_TO_PROVIDE[OPENFACE.name])
        return self._score_with_binary(binary_setting, data)

    @staticmethod
    def _score_with_binary(binary_setting: str, data: MetricInput) -> MetricValue:
        import shutil
        import tempfile

        binary = shutil.which(binary_setting)
        if binary is None:
            raise BenchError(f"{OPENFACE_BIN_ENV}={binary_setting}: not an executable file")
        with tempfile.TemporaryDirectory(prefix="bench-openface-") as scratch:
            csvs = []
            for name, frames in (("pred", data.pred), ("gt", data.gt)):
                workdir = Path(scratch) / name
                workdir.mkdir()
                csvs.append(run_feature_extraction(binary, frames, workdir))
            source = {"backend": "openface-binary", "openface_bin": binary}
            return score_csvs(csvs[0], csvs[1], len(data.pred), OPENFACE, source)


class PyFeatAUE(Metric):
    def compute(self, data: MetricInput) -> MetricValue:
        value = score_given_csvs(data, PYFEAT)
        if value is None:
            raise BenchError(HOW_TO_PROVIDE[PYFEAT.name])
        return value
