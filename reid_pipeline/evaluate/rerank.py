"""k-reciprocal re-ranking (Zhong et al., CVPR 2017), memory-safe at Market-1501 size.

torchreid's ``re_ranking`` builds several dense (Q+G)^2 matrices (distances, their argsort,
V, V after query expansion): about 6 GB at Market's 19,281 images, and a python loop over
every image. The algorithm only ever uses

* each image's ``k1 + 1`` nearest neighbours (its k-reciprocal sets come from them),
* V, which is sparse (a row has weights only on its k-reciprocal expansion, ~20-60 images),
* distances from the queries to the gallery (the output),

so here distances are produced a block of rows at a time (from a dense matrix, or from
embeddings through a callback: the (Q+G)^2 matrix never exists), V is a scipy sparse
matrix, and the Jaccard term is accumulated from V's inverted index. The neighbour sets are
computed for all images at once with array operations instead of a python loop.

Results equal torchreid's to float32 rounding; with exactly tied distances among an
image's nearest neighbours the order follows numpy's argsort as torchreid's does.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from reid_pipeline.utils import progress

log = logging.getLogger(__name__)

RowsFn = Callable[[int, int], np.ndarray]  # (start, stop) -> distances rows [start:stop, :N]
PairsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (rows, cols) -> those entries


def _dense_rows(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> RowsFn:
    """Rows of torchreid's *transposed* concatenation [[qq, qg], [qg.T, gg]].T, block-wise."""
    nq = q_g.shape[0]

    def rows(start: int, stop: int) -> np.ndarray:
        parts = []
        if start < nq:  # query rows: columns of the top block row
            s, e = start, min(stop, nq)
            parts.append(np.concatenate([q_q[:, s:e].T, q_g[s:e]], axis=1))
        if stop > nq:
            s, e = max(start, nq) - nq, stop - nq
            parts.append(np.concatenate([q_g[:, s:e].T, g_g[:, s:e].T], axis=1))
        return np.concatenate(parts, axis=0) if len(parts) > 1 else parts[0]

    return rows


def _dense_pairs(q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray) -> PairsFn:
    """Entries [i, j] of the same transposed concatenation (= M[j, i])."""
    nq = q_g.shape[0]

    def pairs(i: np.ndarray, j: np.ndarray) -> np.ndarray:
        out = np.empty(len(i), dtype=np.result_type(q_g, q_q, g_g))
        qi, qj = i < nq, j < nq
        m = qi & qj
        out[m] = q_q[j[m], i[m]]
        m = qi & ~qj
        out[m] = q_g[i[m], j[m] - nq]
        m = ~qi & qj
        out[m] = q_g[j[m], i[m] - nq]
        m = ~qi & ~qj
        out[m] = g_g[j[m] - nq, i[m] - nq]
        return out

    return pairs


def _row_max(sq: np.ndarray) -> np.ndarray:
    mx = sq.max(axis=1)
    mx[mx == 0] = 1.0  # all-zero row: leave zeros (torchreid would produce NaN)
    return mx


def _normalised(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """torchreid's ``d**2 / max`` (per image), in float32 as it computes it; and the max."""
    sq = np.power(rows, 2).astype(np.float32)
    mx = _row_max(sq)
    return sq / mx[:, None], mx


def _top_k(r: np.ndarray, k: int) -> np.ndarray:
    """First ``k`` columns of ``np.argsort(r)`` per row, without sorting whole rows.

    Rows whose k+1 smallest values contain a tie are argsorted fully, so the tie order is
    numpy's, as in torchreid.
    """
    n = r.shape[1]
    if k >= n:
        return np.argsort(r, axis=1)[:, :k]
    kk = min(k + 1, n)
    part = np.argpartition(r, kk - 1, axis=1)[:, :kk]
    vals = np.take_along_axis(r, part, axis=1)
    order = np.argsort(vals, axis=1)
    part = np.take_along_axis(part, order, axis=1)
    vals = np.take_along_axis(vals, order, axis=1)
    tied = np.any(vals[:, 1:] == vals[:, :-1], axis=1)
    out = part[:, :k].copy()
    for i in np.flatnonzero(tied):
        out[i] = np.argsort(r[i])[:k]
    return out


def _reciprocal(ranks: np.ndarray, k: int) -> np.ndarray:
    """Mask (N, k+1): is ``ranks[i, j]`` (j <= k) a k-reciprocal neighbour of i."""
    fwd = ranks[:, : k + 1]
    back = ranks[fwd, : k + 1]  # (N, k+1, k+1)
    return (back == np.arange(len(ranks))[:, None, None]).any(axis=2)


def re_ranking_rows(
    rows_fn: RowsFn,
    num_query: int,
    num_total: int,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk: int = 1024,
    pairs_fn: PairsFn | None = None,
) -> np.ndarray:
    """Re-ranked query x gallery distances from a function giving distance rows.

    ``rows_fn(start, stop)`` returns the distances from items ``start..stop`` (queries
    first, then gallery; ``num_total`` items in all) to every item, as in torchreid's
    concatenated matrix. ``pairs_fn(rows, cols)``, when given, returns single entries of
    that matrix: the second pass then needs only the ~50 weights per row instead of
    recomputing every row (half the distance work). Peak memory is a few
    ``chunk x num_total`` blocks plus the ``num_query x num_gallery`` output.
    """
    if not 0 < num_query < num_total:
        raise ValueError(
            f"re-ranking needs queries and a gallery, got {num_query} queries of {num_total} items"
        )
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    from scipy import sparse

    n, nq = num_total, num_query
    kmax = min(max(k1 + 1, k2), n)
    half = int(np.around(k1 / 2.0))

    # pass 1: nearest neighbours of every image, and the query-gallery original distances
    ranks = np.empty((n, kmax), dtype=np.int64)
    row_max = np.empty(n, dtype=np.float32)
    final = np.empty((nq, n - nq), dtype=np.float32)
    steps = range(0, n, chunk)
    for s in progress(steps, desc="re-rank: neighbours", total=len(steps)):
        e = min(s + chunk, n)
        r, row_max[s:e] = _normalised(_checked(rows_fn(s, e), s, e, n))
        ranks[s:e] = _top_k(r, kmax)
        if s < nq:
            final[s : min(e, nq)] = r[: min(e, nq) - s, nq:]
    if kmax < k1 + 1:  # tiny problems: every image is a neighbour
        k1 = kmax - 1
        half = min(half, k1)

    recip = _reciprocal(ranks, k1)  # (N, k1+1)
    hrecip = _reciprocal(ranks, half)  # (N, half+1)
    hsets = np.where(hrecip, ranks[:, : half + 1], -1)  # each image's half-size reciprocal set
    hsize = hrecip.sum(axis=1)

    # pass 2: V rows (k-reciprocal expansion, Gaussian-weighted), block by block
    v_rows, v_cols, v_vals = [], [], []
    for s in progress(steps, desc="re-rank: V", total=len(steps)):
        e = min(s + chunk, n)
        fwd = ranks[s:e, : k1 + 1]
        rec = recip[s:e]
        kr = np.where(rec, fwd, -1)  # (c, k1+1)
        cand = hsets[fwd]  # (c, k1+1, half+1): each candidate's own small reciprocal set
        inside = ((cand[..., None] == kr[:, None, None, :]) & (cand[..., None] >= 0)).any(-1)
        overlap = inside.sum(-1)  # |R_half(c) ∩ R(i)|
        accept = rec & (overlap > 2.0 / 3 * hsize[fwd])
        local = np.arange(e - s)
        rows_a = np.concatenate(
            [
                np.repeat(local, k1 + 1)[rec.ravel()],
                np.broadcast_to(local[:, None, None], cand.shape)[accept[..., None] & (cand >= 0)],
            ]
        )
        cols_a = np.concatenate([fwd[rec], cand[accept[..., None] & (cand >= 0)]])
        code = np.unique(rows_a.astype(np.int64) * n + cols_a)
        rr, cc = code // n, code % n
        if pairs_fn is not None:
            raw = np.asarray(pairs_fn(rr + s, cc))
            vals = np.power(raw, 2).astype(np.float32) / row_max[rr + s]
        else:
            vals = _normalised(_checked(rows_fn(s, e), s, e, n))[0][rr, cc]
        w = np.exp(-vals)
        w /= np.bincount(rr, weights=w, minlength=e - s).astype(np.float32)[rr]
        v_rows.append(rr + s)
        v_cols.append(cc)
        v_vals.append(w.astype(np.float32))
    V = sparse.csr_matrix(
        (np.concatenate(v_vals), (np.concatenate(v_rows), np.concatenate(v_cols))),
        shape=(n, n),
        dtype=np.float32,
    )
    if k2 != 1:  # query expansion: average V over each image's k2 nearest neighbours
        qe = sparse.csr_matrix(
            (
                np.full(n * k2, 1.0 / k2, dtype=np.float32),
                (np.repeat(np.arange(n), k2), ranks[:, :k2].ravel()),
            ),
            shape=(n, n),
        )
        V = (qe @ V).tocsr()
    V.eliminate_zeros()

    # Jaccard distance query -> gallery: sum_k min(V[q,k], V[g,k]) from V's inverted index
    Vc = V[nq:].tocsc()  # gallery rows, indexed by column k
    for s in progress(range(0, nq, 256), desc="re-rank: jaccard", total=(nq + 255) // 256):
        e = min(s + 256, nq)
        blk = V[s:e].tocoo()
        lens = Vc.indptr[blk.col + 1] - Vc.indptr[blk.col]
        src = np.repeat(np.arange(len(blk.col)), lens)
        starts = np.repeat(Vc.indptr[blk.col] - np.cumsum(lens) + lens, lens)
        idx = np.arange(lens.sum()) + starts
        mins = np.minimum(blk.data[src], Vc.data[idx])
        flat = blk.row[src].astype(np.int64) * (n - nq) + Vc.indices[idx]
        tmin = np.bincount(flat, weights=mins, minlength=(e - s) * (n - nq))
        tmin = tmin.reshape(e - s, n - nq).astype(np.float32)
        jac = 1 - tmin / (2.0 - tmin)
        final[s:e] = jac * (1 - lambda_value) + final[s:e] * lambda_value
    return final


def _checked(rows: np.ndarray, s: int, e: int, n: int) -> np.ndarray:
    rows = np.asarray(rows)
    if rows.shape != (e - s, n):
        raise ValueError(f"distance rows {s}:{e} have shape {rows.shape}, expected {(e - s, n)}")
    if np.isnan(rows).any():
        raise ValueError(f"distance rows {s}:{e} contain NaN")
    return rows


def re_ranking(
    q_g_dist: np.ndarray,
    q_q_dist: np.ndarray,
    g_g_dist: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    chunk: int = 1024,
) -> np.ndarray:
    """Drop-in for ``torchreid.utils.re_ranking`` (same arguments, same result).

    Takes the three dense blocks but never concatenates them; see :func:`re_ranking_rows`
    to avoid even the gallery x gallery block.
    """
    q_g, q_q, g_g = (np.asarray(x) for x in (q_g_dist, q_q_dist, g_g_dist))
    nq, ng = q_g.shape
    if q_q.shape != (nq, nq) or g_g.shape != (ng, ng):
        raise ValueError(
            f"re_ranking: q_q {q_q.shape} and g_g {g_g.shape} do not fit q_g {q_g.shape}"
        )
    return re_ranking_rows(
        _dense_rows(q_g, q_q, g_g),
        nq,
        nq + ng,
        k1,
        k2,
        lambda_value,
        chunk,
        pairs_fn=_dense_pairs(q_g, q_q, g_g),
    )
