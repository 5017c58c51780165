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
    backbone: str = "osnet_x0_25"
    embed_dim: int = 512  # adapter output width
    activation: Literal["relu", "gelu", "identity", "tanh"] = "relu"
    # training input (our checkpoints carry their own); the default's: 256x128, the size
    # its MSMT17 initialisation was trained at (OSNet x0.25 is light enough for it on a CPU)
    height: int = 256
    width: int = 128
    # backbone init before training: "" none, "imagenet" (torch cache, downloaded when online)
    # or a local weights file (torchvision/timm/torchreid state_dict); see reid_pipeline/embed/pretrained.py
    pretrained: str = ""
    batch: int = 128  # crops per embedder call
    half: bool = True  # fp16/bf16 inference on CUDA
    # which runtime embeds crops (reid_pipeline/embed/onnx.py). "auto" (the default):
    # onnxruntime on a CPU device, serving the checkpoint's ONNX export (cached beside it,
    # or in ~/.cache/reid_pipeline/onnx; exported and checked on the fly when missing),
    # torch on CUDA. Why: on a CPU onnxruntime embeds the default model ~4x faster than
    # eager torch with the same embeddings (1 - cos < 1e-6, same model version, so a
    # gallery can switch runtime), while on a GPU torch's fp16 autocast is the faster path
    runtime: Literal["auto", "torch", "onnxruntime"] = "auto"
    # intra-op threads of onnxruntime; 0: one per CPU this process may use
    threads: int = 0
    # an exported file (`reid export`) to serve instead of the cached export; it must hold
    # the checkpoint's model version
    onnx: str = ""

    def validate(self, p: str) -> None:
        check(self.embed_dim >= 8, f"{p}.embed_dim", f"must be >= 8, got {self.embed_dim}")
        check(
            self.height >= 32 and self.width >= 16,
            f"{p}.height",
            f"input must be at least 32x16, got {self.height}x{self.width}",
        )
        check(self.batch >= 1, f"{p}.batch", "must be >= 1")
        check(
            0 <= self.threads <= 256,
            f"{p}.threads",
            f"must be 0 (one per CPU) .. 256, got {self.threads}",
        )
        check(
            not self.onnx or self.runtime != "torch",
            f"{p}.onnx",
            "is an onnxruntime file, but model.runtime is torch (set model.runtime=onnxruntime "
            "or auto)",
        )
        check(
            not self.onnx or self.onnx.lower().endswith(".onnx"),
            f"{p}.onnx",
            f"must name a .onnx file (`reid export`), got {self.onnx!r}",
        )
