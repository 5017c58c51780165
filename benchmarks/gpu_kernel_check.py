"""GPU check of the dichotomy-scoring kernel: correctness on many random shapes (odd sizes
included) against an fp64 reference, then throughput at D=512 per tile config and for
the autotuned kernel, beside the baselines. Run on a CUDA machine:

    PYTHONUNBUFFERED=1 python benchmarks/gpu_kernel_check.py [--quick]

Prints one line per check and a final table; exits 1 on any correctness failure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import triton

DEV = "cuda" if torch.cuda.is_available() else "cpu"

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# importable from a checkout without installing the package: the path goes in first
from reid_pipeline.match import triton_kernel as tk  # noqa: E402
from reid_pipeline.match.prefilter import prefilter_recall  # noqa: E402
from reid_pipeline.match.scoring import dichotomy_scores  # noqa: E402


def do_bench(fn, warmup: int = 25, rep: int = 100, return_mode: str = "median") -> float:
    """Median ms: triton's event timer on CUDA, a wall clock on the CPU (interpreter)."""
    if DEV == "cuda":
        from triton.testing import do_bench as db

        return db(fn, warmup=warmup, rep=rep, return_mode=return_mode)
    fn()
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return sorted(ts)[1]


def rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return float((a.double() - ref).norm() / ref.norm().clamp_min(1e-30))


def check_shapes(n_shapes: int, gen: torch.Generator) -> bool:
    ok = True
    cfgs = [
        {"BM": 16, "BN": 256, "BK": 16, "num_warps": 4},
        {"BM": 32, "BN": 128, "BK": 8, "num_warps": 4},
    ]
    dims = [1, 3, 7, 64, 100, 128, 255, 512, 513, 768]
    for t in range(n_shapes):
        n = int(torch.randint(1, 300, (1,), generator=gen))
        m = int(torch.randint(1, 3000, (1,), generator=gen))
        d = dims[t % len(dims)]
        dt = [torch.float16, torch.bfloat16, torch.float32][t % 3]
        q = torch.randn(n, d, generator=gen).to(DEV).to(dt)
        g = torch.randn(m, d, generator=gen).to(DEV).to(dt)
        w = torch.rand(d, generator=gen).to(DEV)
        b = float(torch.randn(1, generator=gen))
        ref = dichotomy_scores(q.double(), g.double(), w.double(), b)
        cfg = cfgs[t % 2]
        s_p = tk.triton_scores(q, g, w, b, packed=True, config=cfg)
        s_f = tk.triton_scores(q, g, w, b, packed=False, config={"BM": 32, "BN": 32, "BK": 8})
        e_p, e_f = rel(s_p, ref), rel(s_f, ref)
        k = int(min(m, [1, 5, 10, 16][t % 4]))
        v, i = tk.triton_topk(q, g, w, b, k, packed=True, config=cfg)
        # the chosen entries' reference scores must equal the best k reference scores
        rv = torch.topk(ref, k, dim=1).values
        got = torch.gather(ref, 1, i.clamp_min(0))
        e_k = float((got.sort(1, descending=True).values - rv).abs().max() / ref.abs().max())
        e_kv = rel(v, torch.gather(ref, 1, i.clamp_min(0)))
        dup = any(len(set(r.tolist())) != k for r in i.cpu())
        good = (
            e_p < 2e-3
            and e_f < 1e-5
            and e_k < 2e-3
            and e_kv < 2e-3
            and not dup
            and bool(torch.isfinite(s_p).all())
        )
        ok &= good
        print(
            f"shape n={n} m={m} d={d} {str(dt)[6:]} cfg={cfg['BM']}x{cfg['BN']} "
            f"rel_packed={e_p:.2e} rel_f32={e_f:.2e} topk{k}={e_k:.1e}/{e_kv:.1e} "
            f"{'ok' if good else 'FAIL'}",
            flush=True,
        )
    # negative weights must take the f32 path and still be right
    q = torch.randn(33, 77, device=DEV)
    g = torch.randn(45, 77, device=DEV)
    w = torch.randn(77, device=DEV)
    from reid_pipeline.match.scoring import score_pairs

    e = rel(score_pairs(q, g, w, 0.3), dichotomy_scores(q.double(), g.double(), w.double(), 0.3))
    print(f"negative w via score_pairs rel={e:.2e}", flush=True)
    ok &= e < 1e-5
    return ok


def perf(n: int, m: int, d: int, out: dict) -> None:
    q = torch.randn(n, d, device=DEV).half()
    g = torch.randn(m, d, device=DEV).half()
    w = torch.rand(d, device=DEV)
    pairs = n * m
    res = {}
    alpha = tk.pack_scale(q, g, w)
    qa, ga = tk.pack_operand(q, w, alpha), tk.pack_operand(g, w, alpha)
    res["pack_ms"] = do_bench(
        lambda: (tk.pack_operand(q, w, alpha), tk.pack_operand(g, w, alpha)), return_mode="median"
    )
    # each packed config alone (kernel only, operands packed once)
    out_s = torch.empty(n, m, device=DEV)
    for c in tk._packed_configs() if DEV == "cuda" else []:
        meta = dict(c.kwargs)
        grid = (triton.cdiv(n, meta["BM"]), triton.cdiv(m, meta["BN"]))

        def run(meta=meta, grid=grid, c=c):
            tk.dichotomy_kernel[grid](
                qa,
                ga,
                w,
                out_s,
                out_s,
                out_s,
                n,
                m,
                qa.shape[0],
                qa.shape[1],
                ga.shape[1],
                m,
                1.0 / alpha,
                0.0,
                0,
                0,
                MODE=tk.MODE_PACKED,
                TOPK=0,
                num_warps=c.num_warps,
                num_stages=c.num_stages,
                **meta,
                **({"maxnreg": c.maxnreg} if c.maxnreg else {}),
            )

        try:
            t = do_bench(run, warmup=50, rep=200, return_mode="median")
            res[f"cfg {meta['BM']}x{meta['BN']}x{meta['BK']} w{c.num_warps} r{c.maxnreg}"] = (
                pairs / t * 1e3
            )
        except Exception as e:  # noqa: BLE001 - a config that does not compile/fit is reported, not fatal
            res[f"cfg {meta['BM']}x{meta['BN']}x{meta['BK']} w{c.num_warps} r{c.maxnreg}"] = (
                f"error {e}"[:120]
            )
    for ns in (2, 3) if DEV == "cuda" else ():
        c = tk._packed_configs()[0]
        meta = dict(c.kwargs)
        grid = (triton.cdiv(n, meta["BM"]), triton.cdiv(m, meta["BN"]))

        def run_ns(meta=meta, grid=grid, c=c, ns=ns):
            tk.dichotomy_kernel[grid](
                qa,
                ga,
                w,
                out_s,
                out_s,
                out_s,
                n,
                m,
                qa.shape[0],
                qa.shape[1],
                ga.shape[1],
                m,
                1.0 / alpha,
                0.0,
                0,
                0,
                MODE=1,
                TOPK=0,
                num_warps=c.num_warps,
                num_stages=ns,
                **meta,
            )

        res[f"cfg0 stages{ns}"] = pairs / do_bench(run_ns, 50, 200) * 1e3
    t0 = time.time()
    tk.triton_scores(q, g, w, 0.0)
    res["autotune_s"] = time.time() - t0
    res["scores_autotuned_incl_pack"] = (
        pairs / do_bench(lambda: tk.triton_scores(q, g, w, 0.0), return_mode="median") * 1e3
    )
    res["best_config"] = str(getattr(tk.packed_kernel_tuned, "best_config", None))
    tk.triton_topk(q, g, w, 0.0, 10)
    res["topk10_autotuned_incl_pack"] = (
        pairs / do_bench(lambda: tk.triton_topk(q, g, w, 0.0, 10), return_mode="median") * 1e3
    )
    res["topk_best_config"] = str(getattr(tk.packed_kernel_tuned, "best_config", None))
    tk.triton_scores(q, g, w, 0.0, packed=False)
    res["f32_kernel"] = (
        pairs
        / do_bench(lambda: tk.triton_scores(q, g, w, 0.0, packed=False), return_mode="median")
        * 1e3
    )
    qf, gf = q.float() * w, g.float() * w
    res["cdist_p1_fp32"] = (
        pairs / do_bench(lambda: torch.cdist(qf, gf, p=1), return_mode="median") * 1e3
    )
    mm = min(m, 8192)
    res["naive_broadcast"] = (
        n * mm / do_bench(lambda: dichotomy_scores(q, g[:mm], w, 0.0), return_mode="median") * 1e3
    )
    qn = torch.nn.functional.normalize(q.float(), dim=1).half()
    gn = torch.nn.functional.normalize(g.float(), dim=1).half()
    res["cosine_fp16_matmul"] = pairs / do_bench(lambda: qn @ gn.t(), return_mode="median") * 1e3
    out[f"N={n} M={m} D={d}"] = res
    for k2, v in res.items():
        print(f"  {k2:32s} {v:.3e}" if isinstance(v, float) else f"  {k2:32s} {v}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", type=int, default=40)
    ap.add_argument("--json", default="")
    ap.add_argument("--recall-gallery", type=int, default=1_000_000)
    a = ap.parse_args()
    print(
        torch.__version__,
        triton.__version__,
        torch.cuda.get_device_name() if DEV == "cuda" else "cpu",
        flush=True,
    )
    gen = torch.Generator().manual_seed(1)
    t0 = time.time()
    ok = check_shapes(a.shapes, gen)
    print(f"correctness {'PASS' if ok else 'FAIL'} in {time.time() - t0:.1f}s", flush=True)
    out: dict = {"correct": ok}
    ap_n, ap_m = (1024, 262144) if DEV == "cuda" else (8, 64)
    perf(ap_n, ap_m, 512 if DEV == "cuda" else 16, out)
    # large gallery: cosine prefilter recall of the classifier's true best
    if a.recall_gallery:
        torch.manual_seed(0)
        d = 512 if DEV == "cuda" else 16
        ids = torch.randn(min(20000, a.recall_gallery), d, device=DEV)
        g = (
            (
                ids[torch.randint(0, ids.shape[0], (a.recall_gallery,), device=DEV)]
                + 0.7 * torch.randn(a.recall_gallery, d, device=DEV)
            )
            .relu()
            .half()
        )
        nq = 1024 if DEV == "cuda" else 8
        q = (
            (
                ids[torch.randint(0, ids.shape[0], (nq,), device=DEV)]
                + 0.7 * torch.randn(nq, d, device=DEV)
            )
            .relu()
            .half()
        )
        w = torch.rand(d, device=DEV)
        for sl in (64, 256, 1024):
            r = prefilter_recall(q, g, w, 0.0, shortlist=sl)
            out[f"recall@shortlist{sl}"] = r
            print(f"  prefilter recall of true best, shortlist {sl}: {r:.4f}", flush=True)
        from reid_pipeline.match.prefilter import prefiltered_topk

        out["prefilter_topk_ms"] = do_bench(
            lambda: prefiltered_topk(q, g, w, 0.0, 10, 256), return_mode="median"
        )
        out["exhaustive_topk_ms"] = do_bench(
            lambda: tk.triton_topk(q, g, w, 0.0, 10), return_mode="median"
        )
        print(
            f"  1M gallery x 1024 queries: prefiltered {out['prefilter_topk_ms']:.1f} ms, "
            f"exhaustive fused top-k {out['exhaustive_topk_ms']:.1f} ms",
            flush=True,
        )
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
