"""Export: the prepared subject in the folder layout the original SyncTalk/ER-NeRF code reads, plus bench's index.

``synctalk/`` (SyncTalk's ``data/<ID>/`` layout, see ``../shared/docs/synctalk.md`` §1):
- ``aud.wav`` 16 kHz mono; ``bc.jpg``; ``bs.npy`` (N, 52) smoothed ARKit blendshapes; ``au.csv`` when an
  OpenFace CSV was given to the capture step;
- ``ori_imgs/<i>.jpg`` frames and ``ori_imgs/<i>.lms`` (68 x 2, "x y" per line);
- ``parsing/<i>.png`` colour-coded labels (red head, green neck, blue cloth, white background) and
  ``parsing/<i>_face.png`` the soft face-only mask, read by SyncTalk as (255 - G) / 255;
- ``gt_imgs/<i>.jpg`` (background replaced by the plate), ``torso_imgs/<i>.png`` (RGBA), ``face_mask/<i>.png``;
- ``transforms_train.json`` / ``transforms_val.json``: ``focal_len``, ``cx``, ``cy`` and
  ``frames[{img_id, aud_id, transform_matrix}]``, camera-to-world from the bundle-adjusted poses; the first
  floor(N·10/11) frames train, the rest val (= test).
``index.json``: bench's own index (each step's key, version, options and summary; provenance).
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bench.contracts import Split
from bench.datasets.preprocess.core import Step, StepContext

STEP = Step(
    name="export",
    version="1",
    depends=("capture", "torso", "bundle"),
    impl="bench.datasets.preprocess.export:run",
    description="SyncTalk/ER-NeRF data folder (images, parsing, transforms_*.json, bs.npy) and bench's index.json",
    options={"images": True, "jpeg_quality": 95},
)

PARSING_COLOURS = np.array([[255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]], dtype=np.uint8)  # by label


def camera_to_world(rotation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(N, 4, 4) camera-to-world matrices [Rᵀ | -Rᵀ t] from head-to-camera rotations and translations."""
    poses = np.tile(np.eye(4), (len(rotation), 1, 1))
    transposed = np.transpose(rotation, (0, 2, 1))
    poses[:, :3, :3] = transposed
    poses[:, :3, 3] = -np.einsum("nij,nj->ni", transposed, translation)
    return poses


def transforms(pose: Any, frames: range) -> dict[str, Any]:
    c2w = camera_to_world(pose["rotation"], pose["translation"])
    return {
        "focal_len": float(pose["focal"]),
        "cx": float(pose["cx"]),
        "cy": float(pose["cy"]),
        "frames": [{"img_id": i, "aud_id": i, "transform_matrix": c2w[i].tolist()} for i in frames],
    }


def _link(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _write_images(ctx: StepContext, out: Path, quality: int) -> None:
    import cv2
    from tqdm import tqdm

    frames = ctx.frames()
    lms = ctx.load("landmarks", "lms68.npy")
    labels = ctx.load("parsing", "labels.npy")
    face = ctx.load("parsing", "face_soft.npy")
    gt = ctx.load("torso", "gt.npy")
    torso = ctx.load("torso", "torso.npy")
    for folder in ("ori_imgs", "parsing", "gt_imgs", "torso_imgs", "face_mask"):
        (out / folder).mkdir()
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, quality]

    def write(i: int) -> None:
        cv2.imwrite(str(out / "ori_imgs" / f"{i}.jpg"), frames[i][..., ::-1], jpeg)
        np.savetxt(out / "ori_imgs" / f"{i}.lms", lms[i], fmt="%f")
        cv2.imwrite(str(out / "parsing" / f"{i}.png"), PARSING_COLOURS[labels[i]][..., ::-1])
        inverse = 255 - np.asarray(face[i])
        cv2.imwrite(str(out / "parsing" / f"{i}_face.png"), np.dstack([inverse, inverse, np.full_like(inverse, 255)]))
        cv2.imwrite(str(out / "gt_imgs" / f"{i}.jpg"), gt[i][..., ::-1], jpeg)
        cv2.imwrite(str(out / "torso_imgs" / f"{i}.png"), torso[i][..., [2, 1, 0, 3]])
        cv2.imwrite(str(out / "face_mask" / f"{i}.png"), (np.asarray(labels[i]) == 1).astype(np.uint8) * 255)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(tqdm(pool.map(write, range(len(frames))), total=len(frames), desc="export", unit="frame", disable=not ctx.progress))


def run(ctx: StepContext) -> dict[str, Any]:
    from bench import provenance

    out = ctx.out / "synctalk"
    out.mkdir()
    n_frames = ctx.n_frames
    split = Split.for_frames(n_frames)
    pose = dict(np.load(ctx.folder("bundle") / "pose.npz"))
    (out / "transforms_train.json").write_text(json.dumps(transforms(pose, split.train), indent=1))
    (out / "transforms_val.json").write_text(json.dumps(transforms(pose, split.test), indent=1))
    _link(ctx.folder("ingest") / "audio.wav", out / "aud.wav")
    _link(ctx.folder("capture") / "bs.npy", out / "bs.npy")
    csv = ctx.summary("capture").get("openface_csv")
    if csv:
        shutil.copyfile(csv, out / "au.csv")
    import cv2

    cv2.imwrite(str(out / "bc.jpg"), cv2.imread(str(ctx.folder("background") / "bc.png")), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if ctx.options["images"]:
        _write_images(ctx, out, int(ctx.options["jpeg_quality"]))
    index = {
        "subject": ctx.subject.id,
        "source": {"video": str(ctx.subject.video), "sha256": ctx.subject.sha256},
        "n_frames": n_frames,
        "split": {"train": [split.train.start, split.train.stop], "test": [split.test.start, split.test.stop]},
        "steps": {
            name: {"folder": str(folder), **json.loads((folder / "stage.json").read_text())}
            for name, folder in ctx.folders.items()
        },
        "provenance": provenance.snapshot(),
    }
    (ctx.out / "index.json").write_text(json.dumps(index, indent=1, default=str))
    return {"synctalk_folder": "synctalk", "train_frames": len(split.train), "test_frames": len(split.test)}
