"""The three matching modes as distances (smaller = closer), computed on the embeddings' device.

* ``euclidean``: squared L2 on e, as torchreid's ``compute_distance_matrix`` gives it (the
  ranking is the same as plain L2; re-ranking then sees the same numbers torchreid's does);
* ``cosine``: 1 - cos(e_q, e_g);
* ``dissimilarity``: the pair classifier, ``b - s(|e_q - e_g|)`` = sum_d w_d |e_q - e_g|_d,
  so it ranks exactly like ``-s`` and is >= 0 (w is kept non-negative in training), which
  re-ranking needs because it squares distances.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)

MODES = ("euclidean", "cosine", "dissimilarity")


def check_modes(modes: list[str] | tuple[str, ...]) -> list[str]:
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"unknown matching mode(s) {bad}; choose from {list(MODES)}")
    return list(dict.fromkeys(modes))


def _self_score(model: Any, ref: torch.Tensor) -> torch.Tensor:
    """b: the classifier's score of a pair of identical embeddings (|e - e| = 0)."""
    return model.pair_scores(ref[:1], ref[:1])[0, 0]


def distance(
    mode: str, model: Any, a: torch.Tensor, b: torch.Tensor, chunk: int = 2048, warn: bool = True
) -> torch.Tensor:
    """(len(a), len(b)) float32 distances for ``mode``, in row chunks to bound memory."""
    check_modes([mode])
    a, b = a.float(), b.float()
    out = torch.empty(len(a), len(b), dtype=torch.float32, device=a.device)
    if mode == "euclidean":
        bb = (b * b).sum(1)
    elif mode == "cosine":
        bn = torch.nn.functional.normalize(b, dim=1)
    else:
        base = _self_score(model, a if len(a) else b)
    for s in range(0, len(a), chunk):
        x = a[s : s + chunk]
        if mode == "euclidean":
            d = (x * x).sum(1, keepdim=True) + bb[None] - 2.0 * x @ b.T
            out[s : s + chunk] = d.clamp_(min=0)
        elif mode == "cosine":
            out[s : s + chunk] = 1.0 - torch.nn.functional.normalize(x, dim=1) @ bn.T
        else:
            out[s : s + chunk] = base - model.pair_scores(x, b).float()
    if mode == "dissimilarity" and warn:
        neg = int((out < -1e-5 * (1 + out.abs().max())).sum())
        if neg:
            log.warning(
                "dissimilarity: %d pair distances b - s are negative (classifier weights "
                "w have negative entries); ranking is unaffected, re-ranking clamps at 0",
                neg,
            )
    return out


def rows_function(mode: str, model: Any, feats: torch.Tensor) -> Any:
    """``rows(start, stop)`` -> numpy distances from items start..stop to all ``feats``
    (the callback re-ranking uses so the full (Q+G)^2 matrix never exists)."""

    def rows(start: int, stop: int) -> np.ndarray:
        with torch.no_grad():
            d = distance(mode, model, feats[start:stop], feats, warn=False)
        return d.clamp_(min=0).cpu().numpy()

    return rows


def pairs_function(mode: str, model: Any, feats: torch.Tensor) -> Any:
    """``pairs(rows, cols)`` -> numpy distances of single (row, col) pairs of ``feats``, or
    None when the mode can't be computed pair-wise (a model without ``w``): re-ranking then
    recomputes whole rows instead."""
    check_modes([mode])
    f = feats.float()
    w = torch.ones(f.shape[1], device=f.device)
    if mode == "dissimilarity":
        mw = getattr(model, "w", None)
        if not isinstance(mw, torch.Tensor) or mw.shape != (f.shape[1],):
            return None
        w = mw.detach().float().to(f.device)

    def pairs(rows: np.ndarray, cols: np.ndarray, step: int = 1 << 16) -> np.ndarray:
        out = []
        with torch.no_grad():
            for s in range(0, len(rows), step):
                a = f[torch.as_tensor(rows[s : s + step], device=f.device)]
                b = f[torch.as_tensor(cols[s : s + step], device=f.device)]
                if mode == "euclidean":
                    d = ((a * a).sum(1) + (b * b).sum(1) - 2.0 * (a * b).sum(1)).clamp_(min=0)
                elif mode == "cosine":
                    d = 1.0 - (
                        torch.nn.functional.normalize(a, dim=1)
                        * torch.nn.functional.normalize(b, dim=1)
                    ).sum(1)
                else:
                    d = ((a - b).abs() * w).sum(1)
                out.append(d.clamp_(min=0).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, np.float32)

    return pairs
