"""SyncTalk's head field and trainer: masked attention, SH basis, replay order, training and exact resume."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.contracts import Split
from bench.methods.engine.data import SubjectData
from bench.methods.engine.fields import HeadField, region_boxes, sh_orthonormality_error
from bench.methods.engine.model import TalkingHeadModel, mirror_index
from bench.methods.engine.training import Trainer

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def test_spherical_harmonics_are_orthonormal():
    assert sh_orthonormality_error() < 0.02


def test_head_field_masks_attention_to_regions_and_backpropagates():
    vertices = torch.tensor(np.random.default_rng(0).normal(size=(468, 3)) * 0.1, dtype=torch.float32)
    vertices[1] = torch.tensor([0.0, 0.0, 0.0])  # nose tip at the origin
    lip, expression = region_boxes(vertices)
    field = HeadField(expression_dim=7, n_codes=4, lip_box=lip, expression_box=expression, backend="torch")
    below = torch.tensor([[-0.15, 0.0, 0.0]])  # NGP axis 0 is the head's up axis
    above = torch.tensor([[0.15, 0.0, 0.0]])
    out_below = field.density(below, torch.ones(32), torch.ones(7))
    out_above = field.density(above, torch.ones(32), torch.ones(7))
    expression_below, expression_above = (float(o["ambient_expression"].detach()) for o in (out_below, out_above))
    audio_below, audio_above = (float(o["ambient_audio"].detach()) for o in (out_below, out_above))
    # each region keeps its own attention (not all zeroed) and the other region's is masked to a small fraction
    assert expression_above > 1e-6 and audio_below > 1e-6
    assert expression_below < 0.05 * expression_above and audio_above < 0.05 * audio_below
    points = torch.rand(64, 3) - 0.5
    out = field(points, torch.nn.functional.normalize(torch.randn(64, 3), dim=-1), torch.randn(32), torch.rand(7), 1)
    out["rgb"].sum().backward()
    assert field.encoder.encoder_xy.embeddings.grad is not None and field.color_net[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("n", [1, 3, 5])
def test_mirror_index_ping_pongs_over_the_training_frames(n):
    sequence = [mirror_index(i, n) for i in range(3 * n)]
    expected = (list(range(n)) + list(range(n - 1, -1, -1)) + list(range(n)))[: 3 * n]
    assert sequence == expected


def _synthetic_subject(n: int = 12, side: int = 32) -> SubjectData:
    """A red disc (the "head") over a grey background, seen by a camera on the NGP -z axis at distance 2.5."""
    ys, xs = np.mgrid[0:side, 0:side] + 0.5
    disc = (xs - side / 2) ** 2 + (ys - side / 2) ** 2 < (side / 4) ** 2
    images = np.full((n, side, side, 3), 90, dtype=np.uint8)
    images[:, disc] = (220, 40, 40)
    pose = torch.eye(4)
    pose[2, 3] = -2.5
    rects = torch.tensor([[8, 24, 16, 24]] * n)
    return SubjectData(
        size=side, frame_size=side, images=torch.from_numpy(images),
        backgrounds=torch.full((n, side, side, 3), 90, dtype=torch.uint8), poses=pose.expand(n, 4, 4).clone(),
        focal=2.5 * side, expressions=torch.rand(n, 7, generator=torch.Generator().manual_seed(0)),
        rects={"lips": rects, "lower": rects}, split=Split.for_frames(n),
    )


CONFIG = {"iters_coarse": 40, "iters_fine": 8, "rays": 256, "patch_size": 8, "lr_grid": 3e-2, "lr_net": 3e-3,
          "ema_every": 2, "grid_update_every": 8, "checkpoint_every": 12, "masked_attention": "code"}


def _trainer(data: SubjectData) -> Trainer:
    torch.manual_seed(0)
    field = HeadField(expression_dim=7, n_codes=len(data.images), levels=4, log2_table=10, backend="torch")
    model = TalkingHeadModel(field, "mel", grid_resolution=16, max_steps=8)
    audio = torch.randn(len(data.images), 1, 80, 16, generator=torch.Generator().manual_seed(1))
    return Trainer(model, data, audio, dict(CONFIG), seed=3, device=torch.device("cpu"), lpips=None)


def test_training_lowers_the_loss_and_resuming_gives_the_uninterrupted_weights(tmp_path):
    data = _synthetic_subject()
    straight = _trainer(data)
    (tmp_path / "a").mkdir()
    losses = straight.train(tmp_path / "a", progress=False).losses
    assert np.mean(losses[-8:]) < 0.5 * np.mean(losses[:4]), f"loss {np.mean(losses[:4]):.4f} -> {np.mean(losses[-8:]):.4f}"

    (tmp_path / "b").mkdir()
    interrupted = _trainer(data)
    interrupted.train(tmp_path / "b", until=24, progress=False)  # checkpoints at step 12 and 24
    resumed = _trainer(data)
    assert resumed.load(tmp_path / "b") and resumed.state.step == 24
    resumed.train(tmp_path / "b", progress=False)
    for (name, want), got in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(want, got), f"{name} differs after resuming"
    for want, got in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(want, got)


def test_torso_field_learns_the_torso_behind_a_frozen_head_and_resumes_exactly(tmp_path):
    from bench.methods.engine.torso import TorsoField, TorsoTrainer, frequency_encode, pixel_coordinates

    assert frequency_encode(torch.zeros(5, 2), 8).shape == (5, 34) and frequency_encode(torch.zeros(1, 6), 3).shape == (1, 42)
    data = _synthetic_subject(side=32)
    data.images[:, 24:, 6:26] = torch.tensor([30, 60, 200], dtype=torch.uint8)  # a blue "torso" the plate lacks
    plate = torch.full((32, 32, 3), 90, dtype=torch.uint8)
    head = _trainer(data).ema  # untrained: its empty occupancy grid lets every ray through to the torso
    config = {"rays": 256, "lr_grid": 3e-2, "lr_net": 3e-3, "iters_torso": 200, "checkpoint_every": 50}
    audio = torch.randn(len(data.images), 1, 80, 16, generator=torch.Generator().manual_seed(1))

    def trainer() -> TorsoTrainer:
        torch.manual_seed(0)
        return TorsoTrainer(head, TorsoField(n_codes=len(data.images)), data, plate, audio, config, 5, torch.device("cpu"))

    straight = trainer()
    (tmp_path / "a").mkdir()
    straight.train(tmp_path / "a", progress=False)
    losses = straight.losses
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5]), f"loss {np.mean(losses[:5]):.4f} -> {np.mean(losses[-10:]):.4f}"
    with torch.no_grad():
        alpha, colour, _ = straight.torso(pixel_coordinates(32), data.poses[0], 0)
    alpha = alpha.reshape(32, 32)
    assert alpha[26:, 10:22].mean() > 0.5 and alpha[:4].mean() < 0.3  # opaque on the torso, clear where the plate shows
    assert colour.reshape(32, 32, 3)[26:, 10:22, 2].mean() > 0.6  # blue

    (tmp_path / "b").mkdir()
    interrupted = trainer()
    interrupted.train(tmp_path / "b", until=100, progress=False)
    resumed = trainer()
    assert resumed.load(tmp_path / "b") and resumed.step_count == 100
    resumed.train(tmp_path / "b", progress=False)
    for (name, want), got in zip(straight.torso.state_dict().items(), resumed.torso.state_dict().values()):
        assert torch.equal(want, got), f"{name} differs after resuming"
