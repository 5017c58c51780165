"""evaluate_rank against torchreid's python evaluator, ties included, plus mINP and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from reid_pipeline.evaluate import evaluate_rank, evaluate_rank_full
from reid_pipeline.evaluate.rank import positions_numpy, positions_torch, relevant_pairs

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from torchreid.reid.metrics.rank import eval_market1501


def _case(rng: np.random.Generator, ties: bool, big: bool = False) -> tuple:
    nq = int(rng.integers(1, 25))
    ng = int(rng.integers(100, 1500) if big else rng.integers(1, 90))
    npid, ncam = int(rng.integers(1, 12)), int(rng.integers(1, 5))
    qp, gp = rng.integers(-1, npid, nq), rng.integers(-1, npid, ng)
    qc, gc = rng.integers(0, ncam, nq), rng.integers(0, ncam, ng)
    if ties:  # few distinct values: nearly every match is tied with others
        dtype = [np.float32, np.float64][int(rng.integers(0, 2))]
        d = rng.integers(0, int(rng.integers(1, 8)), (nq, ng)).astype(dtype)
    else:
        d = rng.random((nq, ng)).astype(np.float32)
    return d, qp, gp, qc, gc, int(rng.integers(1, 60))


def _torchreid(*args: object) -> tuple | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return eval_market1501(*args)
    except (AssertionError, ValueError):  # no valid query / ragged CMC lists
        return None


@pytest.mark.parametrize("ties,big", [(False, False), (True, False), (True, True)])
def test_equals_torchreid_on_random_cases(
    ties: bool, big: bool, capsys: pytest.CaptureFixture
) -> None:
    rng = np.random.default_rng(7 + ties + 2 * big)
    compared = 0
    for _ in range(40 if big else 150):
        d, qp, gp, qc, gc, mr = _case(rng, ties, big)
        ref = _torchreid(d, qp, gp, qc, gc, mr)
        if ref is None:
            continue
        cmc, mAP = evaluate_rank(d, qp, gp, qc, gc, mr)
        assert cmc.shape == ref[0].shape
        np.testing.assert_allclose(cmc, ref[0], atol=1e-6)
        assert abs(mAP - ref[1]) <= 1e-6
        compared += 1
    assert compared >= 20
    capsys.readouterr()


def _reference_minp(
    d: np.ndarray, qp: np.ndarray, gp: np.ndarray, qc: np.ndarray, gc: np.ndarray
) -> tuple[float, int]:
    """mINP as in Ye et al.'s AGW code (a plain loop), and the skipped-query count."""
    inps, skipped = [], 0
    for i in range(len(qp)):
        order = np.argsort(d[i])
        keep = ~((gp[order] == qp[i]) & (gc[order] == qc[i]))
        raw = (gp[order] == qp[i])[keep].astype(int)
        if not raw.any():
            skipped += 1
            continue
        last = np.where(raw == 1)[0].max()
        inps.append(raw.cumsum()[last] / (last + 1.0))
    return float(np.mean(inps)), skipped


def test_minp_and_skipped_count() -> None:
    rng = np.random.default_rng(3)
    for _ in range(60):
        d, qp, gp, qc, gc, mr = _case(rng, ties=bool(rng.integers(0, 2)))
        if _torchreid(d, qp, gp, qc, gc, mr) is None:
            continue
        r = evaluate_rank_full(d, qp, gp, qc, gc, mr)
        minp, skipped = _reference_minp(d, qp, gp, qc, gc)
        assert abs(r.mINP - minp) < 1e-9
        assert r.num_skipped == skipped and r.num_valid + skipped == len(qp)


def test_hand_computed_example() -> None:
    # one query (pid 1, cam 0); gallery ordered by distance:
    # g0 pid 1 cam 0 (removed), g1 pid 2, g2 pid 1 cam 1 (match), g3 pid 0 (distractor),
    # g4 pid 1 cam 2 (match)
    d = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    r = evaluate_rank_full(d, [1], [1, 2, 1, 0, 1], [0], [0, 0, 1, 0, 2], max_rank=4)
    # kept list: g1 g2 g3 g4 -> matches at positions 2 and 4
    np.testing.assert_allclose(r.cmc, [0, 1, 1, 1])
    assert r.mAP == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert r.mINP == pytest.approx(2 / 4)
    assert r.summary() == {
        "rank1": 0.0,
        "rank5": 1.0,
        "rank10": 1.0,
        "mAP": pytest.approx(0.5),
        "mINP": pytest.approx(0.5),
    }


def test_torch_counting_path_equals_numpy_path() -> None:
    """The CUDA path's position logic, run on CPU tensors (ties included)."""
    rng = np.random.default_rng(5)
    for ties in (False, True):
        d, qp, gp, _, _, _ = _case(rng, ties, big=True)
        qi, gj = relevant_pairs(qp.astype(np.int64), gp.astype(np.int64))
        p_np, _ = positions_numpy(d, qi, gj)
        p_t, _ = positions_torch(torch.from_numpy(d), qi, gj, chunk_elems=200_000)
        np.testing.assert_array_equal(p_np, p_t)


def test_accepts_torch_tensors() -> None:
    rng = np.random.default_rng(9)
    d = rng.random((6, 30)).astype(np.float32)
    ids = (
        rng.integers(0, 3, 6),
        rng.integers(0, 3, 30),
        rng.integers(0, 2, 6),
        rng.integers(0, 2, 30),
    )
    a = evaluate_rank_full(d, *ids)
    b = evaluate_rank_full(torch.from_numpy(d), *(torch.from_numpy(x) for x in ids))
    assert a.mAP == b.mAP and np.array_equal(a.cmc, b.cmc)


@pytest.mark.parametrize(
    "args,msg",
    [
        ((np.zeros((2, 3)), [1, 2], [1, 2, 3], [0, 1], [0, 1]), "g_pids has 3 entries"),
        ((np.zeros((2, 3)), [1], [1, 2, 3], [0, 1], [0, 1, 0]), "q_pids has 1 entries"),
        ((np.zeros((2, 4)), [1, 2], [1, 2, 3], [0, 1], [0, 1, 1]), r"shape \(2, 4\)"),
        ((np.zeros((0, 3)), [], [1, 2, 3], [], [0, 1, 1]), "query set is empty"),
        ((np.zeros((2, 0)), [1, 2], [], [0, 1], []), "gallery is empty"),
        ((np.array([[0.1, np.nan]]), [1], [1, 1], [0], [1, 1]), "NaN"),
        ((np.zeros(3), [1], [1, 1, 1], [0], [1, 1, 1]), "2-D"),
        ((np.zeros((1, 2)), [1.5], [1, 1], [0], [1, 1]), "integers"),
        ((np.zeros((1, 2)), [1], [1, 1], [0], [0, 0]), "no query has a valid match"),
    ],
)
def test_bad_input_is_a_clear_error(args: tuple, msg: str) -> None:
    with pytest.raises(ValueError, match=msg):
        evaluate_rank(*args)


def test_cuda_device_path_or_clear_error() -> None:
    """With CUDA: the GPU path equals the CPU one (ties included); without: a clear error."""
    rng = np.random.default_rng(21)
    d, qp, gp, qc, gc, mr = _case(rng, ties=True, big=True)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            evaluate_rank_full(d, qp, gp, qc, gc, mr, device="cuda")
        return
    ref = _torchreid(d, qp, gp, qc, gc, mr)
    got = evaluate_rank_full(d, qp, gp, qc, gc, mr, device="cuda")
    cpu = evaluate_rank_full(d, qp, gp, qc, gc, mr)
    assert got.mAP == pytest.approx(cpu.mAP, abs=1e-12) and np.array_equal(got.cmc, cpu.cmc)
    if ref is not None:
        assert abs(got.mAP - ref[1]) <= 1e-6
