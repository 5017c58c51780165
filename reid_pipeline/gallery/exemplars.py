"""Exemplar vectors: byte encoding and diverse selection.

An identity keeps only a few embeddings. They should cover how the person looks (front,
back, other camera, other light), not repeat the same view, so selection is farthest-point
sampling: start from the vector nearest the mean (a representative view) and repeatedly
add the vector farthest (L1, the geometry the dichotomy classifier scores in) from those
already kept. Bounded memory, and the scoring cost per identity stays fixed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DTYPES = {"float16": np.float16, "float32": np.float32}


def as_matrix(vectors: Any) -> np.ndarray:
    """Accept a torch tensor or array-like of shape (N, D) or (D,); return float32 (N, D)."""
    if hasattr(vectors, "detach"):
        vectors = vectors.detach().float().cpu().numpy()
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise ValueError(f"exemplar vectors must be (N, D), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("exemplar vectors contain NaN or inf")
    return arr


def storage_dtype(vector: np.ndarray, preferred: str) -> str:
    """``preferred`` unless fp16 would overflow (|x| > 65504): then float32 for this row."""
    if preferred == "float16" and float(np.abs(vector).max(initial=0.0)) > 65000.0:
        return "float32"
    return preferred


def encode(vector: np.ndarray, dtype: str) -> bytes:
    """One vector -> little-endian bytes in the storage dtype."""
    return np.asarray(vector, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).tobytes()


def decode(blob: bytes, dim: int, dtype: str) -> np.ndarray:
    """Bytes -> float32 vector of length ``dim``."""
    arr = np.frombuffer(blob, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<"))
    if arr.shape[0] != dim:
        raise ValueError(f"stored exemplar has {arr.shape[0]} values, expected {dim}")
    return arr.astype(np.float32)


def farthest_point_selection(x: np.ndarray, k: int) -> list[int]:
    """Indices of up to ``k`` diverse rows of ``x``.

    Deterministic: first the row nearest the mean, then greedily the row with the largest
    L1 distance to its nearest already-selected row (ties: lowest index). Exact duplicates
    add nothing and are never both kept.
    """
    n = x.shape[0]
    if n == 0:
        return []
    x = x.astype(np.float32, copy=False)
    first = int(np.abs(x - x.mean(axis=0, keepdims=True)).sum(axis=1).argmin())
    chosen = [first]
    nearest = np.abs(x - x[first]).sum(axis=1)
    while len(chosen) < min(k, n):
        nearest[chosen] = -1.0
        nxt = int(nearest.argmax())
        if nearest[nxt] <= 0.0:
            break
        chosen.append(nxt)
        nearest = np.minimum(nearest, np.abs(x - x[nxt]).sum(axis=1))
    return chosen
