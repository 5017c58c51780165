"""Ranking metrics (CMC rank-1/5/10 and mAP) for the three matching modes of one model.

Used inside training (held-out identities, preloaded tensors: no JPEG decoding between
epochs). The full evaluation command lives in ``reid_pipeline.evaluate``; this module only
needs embeddings and labels and ranks with that package's ``evaluate_rank`` (torchreid's
Market protocol: a gallery image of the query's identity *and* camera does not count).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from reid_pipeline.embed.model import ReIDModel

MODES = ("euclidean", "cosine", "dissimilarity")


def similarity(model: ReIDModel, q: torch.Tensor, g: torch.Tensor, mode: str) -> torch.Tensor:
    """(Nq, Ng) similarity, higher = more alike, for one matching mode."""
    if mode == "euclidean":
        return -torch.cdist(q.float(), g.float())
    if mode == "cosine":
        qn = torch.nn.functional.normalize(q.float(), dim=1)
        gn = torch.nn.functional.normalize(g.float(), dim=1)
        return qn @ gn.t()
    if mode == "dissimilarity":
        return model.pair_scores(q, g)
    raise ValueError(f"unknown matching mode {mode!r}; choose from {MODES}")


def rank_metrics(
    sim: torch.Tensor,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    q_cams: Sequence[int],
    g_cams: Sequence[int],
) -> dict[str, float]:
    """rank-1/5/10 and mAP (in %) from a similarity matrix, Market-1501 protocol."""
    dist = (-sim).detach().cpu().numpy().astype(np.float32)
    max_rank = min(10, dist.shape[1])
    args = (dist, np.asarray(q_pids), np.asarray(g_pids), np.asarray(q_cams), np.asarray(g_cams))
    try:  # the project's evaluator (same figures as torchreid's, much faster)
        from reid_pipeline.evaluate.rank import evaluate_rank

        cmc, m_ap = evaluate_rank(*args, max_rank=max_rank)
    except ImportError:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchreid.reid.metrics import evaluate_rank as tr_evaluate_rank
        cmc, m_ap = tr_evaluate_rank(*args, max_rank=max_rank, use_cython=False)

    def at(r: int) -> float:
        return 100 * float(cmc[min(r, len(cmc)) - 1])

    return {"rank1": at(1), "rank5": at(5), "rank10": at(10), "mAP": 100 * float(m_ap)}


def evaluate_embeddings(
    model: ReIDModel,
    q: torch.Tensor,
    g: torch.Tensor,
    q_pids: Sequence[int],
    g_pids: Sequence[int],
    q_cams: Sequence[int],
    g_cams: Sequence[int],
    modes: Sequence[str] = MODES,
) -> dict[str, dict[str, float]]:
    """Metrics per matching mode for one set of query/gallery embeddings."""
    return {
        m: rank_metrics(similarity(model, q, g, m), q_pids, g_pids, q_cams, g_cams) for m in modes
    }


def pair_labels(q_pids: Sequence[int], g_pids: Sequence[int], device: torch.device) -> torch.Tensor:
    """(Nq, Ng) 1/0 same-identity labels (for calibration and pair accuracy)."""
    qp = torch.as_tensor(list(q_pids), device=device)
    gp = torch.as_tensor(list(g_pids), device=device)
    return (qp[:, None] == gp[None, :]).float()
