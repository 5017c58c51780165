"""Dichotomy-space scoring: s(q, g) = b - sum_d w_d |q_d - g_d|.

This is the pure-torch reference every faster path (the Triton kernel) is tested against,
and the path used on the CPU. Higher scores mean "more likely the same person"; the model's
calibration turns a score into a probability.
"""

from __future__ import annotations

import torch


def dichotomy_scores(q: torch.Tensor, g: torch.Tensor, w: torch.Tensor,
                     b: torch.Tensor | float = 0.0, chunk: int = 0) -> torch.Tensor:
    """Score every query against every gallery vector.

    q: (Nq, D), g: (Ng, D), w: (D,) non-negative weights, b: scalar bias.
    Returns (Nq, Ng) float32. Works in query chunks so memory stays O(chunk * Ng * D).
    """
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1] or w.shape != (q.shape[1],):
        raise ValueError(f"shapes q{tuple(q.shape)} g{tuple(g.shape)} w{tuple(w.shape)} do not fit")
    qf, gf, wf = q.float(), g.float(), w.float()
    if chunk <= 0:
        # keep the (chunk, Ng, D) intermediate near 64M elements
        chunk = max(1, int(64_000_000 // max(1, g.shape[0] * q.shape[1])))
    out = torch.empty(q.shape[0], g.shape[0], dtype=torch.float32, device=q.device)
    for i in range(0, q.shape[0], chunk):
        d = (qf[i:i + chunk, None, :] - gf[None, :, :]).abs_()
        out[i:i + chunk] = -(d @ wf)
    return out + (b.float() if isinstance(b, torch.Tensor) else float(b))
