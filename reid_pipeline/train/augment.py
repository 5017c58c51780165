"""Augmentation on device tensors: horizontal flip, pad + random crop, random erasing.

Runs on the whole batch at once on the GPU (no per-image Python, no CPU workers), on the
uint8 images preloaded there. Every random draw uses the given generator-free global RNG
of the batch's device, which the loop seeds per epoch for reproducible resumes.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from reid_pipeline.embed.embedder import normalize


def flip(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Mirror each image left-right with probability ``prob``."""
    if prob <= 0:
        return x
    m = torch.rand(x.shape[0], device=x.device) < prob
    return torch.where(m[:, None, None, None], x.flip(-1), x)


def pad_crop(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Zero-pad by ``pad`` px and crop back to the original size at a random offset per image."""
    if pad <= 0:
        return x
    b, _c, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    ox = torch.randint(0, 2 * pad + 1, (b,), device=x.device)
    rows = (oy[:, None] + torch.arange(h, device=x.device))[:, :, None]  # (b, h, 1)
    cols = (ox[:, None] + torch.arange(w, device=x.device))[:, None, :]  # (b, 1, w)
    bi = torch.arange(b, device=x.device)[:, None, None]
    out = xp.permute(0, 2, 3, 1)[bi, rows, cols]  # (b, h, w, c)
    return out.permute(0, 3, 1, 2)


def random_erase(
    x: torch.Tensor,
    prob: float,
    area: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 3.3),
) -> torch.Tensor:
    """Zhong et al.'s random erasing: a random rectangle per image filled with noise."""
    if prob <= 0:
        return x
    b, _c, h, w = x.shape
    dev = x.device
    apply = torch.rand(b, device=dev) < prob
    a = torch.empty(b, device=dev).uniform_(*area) * h * w
    r = torch.exp(torch.empty(b, device=dev).uniform_(math.log(ratio[0]), math.log(ratio[1])))
    eh = (a * r).sqrt().round().clamp(1, h)
    ew = (a / r).sqrt().round().clamp(1, w)
    y0 = (torch.rand(b, device=dev) * (h - eh + 1)).floor()
    x0 = (torch.rand(b, device=dev) * (w - ew + 1)).floor()
    yy = torch.arange(h, device=dev)[None, :, None]
    xx = torch.arange(w, device=dev)[None, None, :]
    m = (
        (yy >= y0[:, None, None])
        & (yy < (y0 + eh)[:, None, None])
        & (xx >= x0[:, None, None])
        & (xx < (x0 + ew)[:, None, None])
        & apply[:, None, None]
    )
    noise = torch.randn_like(x)
    return torch.where(m[:, None], noise, x)


def low_resolution(x: torch.Tensor, prob: float, heights: tuple[int, int]) -> torch.Tensor:
    """With probability ``prob`` per image, what a far camera gives: the image shrunk to a
    random height in ``heights`` (px, aspect kept; area averaging) and enlarged back
    (bilinear), as the embedder enlarges a small person's crop. uint8 in, uint8 out."""
    if prob <= 0:
        return x
    b, _, h, w = x.shape
    apply = torch.rand(b, device=x.device) < prob
    if not bool(apply.any()):
        return x
    lo, hi = heights
    out = x.clone()
    for i in torch.nonzero(apply).flatten().tolist():
        th = int(torch.randint(lo, hi + 1, (1,)).item())
        if th >= h:
            continue
        tw = max(1, round(w * th / h))
        small = torch.nn.functional.interpolate(x[i : i + 1].float(), size=(th, tw), mode="area")
        big = torch.nn.functional.interpolate(
            small, size=(h, w), mode="bilinear", align_corners=False
        )
        out[i] = big.round().clamp(0, 255).to(x.dtype)[0]
    return out


def augment_batch(
    x_u8: torch.Tensor,
    pad: int = 10,
    flip_prob: float = 0.5,
    erase_prob: float = 0.5,
    lowres_prob: float = 0.0,
    lowres_heights: tuple[int, int] = (40, 96),
) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> augmented, ImageNet-normalised float32 batch."""
    x = low_resolution(flip(x_u8, flip_prob), lowres_prob, lowres_heights)
    x = normalize(pad_crop(x, pad))
    return random_erase(x, erase_prob)
