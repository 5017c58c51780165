"""Benchmark: ranking metrics and re-ranking on a synthetic Market-1501-sized problem.

    uv run python -m reid_pipeline.bench.ranking            # everything (several minutes)
    uv run python -m reid_pipeline.bench.ranking --part rank --no-torchreid

Market-1501's test split: 3,368 queries, 15,913 gallery images (750 identities, 2,793
distractors with pid 0), 6 cameras. Features are synthetic (identity centres + noise, 512-D)
so the run needs no data; the metrics code does not care where distances come from. Each
measurement runs in a fresh process so its peak memory (ru_maxrss) is its own. A benchmark,
not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
import warnings
from typing import Any

import numpy as np

NQ, NG, NIDS, NDISTRACT, NCAM, DIM = 3368, 15913, 750, 2793, 6, 512


def synthetic(scale: float = 1.0, seed: int = 0) -> dict[str, np.ndarray]:
    """Features and labels shaped like Market-1501's test split (scaled)."""
    rng = np.random.default_rng(seed)
    nq, ng = int(NQ * scale), int(NG * scale)
    nids, nd = max(2, int(NIDS * scale)), int(NDISTRACT * scale)
    centres = 0.45 * rng.normal(size=(nids + 1, DIM)).astype(np.float32)
    q_pids = rng.integers(1, nids + 1, nq)
    g_pids = np.concatenate([rng.integers(1, nids + 1, ng - nd), np.zeros(nd, int)])
    q_cams, g_cams = rng.integers(0, NCAM, nq), rng.integers(0, NCAM, ng)

    def feats(pids: np.ndarray) -> np.ndarray:
        f = centres[pids] * (pids > 0)[:, None] + rng.normal(size=(len(pids), DIM))
        return f.astype(np.float32)

    return {
        "qf": feats(q_pids),
        "gf": feats(g_pids),
        "q_pids": q_pids,
        "g_pids": g_pids,
        "q_cams": q_cams,
        "g_cams": g_cams,
    }


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import torch

    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    d = (ta * ta).sum(1, keepdim=True) + (tb * tb).sum(1)[None] - 2 * ta @ tb.T
    return d.clamp_(min=0).numpy()


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _child(task: str, scale: float, q: Any) -> None:
    warnings.simplefilter("ignore")
    data = synthetic(scale)
    ids = (data["q_pids"], data["g_pids"], data["q_cams"], data["g_cams"])
    out: dict[str, Any] = {}
    if task in ("rank", "rank_torchreid"):
        d = _sqdist(data["qf"], data["gf"])
        base = _maxrss_mb()
        t = time.perf_counter()
        if task == "rank":
            from reid_pipeline.evaluate.rank import evaluate_rank_full

            times = []
            for _ in range(3):
                t = time.perf_counter()
                r = evaluate_rank_full(d, *ids)
                times.append(time.perf_counter() - t)
            out.update(seconds=sorted(times)[1], cmc=r.cmc[:20].tolist(), mAP=r.mAP, mINP=r.mINP)
        else:
            from torchreid.reid.metrics.rank import eval_market1501

            cmc, mAP = eval_market1501(d, *ids, 50)
            out.update(seconds=time.perf_counter() - t, cmc=cmc[:20].tolist(), mAP=float(mAP))
    else:
        feats = np.concatenate([data["qf"], data["gf"]])
        nq = len(data["qf"])
        if task == "rerank":
            import torch

            from reid_pipeline.evaluate.distances import pairs_function, rows_function
            from reid_pipeline.evaluate.rerank import re_ranking_rows

            base = _maxrss_mb()
            t = time.perf_counter()
            ft = torch.from_numpy(feats)
            rr = re_ranking_rows(
                rows_function("euclidean", None, ft),
                nq,
                len(feats),
                pairs_fn=pairs_function("euclidean", None, ft),
            )
        else:
            d = _sqdist(feats, feats)
            qg, qq, gg = d[:nq, nq:], d[:nq, :nq], d[nq:, nq:]
            base = _maxrss_mb()
            t = time.perf_counter()
            if task == "rerank_dense":
                from reid_pipeline.evaluate.rerank import re_ranking as ours_rr

                rr = ours_rr(qg, qq, gg)
            else:
                from torchreid.reid.utils.rerank import re_ranking as torchreid_rr

                rr = torchreid_rr(qg, qq, gg)
        out["seconds"] = time.perf_counter() - t
        from reid_pipeline.evaluate.rank import evaluate_rank_full

        r = evaluate_rank_full(rr, *ids)
        out.update(mAP=r.mAP, rank1=r.rank(1), checksum=float(np.float64(rr[:50]).sum()))
    out["base_mb"] = base
    out["peak_mb"] = _maxrss_mb()
    q.put(out)


def measure(task: str, scale: float) -> dict[str, Any]:
    """Run one task in a fresh process; returns its timings and memory."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(task, scale, q))
    p.start()
    res = q.get()
    p.join()
    return res


def check_against_torchreid(data: str, checkpoint: str, backbone: str, rerank: bool) -> None:
    """Real images: our evaluation vs torchreid's own pipeline on the same embeddings
    (``compute_distance_matrix`` + python ``evaluate_rank`` + ``re_ranking``)."""
    from reid_pipeline.config import Config, ModelConfig
    from reid_pipeline.datasets.market import load_dataset, read_image
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.model import load_model
    from reid_pipeline.evaluate.runner import evaluate_features

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid.metrics import compute_distance_matrix, evaluate_rank
        from torchreid.reid.utils.rerank import re_ranking

    cfg = Config(model=ModelConfig(backbone=backbone))
    ds = load_dataset(data)
    model = load_model(checkpoint, cfg.model, "cpu")
    emb = Embedder(model, "cpu", batch=128, half=False)
    t = time.perf_counter()
    qf = emb.embed_crops([read_image(r.path) for r in ds.query])
    gf = emb.embed_crops([read_image(r.path) for r in ds.gallery])
    print(f"embedded {len(qf)} + {len(gf)} images in {time.perf_counter() - t:.0f} s")
    ids = [
        np.array([getattr(r, k) for r in recs])
        for k, recs in (
            ("pid", ds.query),
            ("pid", ds.gallery),
            ("camid", ds.query),
            ("camid", ds.gallery),
        )
    ]
    t = time.perf_counter()
    ours = evaluate_features(
        model, qf, gf, ds.query, ds.gallery, ["euclidean", "cosine"], rerank=rerank
    )
    print(
        f"ours: {time.perf_counter() - t:.2f} s for both modes"
        + (" with re-ranking" if rerank else "")
    )
    for mode in ("euclidean", "cosine"):
        d = compute_distance_matrix(qf, gf, mode).numpy()
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cmc, mAP = evaluate_rank(d, *ids, use_cython=False)
        took = time.perf_counter() - t
        r = ours.results[mode]
        print(
            f"{mode:>9}: torchreid R1 {cmc[0]:.6f} mAP {mAP:.6f} ({took:.1f} s) | ours R1 "
            f"{r.rank(1):.6f} mAP {r.mAP:.6f} mINP {r.mINP:.6f} | max|dCMC| "
            f"{np.abs(cmc - r.cmc[: len(cmc)]).max():.1e} |dmAP| {abs(mAP - r.mAP):.1e}"
        )
        if rerank:
            qq = compute_distance_matrix(qf, qf, mode).numpy()
            gg = compute_distance_matrix(gf, gf, mode).numpy()
            t = time.perf_counter()
            rr = re_ranking(d, qq, gg)
            took = time.perf_counter() - t
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                cmc, mAP = evaluate_rank(rr, *ids, use_cython=False)
            r = ours.results[mode + "+rerank"]
            print(
                f"{mode + '+rr':>9}: torchreid R1 {cmc[0]:.6f} mAP {mAP:.6f} ({took:.1f} s) | "
                f"ours R1 {r.rank(1):.6f} mAP {r.mAP:.6f} | |dmAP| {abs(mAP - r.mAP):.1e}"
            )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["rank", "rerank", "all"], default="all")
    ap.add_argument("--scale", type=float, default=1.0, help="problem size relative to Market")
    ap.add_argument("--no-torchreid", action="store_true", help="skip torchreid's (slow) runs")
    ap.add_argument(
        "--torchreid-rerank-scale",
        type=float,
        default=0.3,
        help="size of the torchreid re-ranking comparison (its memory grows as N^2)",
    )
    ap.add_argument(
        "--check",
        metavar="DATA",
        help="instead: compare with torchreid's pipeline "
        "on real images (needs --checkpoint, --backbone)",
    )
    ap.add_argument("--checkpoint", default="")
    ap.add_argument("--backbone", default="osnet_x0_25")
    ap.add_argument("--rerank", action="store_true", help="with --check: re-ranking too")
    a = ap.parse_args(argv)
    if a.check:
        check_against_torchreid(a.check, a.checkpoint, a.backbone, a.rerank)
        return 0
    s = a.scale
    print(f"problem: {int(NQ * s)} queries x {int(NG * s)} gallery, {DIM}-D synthetic features")
    if a.part in ("rank", "all"):
        ours = measure("rank", s)
        print(
            f"evaluate_rank (ours, numpy):      {ours['seconds']:.3f} s (median of 3)  "
            f"mAP {ours['mAP']:.6f}  mINP {ours['mINP']:.6f}"
        )
        if not a.no_torchreid:
            ref = measure("rank_torchreid", s)
            diff = max(abs(x - y) for x, y in zip(ours["cmc"], ref["cmc"]))
            print(
                f"torchreid eval_market1501 (python): {ref['seconds']:.1f} s  mAP "
                f"{ref['mAP']:.6f}  |dmAP| {abs(ref['mAP'] - ours['mAP']):.1e}  "
                f"max|dCMC@1..20| {diff:.1e}  speed-up x{ref['seconds'] / ours['seconds']:.0f}"
            )
    if a.part in ("rerank", "all"):
        r = measure("rerank", s)
        print(
            f"re-ranking (ours, from features): {r['seconds']:.1f} s, peak RSS "
            f"{r['peak_mb']:.0f} MB (inputs {r['base_mb']:.0f} MB), mAP {r['mAP']:.4f} "
            f"R1 {r['rank1']:.4f}"
        )
        if not a.no_torchreid:
            ts = a.torchreid_rerank_scale
            o = measure("rerank_dense", ts)
            t = measure("rerank_torchreid", ts)
            print(f"at scale {ts} ({int(NQ * ts)} x {int(NG * ts)}), from dense blocks:")
            print(
                f"  ours:      {o['seconds']:.1f} s, peak RSS {o['peak_mb']:.0f} MB (inputs "
                f"{o['base_mb']:.0f} MB), mAP {o['mAP']:.6f}"
            )
            print(
                f"  torchreid: {t['seconds']:.1f} s, peak RSS {t['peak_mb']:.0f} MB (inputs "
                f"{t['base_mb']:.0f} MB), mAP {t['mAP']:.6f}  |dchecksum| "
                f"{abs(o['checksum'] - t['checksum']):.1e}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
