"""LPIPS as SyncTalk computes it: ``lpips.LPIPS(net='alex')`` (v0.1 linear heads) on the full frame, inputs in
[0, 1] with ``normalize=True`` (the package maps them to [-1, 1]), one value per frame, then the mean.

The network is the ``lpips`` package's own module; only where its weights come from differs. ``LPIPS(net=...)``
would download torchvision's ImageNet backbone into the torch hub cache. bench builds it with
``pnet_rand=True`` (no download) and loads the backbone from its asset: the file is loaded into
``torchvision.models.<arch>()`` (strict, as torchvision itself loads it), then each of that model's ``features``
layers is copied into the LPIPS slice that holds the same layer index. The linear heads are the v0.1 files the
lpips wheel ships, also resolved as assets so their sha256 is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.contracts import BenchError, Metric, MetricInput, MetricKind, MetricSpec, MetricValue

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class LpipsNet:
    """One LPIPS trunk: the lpips ``net`` name, torchvision's builder, and the two assets it needs."""

    net: str
    torchvision_arch: str
    backbone_asset: str
    heads_asset: str


NETS = {
    "lpips@alex-v0.1": LpipsNet("alex", "alexnet", "torchvision_alexnet", "lpips_alex_heads_v01"),
    "lpips@vgg-v0.1": LpipsNet("vgg", "vgg16", "torchvision_vgg16", "lpips_vgg_heads_v01"),
}
MIN_SIDE = 32  # below this AlexNet's last LPIPS layer has no spatial extent left


def _spec(variant: str, description: str) -> MetricSpec:
    net = NETS[variant]
    return MetricSpec(
        id="lpips",
        variant=variant,
        impl="bench.metrics.lpips:LPIPSMetric",
        higher_is_better=False,
        kind=MetricKind.FULL_REFERENCE,
        description=description,
        assets=(net.backbone_asset, net.heads_asset),
        requires=("torch", "torchvision", "lpips"),
    )


SPECS = (
    _spec("lpips@alex-v0.1", "LPIPS v0.1, AlexNet trunk, full frame in [0,1] (normalize=True), frame mean (SyncTalk)"),
    _spec("lpips@vgg-v0.1", "LPIPS v0.1, VGG16 trunk, full frame in [0,1] (normalize=True), frame mean"),
)


def build_lpips(net: LpipsNet, backbone_path: Path, heads_path: Path) -> torch.nn.Module:
    """``lpips.LPIPS`` for ``net`` with its ImageNet backbone read from ``backbone_path`` (torchvision's file)."""
    import warnings

    import lpips
    import torch
    import torchvision

    with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=` argument
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net=net.net, version="0.1", pnet_rand=True, model_path=str(heads_path), verbose=False)
    reference = getattr(torchvision.models, net.torchvision_arch)(weights=None)
    try:
        reference.load_state_dict(torch.load(backbone_path, map_location="cpu", weights_only=True))
    except RuntimeError as error:
        reason = str(error).splitlines()[0]
        raise BenchError(f"{backbone_path}: not a torchvision {net.torchvision_arch} state dict ({reason})") from error
    for trunk_slice in model.net.children():
        for index, layer in trunk_slice.named_children():
            layer.load_state_dict(reference.features[int(index)].state_dict())
    return model.eval()


class LPIPSMetric(Metric):
    """One LPIPS variant; its trunk is ``NETS[spec.variant]``."""

    batch_size = 4

    def compute(self, data: MetricInput) -> MetricValue:
        import torch

        from bench.metrics._frames import batches, frame_mean, require_min_side, torch_device, unit_tensor

        require_min_side("LPIPS", data.pred, MIN_SIDE)
        net = NETS[self.spec.variant]
        device = torch_device()
        model = build_lpips(net, self.assets[net.backbone_asset], self.assets[net.heads_asset]).to(device)
        values = []
        with torch.no_grad():
            for part in batches(len(data.pred), self.batch_size):
                pred, gt = unit_tensor(data.pred[part], device), unit_tensor(data.gt[part], device)
                values.append(model(pred, gt, normalize=True).reshape(-1).double().cpu().numpy())
        return frame_mean(np.concatenate(values), net=net.net, lpips_version="0.1", input="RGB [0,1], normalize=True")
