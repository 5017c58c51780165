"""Memory-safe re-ranking equals torchreid's re_ranking (ties and asymmetric input included)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from reid_pipeline.evaluate.distances import distance, pairs_function, rows_function
from reid_pipeline.evaluate.rerank import re_ranking, re_ranking_rows

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchreid.reid.utils.rerank import re_ranking as torchreid_re_ranking


def _blocks(d: np.ndarray, nq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return d[:nq, nq:], d[:nq, :nq], d[nq:, nq:]


@pytest.mark.parametrize(
    "nq,ng,k1,k2,chunk",
    [
        (5, 8, 20, 6, 4),
        (20, 90, 20, 6, 1024),
        (30, 150, 20, 6, 7),
        (25, 120, 5, 1, 50),
        (30, 140, 10, 3, 33),
    ],
)
def test_equals_torchreid_on_clustered_features(
    nq: int, ng: int, k1: int, k2: int, chunk: int
) -> None:
    rng = np.random.default_rng(nq + ng)
    n = nq + ng
    x = rng.normal(size=(n, 8)) + np.repeat(rng.normal(size=(n // 4 + 1, 8)) * 2, 4, axis=0)[:n]
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1)).astype(np.float32)
    ref = torchreid_re_ranking(*_blocks(d, nq), k1=k1, k2=k2, lambda_value=0.3)
    ours = re_ranking(*_blocks(d, nq), k1=k1, k2=k2, lambda_value=0.3, chunk=chunk)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, atol=2e-6)


@pytest.mark.parametrize("ties", [False, True])
def test_equals_torchreid_on_asymmetric_and_tied_distances(ties: bool) -> None:
    rng = np.random.default_rng(11 + ties)
    for _ in range(3):
        nq, ng = int(rng.integers(3, 25)), int(rng.integers(10, 100))
        n = nq + ng
        d = (rng.integers(1, 6, (n, n)) if ties else rng.random((n, n)) + 0.01).astype(np.float32)
        np.fill_diagonal(d, 0)
        ref = torchreid_re_ranking(*_blocks(d, nq))
        ours = re_ranking(*_blocks(d, nq), chunk=int(rng.integers(3, 40)))
        np.testing.assert_allclose(ours, ref, atol=2e-6)


def test_rows_callback_from_embeddings_matches_dense() -> None:
    """The embedding callback (no (Q+G)^2 matrix) gives what the dense blocks give."""
    rng = np.random.default_rng(3)
    feats = torch.from_numpy(rng.normal(size=(70, 6)).astype(np.float32))
    nq = 15
    for mode in ("euclidean", "cosine"):
        full = distance(mode, None, feats, feats).clamp(min=0).numpy()
        dense = re_ranking(*_blocks(full, nq))
        rows = re_ranking_rows(rows_function(mode, None, feats), nq, len(feats), chunk=16)
        np.testing.assert_allclose(rows, dense, atol=1e-6)
        pairs = re_ranking_rows(
            rows_function(mode, None, feats),
            nq,
            len(feats),
            chunk=16,
            pairs_fn=pairs_function(mode, None, feats),
        )
        np.testing.assert_allclose(pairs, dense, atol=1e-6)


def test_dissimilarity_pairs_equal_rows() -> None:
    class WB:
        w = torch.rand(6)
        b = torch.tensor(1.5)

        def pair_scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
            return self.b - ((q[:, None] - g[None]).abs() * self.w).sum(-1)

    feats = torch.randn(40, 6)
    rows = np.array([0, 3, 39, 7])
    cols = np.array([5, 3, 0, 38])
    full = distance("dissimilarity", WB(), feats, feats).numpy()
    got = pairs_function("dissimilarity", WB(), feats)(rows, cols)
    np.testing.assert_allclose(got, full[rows, cols], rtol=1e-5, atol=1e-5)
    assert pairs_function("dissimilarity", object(), feats) is None


def test_bad_arguments() -> None:
    d = np.random.default_rng(0).random((10, 10)).astype(np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        re_ranking(d[:3, 3:], d[:4, :4], d[3:, 3:])
    with pytest.raises(ValueError, match="lambda_value"):
        re_ranking(*_blocks(d, 3), lambda_value=2.0)
    bad = d.copy()
    bad[5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        re_ranking(*_blocks(bad, 3))
