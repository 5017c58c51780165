"""Loss terms: label-smoothed identity CE, batch-hard triplet, and the pair hinge.

The hinge is the paper's max-margin classifier on the dichotomy transform, trained on all
pairs of a P x K batch. A batch has P*K*(K-1)/2 similar pairs and many more dissimilar
ones, so the two classes are averaged separately and mixed with ``balance`` - otherwise
the classifier learns "never the same person", which is right 98% of the time and useless.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_ce(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Label-smoothed cross-entropy over training identities (regularises the embedding)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=smoothing)


def pairwise_euclidean(e: torch.Tensor) -> torch.Tensor:
    """(B, B) Euclidean distances, with a floor inside the sqrt so gradients stay finite."""
    e = e.float()
    sq = (e * e).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (e @ e.t())
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet(e: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Hermans et al.'s batch-hard triplet: hardest positive vs hardest negative per anchor."""
    d = pairwise_euclidean(e)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=e.device)
    pos = same & ~eye
    big = torch.finfo(d.dtype).max
    d_ap = torch.where(pos, d, torch.zeros_like(d)).amax(1)
    d_an = torch.where(same, torch.full_like(d, big), d).amin(1)
    valid = pos.any(1) & (~same).any(1)
    if not bool(valid.any()):
        return d.sum() * 0.0
    return F.relu(d_ap - d_an + margin)[valid].mean()


def batch_pair_scores(e: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """s_ij = b - sum_d w_d |e_i - e_j| for every pair of a batch, (B, B), in float32."""
    e = e.float()
    return b.float() - ((e[:, None, :] - e[None, :, :]).abs() * w.float()).sum(-1)


def pair_hinge(
    e: torch.Tensor,
    labels: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    margin: float = 1.0,
    balance: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Balanced hinge ``max(0, margin - y * s)`` over all unordered pairs i < j of the batch.

    Returns (loss, balanced pair accuracy); accuracy is the mean of the per-class rates of
    ``sign(s) == y``, so it is 0.5 for a classifier that always says "different".
    """
    s = batch_pair_scores(e, w, b)
    n = len(labels)
    iu = torch.triu_indices(n, n, offset=1, device=e.device)
    s = s[iu[0], iu[1]]
    same = labels[iu[0]] == labels[iu[1]]
    y = same.float() * 2 - 1
    h = F.relu(margin - y * s)
    zero = s.sum() * 0.0
    pos_l = h[same].mean() if bool(same.any()) else zero
    neg_l = h[~same].mean() if bool((~same).any()) else zero
    loss = balance * pos_l + (1 - balance) * neg_l
    with torch.no_grad():
        correct = (s > 0) == same
        rates = [correct[m].float().mean() for m in (same, ~same) if bool(m.any())]
        acc = torch.stack(rates).mean() if rates else zero.detach()
    return loss, acc


def w_norm_penalty(w: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Exterior penalty for ``||w||_2 <= max_norm``: zero inside the ball, grows outside
    (the soft alternative to projecting ``w`` back after each step)."""
    return F.relu(w.float().pow(2).sum() - max_norm**2)
