"""``reid evaluate``: Market-1501-protocol figures of one checkpoint in every matching mode."""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from reid_pipeline.commands.common import add_common
from reid_pipeline.config import Config
from reid_pipeline.errors import OutputError

log = logging.getLogger(__name__)

_COLS = (("R1", "rank1"), ("R5", "rank5"), ("R10", "rank10"), ("mAP", "mAP"), ("mINP", "mINP"))


def register(sub: Any) -> None:
    p = sub.add_parser(
        "evaluate",
        help="CMC/mAP/mINP on a ReID dataset, three matching modes",
        description="Evaluate a checkpoint under the Market-1501 protocol with "
        "Euclidean, cosine and dissimilarity-classifier matching side by side.",
    )
    add_common(p)
    p.add_argument(
        "--data",
        dest="cfg__eval__data",
        metavar="ROOT",
        help="dataset root: Market-1501 (with or without Market-1501-v15.09.15), "
        "DukeMTMC-reID, MSMT17 or PID_cCAM folders (key: eval.data)",
    )
    p.add_argument(
        "--checkpoint",
        dest="cfg__eval__checkpoint",
        metavar="PATH",
        help="our checkpoint or a torchreid model-zoo state_dict; default: "
        "model.checkpoint (key: eval.checkpoint)",
    )
    p.add_argument(
        "--out",
        dest="cfg__eval__out",
        metavar="DIR",
        help="output folder for metrics.json and plots (key: eval.out)",
    )
    p.add_argument(
        "--modes",
        dest="cfg__eval__modes",
        metavar="M1,M2",
        help="comma list of euclidean, cosine, dissimilarity (key: eval.modes)",
    )
    p.add_argument(
        "--rerank",
        dest="cfg__eval__rerank",
        action="store_const",
        const=True,
        help="also report k-reciprocal re-ranking (key: eval.rerank)",
    )
    p.add_argument(
        "--max-rank",
        dest="cfg__eval__max_rank",
        type=int,
        metavar="N",
        help="length of the CMC curve (key: eval.max_rank)",
    )
    p.add_argument(
        "--batch",
        dest="cfg__eval__batch",
        type=int,
        metavar="N",
        help="images per embedder call (key: eval.batch)",
    )
    p.add_argument(
        "--backbone",
        dest="cfg__model__backbone",
        metavar="ARCH",
        help="torchreid architecture of a model-zoo checkpoint (key: model.backbone)",
    )
    p.set_defaults(func=run)


def format_table(metrics: dict[str, dict[str, float]], skipped: dict[str, int]) -> str:
    """Percent table, best value per column starred, then the paper's comparison in one line."""
    names = [n for n in metrics if "+" not in n] + [n for n in metrics if "+" in n]
    best = {k: max(metrics[n][k] for n in names) for _, k in _COLS}
    w = max(len("mode"), *(len(n) for n in names)) + 2
    lines = ["mode".ljust(w) + "".join(f"{c:>9}" for c, _ in _COLS)]
    for n in names:
        cells = []
        for _, k in _COLS:
            v = metrics[n][k]
            cells.append(f"{100 * v:8.1f}" + ("*" if v == best[k] and len(names) > 1 else " "))
        lines.append(n.ljust(w) + "".join(cells))
    lines.append("(percent; * best in column)")
    for suffix in ("", "+rerank"):
        d = metrics.get("dissimilarity" + suffix)
        bases = [b + suffix for b in ("euclidean", "cosine") if b + suffix in metrics]
        if d and bases:
            ref = max(bases, key=lambda b: (metrics[b]["mAP"], metrics[b]["rank1"]))
            lines.append(
                f"dissimilarity{suffix} vs best baseline ({ref}): "
                f"R1 {100 * (d['rank1'] - metrics[ref]['rank1']):+.1f}, "
                f"mAP {100 * (d['mAP'] - metrics[ref]['mAP']):+.1f}, "
                f"mINP {100 * (d['mINP'] - metrics[ref]['mINP']):+.1f} points"
            )
    counts = sorted(set(skipped.values()))
    lines.append(
        "queries skipped (no valid gallery match): "
        + (
            str(counts[0])
            if len(counts) == 1
            else ", ".join(f"{n} {s}" for n, s in skipped.items())
        )
    )
    return "\n".join(lines)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.datasets.market import load_dataset
    from reid_pipeline.errors import ConfigError
    from reid_pipeline.evaluate.plots import pick_queries, plot_cmc, plot_ranked_lists
    from reid_pipeline.evaluate.runner import run_evaluation
    from reid_pipeline.pipeline.build import build_model
    from reid_pipeline.utils import resolve_device

    e = cfg.eval
    if not e.data:
        raise ConfigError("config key 'eval.data': no dataset given (use --data ROOT)")
    ds = load_dataset(e.data)
    ds.require_test()
    out = Path(e.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputError(f"cannot create output folder {str(out)!r}: {err.strerror}") from None
    device = resolve_device(cfg.device)
    spec = e.checkpoint or cfg.model.checkpoint
    model = build_model(cfg, device, spec)  # as the pipeline loads it: evaluated = deployed
    log.info("model %s on %s", model.model_version, device)
    t0 = time.perf_counter()
    res = run_evaluation(
        model,
        ds.query,
        ds.gallery,
        e.modes,
        device,
        batch=e.batch,
        rerank=e.rerank,
        half=cfg.model.half,
        max_rank=e.max_rank,
        k1=e.k1,
        k2=e.k2,
        lambda_value=e.lambda_value,
        keep_distmats=e.ranked_queries > 0,
        model_cfg=cfg.model,  # model.runtime: embedded as serving embeds
    )
    total = time.perf_counter() - t0
    metrics = res.metrics()
    skipped = {k: r.num_skipped for k, r in res.results.items()}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    info = {
        "dataset": ds.summary(),
        "checkpoint": spec,
        "model_version": model.model_version,
        "device": str(device),
        "runtime": res.runtime,
        "num_query": len(res.query),
        "num_gallery": len(res.gallery),
        "skipped_queries": skipped,
        "undecodable_images": res.undecodable,
        "seconds": {**{k: round(v, 3) for k, v in res.seconds.items()}, "total": round(total, 3)},
        "config": cfg.to_dict(),
    }
    (out / "run.json").write_text(json.dumps(info, indent=2) + "\n")
    plot_cmc(res.results, out / "cmc.png", title=f"CMC - {ds.name} ({Path(spec).name})")
    pictures = []
    if e.ranked_queries > 0:
        picks = pick_queries(res.query, res.gallery, e.ranked_queries)
        for name, dm in res.distmats.items():
            p = out / f"ranked_{name.replace('+', '_')}.png"
            plot_ranked_lists(dm, res.query, res.gallery, p, picks, topk=e.topk)
            pictures.append(p.name)

    print(f"{ds.summary()}")
    print(
        f"model {model.model_version} ({spec}) on {device} ({res.runtime}): "
        f"{len(res.query)} queries x "
        f"{len(res.gallery)} gallery images, {total:.1f} s"
    )
    if res.undecodable:
        print(f"undecodable images left out: {len(res.undecodable)} (first: {res.undecodable[0]})")
    else:
        print("undecodable images left out: 0")
    print(format_table(metrics, skipped))
    print(
        f"wrote {out / 'metrics.json'}, run.json, cmc.png"
        + (", " + ", ".join(pictures) if pictures else "")
    )
    return 0
