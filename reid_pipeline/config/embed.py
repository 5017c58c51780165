"""The ReID model and embedder (``model``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reid_pipeline.config.base import check


@dataclass(frozen=True)
class ModelConfig:
    checkpoint: str = (
        "default"  # "default": the bundled checkpoint; or a path (ours or torchreid zoo)
    )
    # any name reid_pipeline.embed.backbones builds: torchvision (tv_mobilenet_v2, tv_resnet50, ...),
    # efficientnet_lite0..2, or torchreid's (osnet_x1_0, ...); the bundled default's
    backbone: str = "tv_mobilenet_v2"
    embed_dim: int = 512  # adapter output width
    activation: Literal["relu", "gelu", "identity", "tanh"] = "relu"
    # training input (our checkpoints carry their own); the default's: Market-1501 crops
    # are 64x128, so 128x64 is their own resolution at a quarter of 256x128's CPU time
    height: int = 128
    width: int = 64
    # backbone init before training: "" none, "imagenet" (torch cache, downloaded when online)
    # or a local weights file (torchvision/timm/torchreid state_dict); see reid_pipeline/embed/pretrained.py
    pretrained: str = ""
    batch: int = 128  # crops per embedder call
    half: bool = True  # fp16/bf16 inference on CUDA

    def validate(self, p: str) -> None:
        check(self.embed_dim >= 8, f"{p}.embed_dim", f"must be >= 8, got {self.embed_dim}")
        check(
            self.height >= 32 and self.width >= 16,
            f"{p}.height",
            f"input must be at least 32x16, got {self.height}x{self.width}",
        )
        check(self.batch >= 1, f"{p}.batch", "must be >= 1")
