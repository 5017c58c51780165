"""The Triton dichotomy-scoring kernel against the torch reference, on the CPU.

Triton's interpreter (TRITON_INTERPRET=1) is chosen when triton is imported, so the kernel
runs in a subprocess with the variable set; the rest of the suite keeps compiled Triton.
The interpreter cannot execute inline PTX, so the packed mode runs as MODE_EMULATE there:
the same tiles, K-major int64 operands, masks, fp16 chunk sums and fused top-k, with the
two packed PTX instructions written as tl ops. The PTX itself is checked on a GPU by
benchmarks/gpu_kernel_check.py (results in docs/benchmarks.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def interp() -> dict:
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "_triton_interp_check.py"), "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_interpreter_really_runs(interp: dict) -> None:
    assert interp["interpreting"] is True
    assert len(interp["cases"]) == 4


def test_scores_match_reference_on_odd_sizes(interp: dict) -> None:
    for c in interp["cases"]:
        assert c["finite"] and c["dtype"] == "torch.float32", c
        assert c["rel_f32"] < 1e-6, c  # fp32 kernel: fp32 rounding only
        assert c["rel_packed"] < 2e-3, c  # fp16 arithmetic, fp32 accumulation
        assert c["rel_packed_gallery"] == pytest.approx(c["rel_packed"], rel=1e-6, abs=1e-9)


def test_fused_topk_is_the_exact_best(interp: dict) -> None:
    for c in interp["cases"]:
        assert c["topk_f32_idx_ok"] and c["topk_f32_err"] < 1e-4, c
        assert c["topk_packed_err"] < 2e-3, c
        assert c["topk_unique"] and c["topk_sorted"], c
        assert c["topk_val_rel"] < 2e-3, c


def test_short_gallery_and_dispatch(interp: dict) -> None:
    sg = interp["short_gallery"]
    assert sg["tail_inf"] and all(row == [-1, -1] for row in sg["tail_idx"])
    assert sg["head_idx"] == [0, 1]
    assert interp["dispatch_triton"] < 2e-3
    assert interp["dispatch_f32"] < 1e-6
    assert interp["negative_w"] < 1e-6  # w < 0 cannot be folded: fp32 kernel
    assert interp["topk_pairs_err"] < 2e-3


def test_auto_backend_on_cpu_is_the_reference() -> None:
    from reid_pipeline.match.scoring import (
        dichotomy_scores,
        resolve_backend,
        score_pairs,
        topk_pairs,
    )

    assert resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.raises(ValueError, match="needs CUDA"):
        resolve_backend("triton", torch.device("cpu"))
    with pytest.raises(ValueError, match="backend must be one of"):
        resolve_backend("fast", torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    q, gal, w = torch.randn(7, 12, generator=g), torch.randn(300, 12, generator=g), torch.rand(12)
    ref = dichotomy_scores(q, gal, w, 1.5)
    assert torch.equal(score_pairs(q, gal, w, 1.5), ref)
    v, i = topk_pairs(q, gal, w, 1.5, 4, chunk=64)  # chunked merge == one big topk
    rv, ri = torch.topk(ref, 4, dim=1)
    assert torch.allclose(v, rv) and torch.equal(i, ri)
    with pytest.raises(ValueError, match="do not fit"):
        score_pairs(q, gal[:, :5], w, 0.0)
    with pytest.raises(ValueError, match="k must be"):
        topk_pairs(q, gal, w, 0.0, 0)


def test_prefilter_finds_the_classifier_best() -> None:
    from reid_pipeline.match.prefilter import cosine_topk, prefilter_recall, prefiltered_topk
    from reid_pipeline.match.scoring import dichotomy_scores

    g = torch.Generator().manual_seed(1)
    ids = torch.randn(50, 32, generator=g)
    gal = (ids.repeat(20, 1) + 0.3 * torch.randn(1000, 32, generator=g)).relu()
    q = (ids[:10] + 0.3 * torch.randn(10, 32, generator=g)).relu()
    w = torch.rand(32, generator=g)
    _, ci = cosine_topk(q, gal, 5, chunk=128)
    sims = torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(gal, dim=1).t()
    assert torch.equal(ci, torch.topk(sims, 5, dim=1).indices)
    v, _i = prefiltered_topk(q, gal, w, 0.0, 3, shortlist=1000)  # shortlist = all: exact
    ref = dichotomy_scores(q, gal, w, 0.0)
    assert torch.allclose(v, torch.topk(ref, 3, dim=1).values, atol=1e-4)
    assert prefilter_recall(q, gal, w, 0.0, shortlist=1000) == 1.0
    r = prefilter_recall(q, gal, w, 0.0, shortlist=2)
    assert 0.0 <= r <= 1.0
