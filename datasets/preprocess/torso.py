"""Torso: ground-truth frames on the background plate and RGBA torso images (SyncTalk preprocessing step 5).

Per frame, with the parsing labels (0 background, 1 head, 2 neck, 3 torso) and the plate ``bc``:

- ``gt.npy``: the frame with its background pixels replaced by the plate.
- ``torso.npy`` (RGBA): the gt frame with the head replaced by the plate, then two vertical in-paints upward:
  * torso: in each column whose topmost torso pixel has a head pixel right above it, that pixel's colour is
    copied to it and the 8 pixels above, the k-th one up darkened by 0.98^k;
  * neck: the neck mask is first grown 3 px up and down; in each column whose topmost (grown) neck pixel has a
    head pixel right above it, the source pixel is that top pixel moved down by min(4, neck pixels in the
    column - 1); it and the 52 pixels above get colours fading linearly from the source colour (k = 0) to the
    mean colour of the grown neck in the gt frame (k = 52), SyncTalk's "fill the dark gap with the average neck
    colour". The neck strip is then replaced by its 5 x 5 Gaussian blur (sigma 4: SyncTalk passes
    ``cv2.BORDER_DEFAULT``, whose value is 4, as sigma), the torso strip is not.
  Alpha is 255 on the torso, the grown neck and both strips, and 0 (with RGB 0) elsewhere.
Colours are truncated to uint8 as SyncTalk's assignment into uint8 images does. Where SyncTalk's indices would
go above the top row (negative rows wrap around in NumPy) the strip is cut at the top row instead.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from bench.datasets.preprocess.core import Step, StepContext

STEP = Step(
    name="torso",
    version="1",
    depends=("parsing", "background"),
    impl="bench.datasets.preprocess.torso:run",
    description="gt frames on the background plate and RGBA torso images with the head removed and the neck gap filled",
    options={},
)

BACKGROUND, HEAD, NECK, TORSO = 0, 1, 2, 3
TORSO_STRIP = 9  # pixels, the top torso pixel included
TORSO_DARKEN = 0.98
NECK_GROW = 3
NECK_PUSH_DOWN = 4
NECK_STRIP = 48 + NECK_PUSH_DOWN + 1
BLUR_KERNEL = 5
BLUR_SIGMA = 4.0


def _tops_under_head(part: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(columns, top rows, pixel counts) of the columns whose topmost ``part`` pixel has a head pixel above it."""
    present = part.any(axis=0)
    top = np.argmax(part, axis=0)
    columns = np.nonzero(present & (top >= 1))[0]
    columns = columns[head[top[columns] - 1, columns]]
    return columns, top[columns], part[:, columns].sum(axis=0)


def _strip(rows: np.ndarray, columns: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column indices (length, m) of strips going up from ``rows`` and the mask of those inside the image."""
    strip_rows = rows[None, :] - np.arange(length)[:, None]
    strip_columns = np.broadcast_to(columns[None, :], strip_rows.shape)
    return strip_rows, strip_columns, strip_rows >= 0


def torso_frame(
    frame: np.ndarray, labels: np.ndarray, plate: np.ndarray
) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """(gt (H, W, 3), torso RGBA (H, W, 4), in-painted column counts) of one frame; see the module docstring."""
    import cv2

    head, neck, torso = labels == HEAD, labels == NECK, labels == TORSO
    gt = np.where((labels == BACKGROUND)[..., None], plate, frame)
    image = np.where(head[..., None], plate, gt)

    torso_strip = np.zeros_like(torso)
    columns, rows, _ = _tops_under_head(torso, head)
    strip_rows, strip_columns, inside = _strip(rows, columns, TORSO_STRIP)
    darkening = TORSO_DARKEN ** np.arange(TORSO_STRIP)[:, None, None]
    colours = (gt[rows, columns][None].astype(np.float64) * darkening).astype(np.uint8)
    image[strip_rows[inside], strip_columns[inside]] = colours[inside]
    torso_strip[strip_rows[inside], strip_columns[inside]] = True

    grown = cv2.dilate(neck.astype(np.uint8), np.ones((2 * NECK_GROW + 1, 1), np.uint8)).astype(bool)
    neck_strip = np.zeros_like(grown)
    columns, rows, counts = _tops_under_head(grown, head)
    if len(columns):
        rows = rows + np.minimum(counts - 1, NECK_PUSH_DOWN)
        strip_rows, strip_columns, inside = _strip(rows, columns, NECK_STRIP)
        weight = np.linspace(1, 0, NECK_STRIP)[:, None, None]
        mean_neck = gt[grown].mean(axis=0)
        colours = (gt[rows, columns][None] * weight + mean_neck * (1 - weight)).astype(np.uint8)
        image[strip_rows[inside], strip_columns[inside]] = colours[inside]
        neck_strip[strip_rows[inside], strip_columns[inside]] = True
        blurred = cv2.GaussianBlur(image, (BLUR_KERNEL, BLUR_KERNEL), BLUR_SIGMA)
        image[neck_strip] = blurred[neck_strip]

    keep = grown | torso | neck_strip | torso_strip
    rgba = np.zeros(labels.shape + (4,), np.uint8)
    rgba[keep, :3] = image[keep]
    rgba[keep, 3] = 255
    return gt, rgba, {"torso_columns": int(torso_strip.any(axis=0).sum()), "neck_columns": len(columns)}


def run(ctx: StepContext) -> dict[str, Any]:
    import cv2
    from numpy.lib.format import open_memmap
    from tqdm import tqdm

    started = time.time()
    frames = ctx.frames()
    labels = ctx.load("parsing", "labels.npy")
    plate = cv2.imread(str(ctx.folder("background") / "bc.png"))[..., ::-1]
    n, height, width = frames.shape[:3]
    gt_out = open_memmap(ctx.out / "gt.npy", mode="w+", dtype=np.uint8, shape=(n, height, width, 3))
    torso_out = open_memmap(ctx.out / "torso.npy", mode="w+", dtype=np.uint8, shape=(n, height, width, 4))
    torso_columns, neck_columns = [], []
    for index in tqdm(range(n), desc="torso", unit="frame", disable=not ctx.progress):
        gt, rgba, counts = torso_frame(np.asarray(frames[index]), np.asarray(labels[index]), plate)
        gt_out[index] = gt
        torso_out[index] = rgba
        torso_columns.append(counts["torso_columns"])
        neck_columns.append(counts["neck_columns"])
    gt_out.flush()
    torso_out.flush()
    neck_columns_array = np.array(neck_columns)
    return {
        "frames": n,
        "mean_torso_inpaint_columns": round(float(np.mean(torso_columns)), 1),
        "mean_neck_inpaint_columns": round(float(neck_columns_array.mean()), 1),
        "frames_without_neck_inpaint": int((neck_columns_array == 0).sum()),
        "seconds": round(time.time() - started, 2),
    }
