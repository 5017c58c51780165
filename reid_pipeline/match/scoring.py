"""Dichotomy-space scoring: s(q, g) = b - sum_d w_d |q_d - g_d|.

This is the pure-torch reference every faster path (the Triton kernel) is tested against,
and the path used on the CPU. Higher scores mean "more likely the same person"; the model's
calibration turns a score into a probability.
"""

from __future__ import annotations

from typing import Any

import torch


def dichotomy_scores(
    q: torch.Tensor, g: torch.Tensor, w: torch.Tensor, b: torch.Tensor | float = 0.0, chunk: int = 0
) -> torch.Tensor:
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
        d = (qf[i : i + chunk, None, :] - gf[None, :, :]).abs_()
        out[i : i + chunk] = -(d @ wf)
    return out + (b.float() if isinstance(b, torch.Tensor) else float(b))


# ------------------------------------------------------------------ dispatch (issue 6)

Backend = str  # "auto", "torch", "triton" (packed fp16x2 when w >= 0), "triton-f32"
BACKENDS = ("auto", "torch", "triton", "triton-f32")


def _bias_value(b: torch.Tensor | float) -> float:
    return float(b.item() if isinstance(b, torch.Tensor) else b)


def triton_usable(device: torch.device) -> bool:
    """True when the Triton kernel can run on ``device``: CUDA with Triton importable, or
    any device while ``TRITON_INTERPRET=1`` (CPU interpreter, used by the tests)."""
    import os

    interp = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
    if device.type != "cuda" and not interp:
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_backend(backend: Backend, device: torch.device) -> Backend:
    """Pick the concrete backend: ``auto`` is the Triton kernel where it can run (CUDA),
    the torch reference elsewhere. An explicit ``triton`` that cannot run is an error,
    so a benchmark never silently measures the wrong thing."""
    if backend not in BACKENDS:
        raise ValueError(f"scoring backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_usable(device) else "torch"
    if backend != "torch" and not triton_usable(device):
        raise ValueError(
            f"scoring backend {backend!r} needs CUDA (or TRITON_INTERPRET=1); "
            f"tensors are on {device}"
        )
    return backend


def _check(q: torch.Tensor, g: torch.Tensor, w: torch.Tensor) -> None:
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1] or w.shape != (q.shape[1],):
        raise ValueError(f"shapes q{tuple(q.shape)} g{tuple(g.shape)} w{tuple(w.shape)} do not fit")


def score_pairs(
    q: torch.Tensor,
    g: Any,
    w: torch.Tensor,
    b: torch.Tensor | float = 0.0,
    backend: Backend = "auto",
) -> torch.Tensor:
    """(Nq, Ng) float32 scores b - sum_d w_d |q_d - g_d|, on the fastest path available.

    ``backend="auto"`` uses the Triton kernel on CUDA (fp16x2 packed arithmetic with fp32
    accumulation when all w >= 0, relative error ~3e-4; the fp32 kernel otherwise) and
    the pure-torch :func:`dichotomy_scores` elsewhere. Callers map ``match.use_triton=false``
    to ``backend="torch"``. ``g`` may also be a
    :class:`~reid_pipeline.match.triton_kernel.PackedGallery` (packed once, scored often;
    Triton only).
    """
    if _is_packed(g):
        return _packed_call(q, g, b, 0)[0]
    _check(q, g, w)
    be = resolve_backend(backend, q.device)
    if be == "torch":
        return dichotomy_scores(q, g, w, b)
    from reid_pipeline.match.triton_kernel import triton_scores

    packed = be == "triton" and bool((w >= 0).all())
    return triton_scores(q, g, w, _bias_value(b), packed=packed)


def _is_packed(g: Any) -> bool:
    return type(g).__name__ == "PackedGallery"


def _packed_call(
    q: torch.Tensor, pg: Any, b: torch.Tensor | float, k: int
) -> tuple[torch.Tensor, ...]:
    from reid_pipeline.match.triton_kernel import triton_scores, triton_topk

    if q.ndim != 2 or q.shape[1] != pg.dim:
        raise ValueError(f"query shape {tuple(q.shape)} does not fit a gallery of dim {pg.dim}")
    if not triton_usable(q.device):
        raise ValueError("a PackedGallery is scored by the Triton kernel, which needs CUDA")
    if k == 0:
        return (triton_scores(q, None, pg.w, _bias_value(b), gallery=pg),)
    return triton_topk(q, None, pg.w, _bias_value(b), k, gallery=pg)


def topk_pairs(
    q: torch.Tensor,
    g: Any,
    w: torch.Tensor,
    b: torch.Tensor | float,
    k: int,
    backend: Backend = "auto",
    chunk: int = 65536,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Best ``k`` gallery entries per query: (scores (Nq, k) fp32, indices (Nq, k) int64),
    descending. With Triton the selection is fused into the kernel (the Nq x Ng matrix is
    never stored); the torch path scores gallery chunks and merges, so memory stays
    O(Nq * chunk). Where the gallery has fewer than k entries the tail is (-inf, -1).
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if _is_packed(g):
        v, i = _packed_call(q, g, b, k)
        return v, i
    _check(q, g, w)
    be = resolve_backend(backend, q.device)
    if be != "torch":
        from reid_pipeline.match.triton_kernel import triton_topk

        packed = be == "triton" and bool((w >= 0).all())
        return triton_topk(q, g, w, _bias_value(b), k, packed=packed)
    n = q.shape[0]
    best_v = torch.full((n, k), float("-inf"), device=q.device)
    best_i = torch.full((n, k), -1, dtype=torch.int64, device=q.device)
    for j in range(0, g.shape[0], chunk):
        s = dichotomy_scores(q, g[j : j + chunk], w, b)
        kk = min(k, s.shape[1])
        v, i = torch.topk(s, kk, dim=1)
        cv = torch.cat([best_v, v], dim=1)
        ci = torch.cat([best_i, i + j], dim=1)
        best_v, pos = torch.topk(cv, k, dim=1)
        best_i = torch.gather(ci, 1, pos)
    return best_v, best_i
