"""Crops -> embeddings, batched on the model's device.

Crops arrive as BGR uint8 arrays of any size. They travel to the device as uint8 (a quarter
of the bytes of float), in one host->device copy per batch, and are resized there with
``torch.nn.functional.interpolate`` (antialiased, so a 400 px tall crop does not alias when
shrunk to 256). Training preloads its images through the same ``crops_to_batch`` so the
model sees the same pixels in training and in serving.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from reid_pipeline.embed.model import IMAGENET_MEAN, IMAGENET_STD, ReIDModel

log = logging.getLogger(__name__)


def crops_to_batch(
    crops: Sequence[np.ndarray], height: int, width: int, device: torch.device | str
) -> torch.Tensor:
    """Resize BGR uint8 crops on ``device`` into an RGB uint8 batch (N, 3, height, width)."""
    if not crops:
        return torch.zeros(0, 3, height, width, dtype=torch.uint8, device=device)
    arrays = []
    for i, c in enumerate(crops):
        a = np.asarray(c)
        if (
            a.dtype != np.uint8
            or a.ndim != 3
            or a.shape[2] != 3
            or a.shape[0] < 1
            or a.shape[1] < 1
        ):
            raise ValueError(
                f"crop {i}: expected a BGR uint8 (H, W, 3) image, got {a.dtype} {a.shape}"
            )
        arrays.append(np.ascontiguousarray(a))
    flat = torch.from_numpy(np.concatenate([a.reshape(-1) for a in arrays]))
    dev = torch.device(device)
    if dev.type == "cuda":
        flat = flat.pin_memory().to(dev, non_blocking=True)
    out = torch.empty(len(arrays), 3, height, width, dtype=torch.uint8, device=dev)
    off = 0
    for i, a in enumerate(arrays):
        n = a.size
        img = flat[off : off + n].view(a.shape[0], a.shape[1], 3)
        off += n
        t = img.permute(2, 0, 1).flip(0)  # HWC BGR -> CHW RGB
        if t.shape[1] == height and t.shape[2] == width:
            out[i] = t
            continue
        r = F.interpolate(
            t[None].float(),
            size=(height, width),
            mode="bilinear",
            align_corners=False,
            antialias=True,
        )
        out[i] = r[0].round_().clamp_(0, 255).to(torch.uint8)
    return out


def normalize(batch_u8: torch.Tensor) -> torch.Tensor:
    """RGB uint8 (N, 3, H, W) -> ImageNet-normalised float32."""
    mean = torch.tensor(IMAGENET_MEAN, device=batch_u8.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=batch_u8.device).view(1, 3, 1, 1)
    return (batch_u8.float() / 255.0 - mean) / std


class Embedder:
    """Batched, device-side embedding of crops with a ``ReIDModel`` (the serving path)."""

    def __init__(
        self,
        model: ReIDModel,
        device: torch.device | str | None = None,
        batch: int = 128,
        half: bool = True,
        height: int | None = None,
        width: int | None = None,
    ) -> None:
        self.model = model
        self.device = (
            torch.device(device) if device is not None else next(model.parameters()).device
        )
        self.model.to(self.device).eval()
        self.batch = max(1, int(batch))
        mh, mw = getattr(model, "input_size", (256, 128))
        self.height = int(height or mh)
        self.width = int(width or mw)
        self.cuda = self.device.type == "cuda"
        self.amp_dtype: torch.dtype | None = None
        if self.cuda and half:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if self.cuda:
            self.model.to(memory_format=torch.channels_last)

    @property
    def dim(self) -> int:
        return self.model.embed_dim

    def embed_batch_u8(self, batch_u8: torch.Tensor) -> torch.Tensor:
        """Embed an RGB uint8 batch already at the model's input size (any device)."""
        out = []
        was = self.model.training
        self.model.eval()
        with torch.inference_mode():
            for i in range(0, len(batch_u8), self.batch):
                x = normalize(batch_u8[i : i + self.batch].to(self.device, non_blocking=True))
                if self.cuda:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(
                    self.device.type,
                    dtype=self.amp_dtype or torch.float32,
                    enabled=self.amp_dtype is not None,
                ):
                    out.append(self.model.features(x).float())
        self.model.train(was)
        if not out:
            return torch.zeros(0, self.dim, device=self.device)
        return torch.cat(out)

    def embed_crops(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """BGR uint8 crops of any size -> (N, D) float32 embeddings on the model's device."""
        if len(crops) == 0:
            return torch.zeros(0, self.dim, device=self.device)
        parts = [
            self.embed_batch_u8(
                crops_to_batch(crops[i : i + self.batch], self.height, self.width, self.device)
            )
            for i in range(0, len(crops), self.batch)
        ]
        return torch.cat(parts)
