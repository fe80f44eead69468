"""``bench inspect``: a prepared subject's summary and pictures a person can check at a glance.

Pictures (PNG, matplotlib): ``landmarks.png`` (mesh and 68 points on sample frames), ``masks.png`` (parsing,
face-only soft mask, torso image and background plate), ``pose.png`` (rotation and translation per frame before
and after bundle adjustment, and the focal search), ``blendshapes.png`` (the 7 upper-face coefficients raw and
smoothed, with the eye aspect ratio), ``points.png`` (head keypoints and their tracks).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from bench import home
from bench.datasets.preprocess.capture import UPPER7
from bench.datasets.preprocess.prepared import PreparedSubject, open_prepared

LABEL_COLOURS = np.array([[0, 0, 0], [230, 60, 60], [60, 200, 60], [60, 90, 230]], dtype=np.float32) / 255


def _sample_frames(n_frames: int, count: int = 4) -> list[int]:
    return np.linspace(0, n_frames - 1, count + 2)[1:-1].round().astype(int).tolist()


def _landmarks(prepared: PreparedSubject, plt: Any, out: Path) -> Path:
    frames, mesh, lms = prepared.frames(), prepared.array("landmarks", "mesh.npy"), prepared.array("landmarks", "lms68.npy")
    found = prepared.array("landmarks", "found.npy")
    picks = _sample_frames(len(frames))
    figure, axes = plt.subplots(1, len(picks), figsize=(4 * len(picks), 4.3))
    for axis, index in zip(axes, picks):
        axis.imshow(frames[index])
        axis.scatter(mesh[index, :, 0], mesh[index, :, 1], s=0.4, c="cyan", label="MediaPipe 478")
        axis.scatter(lms[index, :, 0], lms[index, :, 1], s=6, c="red", label="68-point")
        filled = "" if found[index].all() else " (interpolated)"
        axis.set_title(f"frame {index}{filled}")
        axis.axis("off")
    axes[0].legend(loc="lower left", fontsize=7)
    return _save(figure, out / "landmarks.png")


def _masks(prepared: PreparedSubject, plt: Any, out: Path) -> Path:
    frames, labels = prepared.frames(), prepared.array("parsing", "labels.npy")
    face, torso = prepared.array("parsing", "face_soft.npy"), prepared.array("torso", "torso.npy")
    picks = _sample_frames(len(frames), 3)
    figure, axes = plt.subplots(len(picks), 4, figsize=(14, 3.6 * len(picks)))
    checker = (np.indices(frames.shape[1:3]).sum(0) // 16 % 2)[..., None] * 0.25 + 0.6
    for row, index in zip(axes, picks):
        image = frames[index] / 255.0
        row[0].imshow(0.45 * image + 0.55 * LABEL_COLOURS[labels[index]])
        row[0].set_title(f"frame {index}: head red, neck green, torso blue")
        row[1].imshow(image * (face[index][..., None] / 255.0))
        row[1].set_title("face-only soft mask (portrait paste)")
        rgba = torso[index] / 255.0
        row[2].imshow(rgba[..., :3] * rgba[..., 3:] + checker * (1 - rgba[..., 3:]))
        row[2].set_title("torso image (RGBA over checker)")
        row[3].imshow(prepared.array("torso", "gt.npy")[index])
        row[3].set_title("GT: background replaced by the plate")
        for axis in row:
            axis.axis("off")
    return _save(figure, out / "masks.png")


def _background(prepared: PreparedSubject, plt: Any, out: Path) -> Path:
    from PIL import Image

    plate = np.asarray(Image.open(prepared.folder("background") / "bc.png").convert("RGB"))
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.imshow(plate)
    axis.set_title("background plate bc.png")
    axis.axis("off")
    return _save(figure, out / "background.png")


def _pose(prepared: PreparedSubject, plt: Any, out: Path) -> Path:
    raw, stable = prepared.pose(stabilised=False), prepared.pose(stabilised=True)
    figure, axes = plt.subplots(2, 3, figsize=(15, 7), sharex=True)
    names = ("pitch", "yaw", "roll")
    for k in range(3):
        axes[0, k].plot(np.degrees(raw["euler"][:, k]), lw=0.6, label="per-frame fit")
        axes[0, k].plot(np.degrees(stable["euler"][:, k]), lw=0.9, label="bundle-adjusted")
        axes[0, k].set_title(f"euler[{k}] ({names[k]}), degrees")
        axes[1, k].plot(raw["translation"][:, k] * 1000, lw=0.6, label="per-frame fit")
        axes[1, k].plot(stable["translation"][:, k] * 1000, lw=0.9, label="bundle-adjusted")
        axes[1, k].set_title(f"translation {'xyz'[k]}, mm")
        axes[1, k].set_xlabel("frame")
    axes[0, 0].legend(fontsize=8)
    figure.suptitle(f"head pose; focal {float(stable['focal']):.0f} px")
    return _save(figure, out / "pose.png")


def _blendshapes(prepared: PreparedSubject, plt: Any, out: Path) -> Path:
    from bench.datasets.preprocess.capture import eye_aspect_ratio

    raw, smooth = prepared.array("capture", "bs_raw.npy"), prepared.array("capture", "upper7.npy")
    columns = [prepared.summary("capture").get("columns", {}).get(name) for name in UPPER7]
    ear = eye_aspect_ratio(np.asarray(prepared.array("landmarks", "lms68.npy")))
    figure, axes = plt.subplots(len(UPPER7) + 1, 1, figsize=(15, 2 * (len(UPPER7) + 1)), sharex=True)
    for k, (name, column) in enumerate(zip(UPPER7, columns)):
        if column is not None:
            axes[k].plot(raw[:, column], lw=0.5, alpha=0.6, label="raw")
        axes[k].plot(smooth[:, k], lw=0.9, label="Savitzky-Golay 5/3")
        axes[k].set_ylabel(name, rotation=0, ha="right", fontsize=8)
    axes[0].legend(fontsize=8, loc="upper right")
    axes[-1].plot(ear, lw=0.7, c="k")
    axes[-1].set_ylabel("eye aspect\nratio (68 pts)", rotation=0, ha="right", fontsize=8)
    axes[-1].set_xlabel("frame")
    figure.suptitle("upper-face blendshapes (blinks should peak where the eye aspect ratio dips)")
    return _save(figure, out / "blendshapes.png")


def _points(prepared: PreparedSubject, plt: Any, out: Path) -> Path:
    frames = prepared.frames()
    tracks, visible = prepared.array("points", "tracks.npy"), prepared.array("points", "visible.npy")
    reference = int(prepared.summary("points").get("reference_frame", 0))
    figure, axes = plt.subplots(1, 2, figsize=(12, 6))
    axes[0].imshow(frames[reference])
    axes[0].scatter(tracks[reference, :, 0], tracks[reference, :, 1], s=5, c="yellow")
    axes[0].set_title(f"{tracks.shape[1]} head keypoints on reference frame {reference}")
    axes[1].imshow(frames[reference], alpha=0.5)
    for k in range(0, tracks.shape[1], max(1, tracks.shape[1] // 60)):
        seen = visible[:, k]
        axes[1].plot(tracks[seen, k, 0], tracks[seen, k, 1], lw=0.5)
    axes[1].set_title("tracks over the clip (every visible frame)")
    for axis in axes:
        axis.axis("off")
    return _save(figure, out / "points.png")


def _save(figure: Any, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path


def _summary_lines(prepared: PreparedSubject) -> list[str]:
    lines = [f"subject {prepared.id}: {prepared.n_frames} frames from {prepared.video}"]
    for step, folder in prepared.folders.items():
        record = json.loads((folder / "stage.json").read_text())
        outputs = json.dumps(record.get("outputs", {}), default=str)
        lines.append(f"  {step:<11} {record.get('seconds', 0):8.1f} s  {outputs[:300]}{'…' if len(outputs) > 300 else ''}")
    return lines


def inspect(subject_id: str, out: Path | None = None) -> dict[str, Any]:
    """Write the pictures of every finished step and return the summary lines and picture paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    prepared = open_prepared(subject_id)
    out = out or home.bench_home() / "inspect" / subject_id
    out.mkdir(parents=True, exist_ok=True)
    makers = (
        (("landmarks",), _landmarks),
        (("parsing", "torso"), _masks),
        (("background",), _background),
        (("pose", "bundle"), _pose),
        (("capture", "landmarks"), _blendshapes),
        (("points",), _points),
    )
    pictures = [make(prepared, plt, out) for needs, make in makers if all(s in prepared.folders for s in needs)]
    return {"lines": _summary_lines(prepared), "pictures": pictures}
