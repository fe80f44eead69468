"""AUE, the action-unit error: OpenFace 2.2 AU intensities of the prediction against those of the GT.

AUE = sum over 17 AUs (AU01, 02, 04, 05, 06, 07, 09, 10, 12, 14, 15, 17, 20, 23, 25, 26, 45; the ``_r``
intensity columns) of the mean over frames of (pred - gt)², the formula of TalkingGaussian's ``auerror.py``.
``extras`` has the lower-face split (AU10, 12, 14, 15, 17, 20, 23, 25, 26), the upper-face split (AU01, 02, 04,
05, 06, 07, 09, 45) and each AU's term. The per-frame value is the sum over AUs of (pred - gt)² in that frame,
so the aggregate is its mean over frames.

The AU intensities come from one of two places:
- CSVs the user made with OpenFace's ``FeatureExtraction``, named by the run options ``openface_csv_pred`` and
  ``openface_csv_gt`` (``--metric-option openface_csv_pred=PATH``); frame 1 of each is the first scored frame;
- the ``FeatureExtraction`` binary named by ``BENCH_OPENFACE_BIN``, run on the frames written as PNGs
  (``-fdir DIR -aus -out_dir DIR``).

Frames are matched by OpenFace's ``frame`` column (1-based). A frame that OpenFace did not track
(``success == 0``) or that has no row is NaN and counted; TalkingGaussian instead pairs rows by position and scores
failed frames with the zeros OpenFace writes for them. With several rows for one frame (several faces), the most
confident is taken.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.contracts import BenchError, Metric, MetricInput, MetricKind, MetricSpec, MetricValue

if TYPE_CHECKING:
    import pandas as pd

AUS = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12",
       "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26", "AU45")  # fmt: skip
LOWER_FACE = ("AU10", "AU12", "AU14", "AU15", "AU17", "AU20", "AU23", "AU25", "AU26")
UPPER_FACE = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU45")
INTENSITY_COLUMNS = tuple(f"{au}_r" for au in AUS)

OPENFACE_BIN_ENV = "BENCH_OPENFACE_BIN"
CSV_OPTIONS = ("openface_csv_pred", "openface_csv_gt")

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
)

HOW_TO_PROVIDE = (
    "AUE needs OpenFace 2.2 AU intensities: pass --metric-option openface_csv_pred=PRED.csv "
    "--metric-option openface_csv_gt=GT.csv (FeatureExtraction output), "
    f"or set {OPENFACE_BIN_ENV} to OpenFace's FeatureExtraction binary"
)


def read_au_intensities(path: Path) -> tuple[pd.DataFrame, pd.Series]:
    """The 17 AU intensity columns of an OpenFace CSV, indexed by frame (NaN where ``success == 0``), and whether
    each frame was tracked. OpenFace writes ``", "``-separated headers (``" AU01_r"``); both forms are read.
    """
    import pandas as pd

    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except (OSError, ValueError) as error:
        raise BenchError(f"{path}: not a readable OpenFace CSV ({error})") from error
    table.columns = table.columns.str.strip()
    missing = [c for c in ("frame", "success", *INTENSITY_COLUMNS) if c not in table.columns]
    if missing:
        raise BenchError(f"{path}: not an OpenFace FeatureExtraction CSV with AUs (-aus); missing {', '.join(missing)}")
    if "confidence" in table.columns:
        table = table.sort_values("confidence", ascending=False, kind="stable")
    table = table.drop_duplicates("frame").set_index("frame").sort_index()
    intensities = table.loc[:, list(INTENSITY_COLUMNS)].astype(np.float64)
    tracked = table["success"] != 0
    intensities.loc[~tracked] = np.nan
    return intensities, tracked


def coverage(tracked: pd.Series, n_frames: int) -> dict[str, int]:
    """How many of frames 1..n_frames have no row or an untracked face, and how many rows lie beyond them."""
    scored = tracked[(tracked.index >= 1) & (tracked.index <= n_frames)]
    return {
        "no_row": n_frames - len(scored),
        "untracked": int((~scored).sum()),
        "rows_beyond": int((tracked.index > n_frames).sum()),
    }


def squared_errors(pred: pd.DataFrame, gt: pd.DataFrame, n_frames: int) -> np.ndarray:
    """(n_frames, 17) squared AU differences for frames 1..n_frames; NaN rows where a side has no tracked face."""
    frames = np.arange(1, n_frames + 1)
    difference = pred.reindex(frames).to_numpy() - gt.reindex(frames).to_numpy()
    return difference**2


def aue_value(errors: np.ndarray, **extras: object) -> MetricValue:
    """AUE, its per-frame values and the per-AU terms and face splits from (N, 17) squared errors."""
    from bench.metrics._frames import frame_mean

    per_frame = errors.sum(axis=1)  # NaN where the frame is not scored
    scored = ~np.isnan(per_frame)
    per_au = errors[scored].mean(axis=0) if scored.any() else np.full(len(AUS), np.nan)
    terms = {au: float(v) for au, v in zip(AUS, per_au)}
    return frame_mean(
        per_frame,
        aue_lower=sum(terms[au] for au in LOWER_FACE),
        aue_upper=sum(terms[au] for au in UPPER_FACE),
        per_au=terms,
        **extras,
    )


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
        from bench.hashing import sha256_file

        n_frames = len(data.pred)
        given = {name: data.options.get(name) for name in CSV_OPTIONS}
        if any(given.values()):
            unset = [name for name, value in given.items() if not value]
            if unset:
                raise BenchError(f"AUE from CSVs needs both {' and '.join(CSV_OPTIONS)}; {unset[0]} is not set")
            paths = [Path(str(value)).expanduser() for value in given.values()]
            for path in paths:
                if not path.is_file():
                    raise BenchError(f"{path}: no such OpenFace CSV")
            source = {"backend": "csv", "csv_sha256": {name: sha256_file(p) for name, p in zip(CSV_OPTIONS, paths)}}
            return self._score(paths[0], paths[1], n_frames, source)
        binary_setting = os.environ.get(OPENFACE_BIN_ENV)
        if not binary_setting:
            raise BenchError(HOW_TO_PROVIDE)
        return self._score_with_binary(binary_setting, data, n_frames)

    def _score_with_binary(self, binary_setting: str, data: MetricInput, n_frames: int) -> MetricValue:
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
            return self._score(csvs[0], csvs[1], n_frames, {"backend": "openface-binary", "openface_bin": binary})

    @staticmethod
    def _score(pred_csv: Path, gt_csv: Path, n_frames: int, source: dict) -> MetricValue:
        pred, pred_tracked = read_au_intensities(pred_csv)
        gt, gt_tracked = read_au_intensities(gt_csv)
        return aue_value(
            squared_errors(pred, gt, n_frames),
            **source,
            frames_pred=coverage(pred_tracked, n_frames),
            frames_gt=coverage(gt_tracked, n_frames),
        )
