"""SyncTalk as a bench method: a thin composition of engine parts (``bench.methods.engine``).

The model is the engine's tri-plane hash head field (``fields.HeadField``) with SyncTalk's conditioning: the audio
front end the config resolves to (the audio-visual encoder, or the mel encoder trained end to end without its
weights), the 7 upper-face blendshapes of the Facial Animation Capturer (or ER-NeRF's AU45 blink), the
facial-aware masked attention (the paper's region masks on the fitted face, the released code's attention losses,
or none) and the bundle-adjusted head poses of the Head-Sync Stabilizer (or the raw tracker fit). Training,
rendering, the torso stage and the Portrait-Sync Generator (the portrait track) are the engine's
(``engine.method.TalkingHeadMethod``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bench.contracts import BenchError
from bench.methods.engine.method import TalkingHeadMethod

MASKED_ATTENTION = ("paper", "code", "off")


def face_vertices(prepared) -> np.ndarray:
    """The subject's fitted 3-D face model (head frame, metres): the mean of the pose step's per-frame model points,
    else MediaPipe's canonical face."""
    from bench.datasets.preprocess import face_model

    pose = prepared.pose(stabilised=False)
    if "model_points" in pose:
        return np.asarray(pose["model_points"], dtype=np.float32).mean(axis=0)
    return np.asarray(face_model.mediapipe_canonical().points, dtype=np.float32)


class SyncTalk(TalkingHeadMethod):
    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> None:
        super().check_config(config)
        if config["pose"] not in ("stabilised", "raw"):
            raise BenchError(f"pose={config['pose']!r}: use stabilised or raw")
        if config["masked_attention"] not in MASKED_ATTENTION:
            raise BenchError(f"masked_attention={config['masked_attention']!r}: use paper, code or off")
        if config["expression"] not in ("blendshapes", "au45"):
            raise BenchError(f"expression={config['expression']!r}: use blendshapes or au45")

    def build_model(self, prepared, data, audio_kind: str):
        import torch

        from bench.methods.engine.fields import HeadField, region_boxes
        from bench.methods.engine.model import TalkingHeadModel

        config = self.config
        boxes = (None, None)
        if config["masked_attention"] == "paper":
            vertices = torch.from_numpy(face_vertices(prepared))
            boxes = region_boxes(vertices[:, [1, 2, 0]] * 4.0)
        field = HeadField(
            expression_dim=data.expressions.shape[1],
            n_codes=data.split.train.stop,
            levels=config["levels"],
            lip_box=boxes[0],
            expression_box=boxes[1],
            backend=config["grid_backend"],
        )
        return TalkingHeadModel(field, audio_kind, grid_resolution=config["grid_resolution"], max_steps=config["max_steps"])
