"""Training for the retrieval metric itself (the second seed paper).

Patel, Tolias, Matas, "Recall@k Surrogate Loss with Large Batches and Similarity Mixup"
(CVPR 2022; "Three Things to Know about Deep Metric Learning"):

- ``rs_at_k``: the smooth Recall@k surrogate. rank(q, x) = 1 + sum_{z != x} sigma((s_qz - s_qx)/tau2),
  R^k(q) = min(k, sum_{x in P_q} sigma((k - rank(q, x) + offset)/tau1)) / min(k, |P_q|),
  loss = 1 - mean_k R^k, averaged over queries with at least one positive.
- ``simix``: virtual positives from convex mixes of same-identity embeddings. For a
  similarity that is linear in the retrieved vector (dot product) the mix's similarity is the
  same mix of similarities, so nothing is materialised; for the dissimilarity classifier
  (s = b - sum w |q - x|, not linear) the mixed vectors are built and scored.
- ``two_pass_backward``: batches larger than GPU memory. Pass 1 embeds chunks without a
  graph; the loss and its gradient w.r.t. all embeddings are computed on the full batch;
  pass 2 recomputes each chunk with a graph and back-propagates its slice of that gradient.
  The result equals the one-pass gradient whenever a chunk's embeddings do not depend on the
  other chunks (no batch-statistics coupling; BatchNorm in train mode sees per-chunk
  statistics in both passes, so the gradient is exact for that chunked forward).

Going past both papers, the similarity fed to RS@k may be the dissimilarity classifier's
score: rank-aware training of the pair classifier itself.

On ``offset``: exact Recall@k counts a positive at rank <= k. The authors centre the smooth
step at k (offset 0), so in the small-temperature limit a positive at exactly rank k counts
one half. The default offset 0.5 centres it between k and k + 1, which makes the surrogate
equal Recall@k in that limit; at the authors' tau1 = k the difference is negligible.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

DEFAULT_KS: tuple[int, ...] = (1, 2, 4, 8, 16)


def _positives(
    q_labels: torch.Tensor, g_labels: torch.Tensor, valid: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (Q, Pmax) of each query's positives among the retrieval set, and their mask."""
    pos = (q_labels[:, None] == g_labels[None, :]) & valid
    counts = pos.sum(1)
    pmax = int(counts.max().item()) if pos.numel() else 0
    pmax = max(pmax, 1)
    # stable sort puts positives (True -> 0 after negation) first, in index order
    order = torch.argsort((~pos).to(torch.int8), dim=1, stable=True)[:, :pmax]
    mask = torch.arange(pmax, device=pos.device)[None, :] < counts[:, None]
    return order, mask


def rs_at_k(
    sim: torch.Tensor,
    q_labels: torch.Tensor,
    g_labels: torch.Tensor,
    valid: torch.Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    tau1: float | Sequence[float] | None = None,
    tau2: float = 0.01,
    offset: float = 0.5,
) -> torch.Tensor:
    """Recall@k surrogate loss (scalar, in [0, 1]; lower is better).

    sim: (Q, N) similarities of each query to the retrieval set (higher = more similar).
    valid: (Q, N) bool, False for items a query must not retrieve (itself). Defaults to all.
    tau1: per-k temperatures of the recall step; None -> tau1 = k (the authors' default).
    """
    if sim.ndim != 2 or sim.shape != (len(q_labels), len(g_labels)):
        raise ValueError(
            f"sim {tuple(sim.shape)} does not fit {len(q_labels)} queries x {len(g_labels)} items"
        )
    if valid is None:
        valid = torch.ones_like(sim, dtype=torch.bool)
    sim = sim.float()
    taus1 = (
        [float(k) for k in ks]
        if tau1 is None
        else (
            [float(tau1)] * len(ks) if isinstance(tau1, (int, float)) else [float(t) for t in tau1]
        )
    )
    if len(taus1) != len(ks):
        raise ValueError(f"{len(taus1)} tau1 values for {len(ks)} k values")

    pidx, pmask = _positives(q_labels, g_labels, valid)  # (Q, P)
    s_pos = torch.gather(sim, 1, pidx)  # (Q, P)
    # rank(q, x) = 1 + sum over valid z != x of sigma((s_qz - s_qx) / tau2)
    diff = (sim[:, None, :] - s_pos[:, :, None]) / tau2  # (Q, P, N)
    sig = torch.sigmoid(diff) * valid[:, None, :]
    # remove z == x (sigma(0) = 0.5 for the positive itself)
    sig_self = torch.gather(sig, 2, pidx[:, :, None]).squeeze(2)
    rank = 1.0 + sig.sum(2) - sig_self  # (Q, P)

    n_pos = pmask.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return sim.sum() * 0.0
    recalls = []
    for k, t1 in zip(ks, taus1):
        hit = torch.sigmoid((k - rank + offset) / t1) * pmask
        rk = torch.clamp(hit.sum(1), max=float(k)) / torch.clamp(n_pos, max=k).clamp_min(1)
        recalls.append(rk)
    r = torch.stack(recalls, 0).mean(0)  # (Q,)
    return 1.0 - r[has_pos].mean()


def exact_recall_at_k(
    sim: torch.Tensor,
    q_labels: torch.Tensor,
    g_labels: torch.Tensor,
    valid: torch.Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
) -> torch.Tensor:
    """The non-smooth quantity RS@k approximates: mean over queries and k of
    min(k, #positives in the top k) / min(k, |P_q|) (rank ties broken by index)."""
    if valid is None:
        valid = torch.ones_like(sim, dtype=torch.bool)
    s = sim.float().masked_fill(~valid, float("-inf"))
    order = torch.argsort(-s, dim=1, stable=True)
    pos = (q_labels[:, None] == g_labels[None, :]) & valid
    pos_sorted = torch.gather(pos, 1, order)
    n_pos = pos.sum(1)
    keep = n_pos > 0
    out = []
    for k in ks:
        hits = pos_sorted[:, :k].sum(1).clamp(max=k).float()
        out.append(hits / n_pos.clamp(max=k).clamp_min(1).float())
    return torch.stack(out, 0).mean(0)[keep].mean()


# ------------------------------------------------------------------------------ SiMix


@dataclass
class Mixed:
    """The retrieval set extended with virtual samples."""

    sim: torch.Tensor  # (Q, N + M)
    g_labels: torch.Tensor  # (N + M,)
    valid: torch.Tensor  # (Q, N + M)
    pairs: torch.Tensor  # (M, 2) indices mixed
    alpha: torch.Tensor  # (M,)


def mix_pairs(
    labels: torch.Tensor, n_mix: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n_mix`` random same-identity pairs (i != j) and mixing weights alpha ~ U(0, 1)."""
    dev = labels.device
    same = (labels[:, None] == labels[None, :]) & ~torch.eye(
        len(labels), dtype=torch.bool, device=dev
    )
    cand = same.nonzero()
    if len(cand) == 0 or n_mix <= 0:
        return torch.zeros(0, 2, dtype=torch.long, device=dev), torch.zeros(0, device=dev)
    pick = torch.randint(len(cand), (n_mix,), generator=generator, device="cpu").to(dev)
    alpha = torch.rand(n_mix, generator=generator, device="cpu").to(dev)
    return cand[pick], alpha


def simix(
    sim: torch.Tensor,
    q_labels: torch.Tensor,
    g_labels: torch.Tensor,
    valid: torch.Tensor,
    pairs: torch.Tensor,
    alpha: torch.Tensor,
    q_index: torch.Tensor | None = None,
    mixed_sim: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> Mixed:
    """Add virtual samples x_m = alpha x_i + (1 - alpha) x_j (same identity) to the
    retrieval set of every query.

    For a similarity linear in the retrieved vector (dot product / cosine with unnormalised
    mixes) leave ``mixed_sim`` None: s(q, x_m) = alpha s(q, x_i) + (1 - alpha) s(q, x_j),
    computed from ``sim`` without building x_m. Otherwise ``mixed_sim(pairs, alpha)`` must
    return the (Q, M) similarities to the materialised mixes.
    ``q_index``: (Q,) position of each query inside the retrieval set (a query never
    retrieves a mix containing itself); None when queries are not part of it.
    """
    i, j = pairs[:, 0], pairs[:, 1]
    a = alpha.to(sim.dtype)
    if mixed_sim is None:
        s_mix = sim[:, i] * a[None, :] + sim[:, j] * (1 - a)[None, :]
    else:
        s_mix = mixed_sim(pairs, alpha)
    v_mix = torch.ones(len(q_labels), len(pairs), dtype=torch.bool, device=sim.device)
    if q_index is not None:
        v_mix &= (q_index[:, None] != i[None, :]) & (q_index[:, None] != j[None, :])
    return Mixed(
        sim=torch.cat([sim, s_mix], 1),
        g_labels=torch.cat([g_labels, g_labels[i]]),
        valid=torch.cat([valid, v_mix], 1),
        pairs=pairs,
        alpha=alpha,
    )


# ------------------------------------------------------------------ two-pass large batches


def two_pass_backward(
    embed: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
    chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-propagate ``loss_fn(embed(images))`` for a batch too big for one graph.

    Returns (loss, embeddings) with parameter gradients accumulated in ``.grad``. Each
    chunk's RNG state is replayed in pass 2 so dropout/augmentation inside ``embed`` match.
    Parameters that only ``loss_fn`` uses (classifier w, b) get their gradient in the loss
    backward of pass 1.
    """
    if chunk <= 0:
        raise ValueError(f"chunk must be > 0, got {chunk}")
    states, outs = [], []
    cuda = images.is_cuda
    with torch.no_grad():
        for s in range(0, len(images), chunk):
            states.append(
                (torch.get_rng_state(), torch.cuda.get_rng_state(images.device) if cuda else None)
            )
            outs.append(embed(images[s : s + chunk]).float())
    e = torch.cat(outs).requires_grad_(True)
    loss = loss_fn(e)
    # the embedding leaf gets d loss / d e; parameters used only inside loss_fn (the pair
    # classifier's w, b) get their whole gradient here, as the backbone is not in this graph
    loss.backward()
    grad_e = e.grad
    assert grad_e is not None, "loss_fn must depend on the embeddings"
    for n, s in enumerate(range(0, len(images), chunk)):
        cpu_state, cuda_state = states[n]
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, images.device)
        out = embed(images[s : s + chunk]).float()
        out.backward(grad_e[s : s + chunk])
    return loss.detach(), e.detach()


# ----------------------------------------------------------------- the training-batch loss


def rsk_batch_loss(
    e: torch.Tensor,
    labels: torch.Tensor,
    similarity: str = "cosine",
    w: torch.Tensor | None = None,
    b: torch.Tensor | None = None,
    ks: Sequence[int] = DEFAULT_KS,
    tau1: float | None = None,
    tau2: float = 0.01,
    n_mix: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """RS@k over a training batch: every sample queries all the others.

    similarity "cosine": s = <e_q/|e_q|, e_x/|e_x|> (linear in the retrieved unit vector, so
    SiMix needs no materialised mixes); "dissimilarity": the pair classifier's score
    s = b - sum_d w_d |e_q - e_x| (SiMix builds the mixed vectors and scores them).
    """
    n = len(labels)
    valid = ~torch.eye(n, dtype=torch.bool, device=e.device)
    idx = torch.arange(n, device=e.device)
    ef = e.float()
    mixed_sim = None
    if similarity == "cosine":
        u = torch.nn.functional.normalize(ef, dim=1)
        sim = u @ u.t()
    elif similarity == "dissimilarity":
        if w is None or b is None:
            raise ValueError("the dissimilarity similarity needs the classifier's w and b")
        wf, bf = w.float(), b.float()

        def score(q: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            return bf - ((q[:, None, :] - x[None, :, :]).abs() * wf).sum(-1)

        sim = score(ef, ef)

        def mixed_sim(pairs: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
            a = alpha.to(ef.dtype)[:, None]
            return score(ef, a * ef[pairs[:, 0]] + (1 - a) * ef[pairs[:, 1]])
    else:
        raise ValueError(f"unknown RS@k similarity {similarity!r}: cosine or dissimilarity")
    g_labels = labels
    if n_mix > 0:
        pairs, alpha = mix_pairs(labels, n_mix, generator)
        m = simix(sim, labels, labels, valid, pairs, alpha, q_index=idx, mixed_sim=mixed_sim)
        sim, g_labels, valid = m.sim, m.g_labels, m.valid
    return rs_at_k(sim, labels, g_labels, valid, ks=ks, tau1=tau1, tau2=tau2)
