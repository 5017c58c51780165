"""Run by tests/test_triton_kernel.py in a subprocess with TRITON_INTERPRET=1 set before
Triton is imported (the interpreter is chosen at import time, so the variable must not
leak into the other tests' process). Prints one JSON line of results."""

from __future__ import annotations

import json
import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

# the check above must run before torch (and with it Triton) is imported
import torch  # noqa: E402

from reid_pipeline.match import triton_kernel as tk  # noqa: E402
from reid_pipeline.match.scoring import dichotomy_scores, score_pairs, topk_pairs  # noqa: E402


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).norm() / ref.norm().clamp_min(1e-30))


def main() -> int:
    torch.manual_seed(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    out: dict = {"interpreting": tk.interpreting(), "cases": []}
    # odd sizes: rows not multiples of the tile, D not a multiple of 4 (fp16x2 groups)
    shapes = [
        (1, 1, 1, torch.float16),
        (5, 37, 20, torch.bfloat16),
        (17, 70, 67, torch.float32),
        (33, 29, 130, torch.float16),
    ]
    for n, m, d, dt in shapes:
        q, g = torch.randn(n, d).to(dt), torch.randn(m, d).to(dt)
        w, b = torch.rand(d), float(torch.randn(()))
        ref = dichotomy_scores(q.double(), g.double(), w.double(), b)
        s_pack = tk.triton_scores(q, g, w, b, packed=True)
        s_f32 = tk.triton_scores(q, g, w, b, packed=False)
        k = min(m, 5)
        v, i = tk.triton_topk(q, g, w, b, k, packed=True)
        vf, i_f = tk.triton_topk(q, g, w, b, k, packed=False)
        ref_top = torch.topk(ref, k, dim=1).values
        pg = tk.PackedGallery.build(g, w)
        s_pg = tk.triton_scores(q, None, w, b, gallery=pg)
        out["cases"].append(
            {
                "shape": [n, m, d, str(dt)],
                "rel_packed": rel(s_pack, ref),
                "rel_f32": rel(s_f32, ref),
                "rel_packed_gallery": rel(s_pg, ref),
                "finite": bool(torch.isfinite(s_pack).all() and torch.isfinite(s_f32).all()),
                "dtype": str(s_pack.dtype),
                # the selected entries' exact scores must be the exact best k (ties aside)
                "topk_packed_err": float(
                    (torch.gather(ref, 1, i).sort(1, descending=True).values - ref_top).abs().max()
                    / ref.abs().max()
                ),
                "topk_f32_err": float((vf.double() - ref_top).abs().max()),
                "topk_f32_idx_ok": bool(
                    (torch.gather(ref, 1, i_f).double() - ref_top).abs().max() < 1e-4
                ),
                "topk_unique": all(len(set(r.tolist())) == k for r in i),
                "topk_sorted": bool((v[:, 1:] <= v[:, :-1]).all()),
                "topk_val_rel": rel(v, torch.gather(ref, 1, i)),
            }
        )
    # gallery smaller than k: tail is (-inf, -1)
    q, g, w = torch.randn(3, 8), torch.randn(2, 8), torch.rand(8)
    v, i = tk.triton_topk(q, g, w, 0.0, 4, packed=True)
    out["short_gallery"] = {
        "tail_idx": i[:, 2:].tolist(),
        "tail_inf": bool(torch.isinf(v[:, 2:]).all()),
        "head_idx": sorted(i[0, :2].tolist()),
    }
    # dispatch under the interpreter: explicit triton backends run the kernel on the CPU
    q, g, w = torch.randn(9, 16), torch.randn(40, 16), torch.rand(16)
    ref = dichotomy_scores(q.double(), g.double(), w.double(), 0.5)
    out["dispatch_triton"] = rel(score_pairs(q, g, w, 0.5, backend="triton"), ref)
    out["dispatch_f32"] = rel(score_pairs(q, g, w, 0.5, backend="triton-f32"), ref)
    wn = torch.randn(16)  # negative weights take the fp32 kernel even when packed is asked
    refn = dichotomy_scores(q.double(), g.double(), wn.double(), 0.5)
    out["negative_w"] = rel(score_pairs(q, g, wn, 0.5, backend="triton"), refn)
    _tv, ti = topk_pairs(q, g, w, 0.5, 3, backend="triton")
    out["topk_pairs_err"] = float(
        (
            torch.gather(ref, 1, ti).sort(1, descending=True).values
            - torch.topk(ref, 3, dim=1).values
        )
        .abs()
        .max()
        / ref.abs().max()
    )
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
