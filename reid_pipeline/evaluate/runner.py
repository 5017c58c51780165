"""Evaluate one model on query/gallery images in every matching mode, optionally re-ranked.

The embeddings are computed once (the serving ``Embedder``, so the model evaluated is the
model deployed) and every mode is scored from them, which is what makes the seed paper's
comparison fair: same network, same images, only the matching function differs.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from reid_pipeline.datasets.market import read_images
from reid_pipeline.errors import InputError
from reid_pipeline.evaluate.distances import (
    check_modes,
    distance,
    pairs_function,
    rows_function,
)
from reid_pipeline.evaluate.rank import RankResult, evaluate_rank_full
from reid_pipeline.types import ImageRecord
from reid_pipeline.utils import progress

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    """Everything one evaluation produced (metrics.json holds ``metrics()``)."""

    results: dict[str, RankResult]  # "<mode>" and "<mode>+rerank"
    query: list[ImageRecord]  # the images actually evaluated (undecodable ones dropped)
    gallery: list[ImageRecord]
    distmats: dict[str, np.ndarray] = field(default_factory=dict)
    undecodable: list[str] = field(default_factory=list)  # paths skipped
    seconds: dict[str, float] = field(default_factory=dict)
    runtime: str = "torch"  # what embedded the images: torch or onnxruntime (model.runtime)

    def metrics(self) -> dict[str, dict[str, float]]:
        return {k: r.summary() for k, r in self.results.items()}


def embed_records(
    embedder: Any, records: list[ImageRecord], desc: str
) -> tuple[torch.Tensor, list[ImageRecord], list[str]]:
    """Embed dataset images in batches; undecodable files are skipped and returned."""
    feats, kept, bad = [], [], []
    bs = max(1, int(embedder.batch))
    steps = range(0, len(records), bs)
    for s in progress(steps, desc=desc, total=len(steps), unit="batch"):
        chunk = records[s : s + bs]
        with _quiet_reader():
            images, failed = read_images([r.path for r in chunk])
        failed_set = set(failed)
        bad += [chunk[i].path for i in failed]
        kept += [r for i, r in enumerate(chunk) if i not in failed_set]
        if images:
            feats.append(embedder.embed_crops(images))
    if bad:
        log.warning(
            "%s: %d of %d images could not be decoded and were left out (first: %s)",
            desc,
            len(bad),
            len(records),
            bad[0],
        )
    if not feats:
        raise InputError(f"{desc}: none of the {len(records)} images could be decoded")
    return torch.cat(feats), kept, bad


class _quiet_reader:
    """Silence read_images' per-batch warning; embed_records warns once with the total."""

    def __enter__(self) -> None:
        self.logger = logging.getLogger("reid_pipeline.datasets.market")
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


def evaluate_features(
    model: Any,
    qf: torch.Tensor,
    gf: torch.Tensor,
    query: list[ImageRecord],
    gallery: list[ImageRecord],
    modes: list[str],
    rerank: bool = False,
    max_rank: int = 50,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    keep_distmats: bool = False,
) -> EvalResult:
    """Rank the gallery for every query in every mode (and re-ranked, if asked)."""
    from reid_pipeline.evaluate.rerank import re_ranking_rows

    modes = check_modes(modes)
    if len(qf) != len(query) or len(gf) != len(gallery):
        raise ValueError(
            f"{len(qf)} query features for {len(query)} images, {len(gf)} gallery "
            f"features for {len(gallery)} images"
        )
    if not query or not gallery:
        raise InputError("evaluation needs at least one query and one gallery image")
    qp = np.array([r.pid for r in query])
    gp = np.array([r.pid for r in gallery])
    qc = np.array([r.camid for r in query])
    gc = np.array([r.camid for r in gallery])
    out = EvalResult({}, list(query), list(gallery))
    for mode in modes:
        t = time.perf_counter()
        with torch.no_grad():
            d = distance(mode, model, qf, gf)
        if not bool(torch.isfinite(d).all()):
            raise InputError(
                f"mode {mode}: the model produced non-finite distances (NaN/inf embeddings?)"
            )
        res = evaluate_rank_full(d, qp, gp, qc, gc, max_rank)
        dn = d.cpu().numpy()
        out.results[mode] = res
        out.seconds[mode] = time.perf_counter() - t
        if keep_distmats:
            out.distmats[mode] = dn
        if rerank:
            t = time.perf_counter()
            feats = torch.cat([qf, gf])
            rr = re_ranking_rows(
                rows_function(mode, model, feats),
                len(qf),
                len(feats),
                k1,
                k2,
                lambda_value,
                pairs_fn=pairs_function(mode, model, feats),
            )
            key = f"{mode}+rerank"
            out.results[key] = evaluate_rank_full(rr, qp, gp, qc, gc, max_rank)
            out.seconds[key] = time.perf_counter() - t
            if keep_distmats:
                out.distmats[key] = rr
    return out


def run_evaluation(
    model: Any,
    query: list[ImageRecord],
    gallery: list[ImageRecord],
    modes: list[str],
    device: Any,
    batch: int = 256,
    rerank: bool = False,
    half: bool = True,
    height: int | None = None,
    width: int | None = None,
    max_rank: int = 50,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    keep_distmats: bool = False,
    model_cfg: Any = None,
) -> EvalResult:
    """Embed query and gallery images with the serving Embedder, then evaluate every mode.

    ``model_cfg`` (the run's ``model`` section) picks the runtime as serving does
    (``model.runtime``: onnxruntime on a CPU for auto); None: the torch ``Embedder``."""
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.onnx import make_embedder

    modes = check_modes(modes)
    if not query:
        raise InputError("the query set is empty")
    if not gallery:
        raise InputError("the gallery is empty")
    embedder = (
        Embedder(model, device, batch=batch, half=half, height=height, width=width)
        if model_cfg is None
        else make_embedder(
            model_cfg, model, device, batch=batch, half=half, height=height, width=width
        )
    )
    t = time.perf_counter()
    qf, q_kept, q_bad = embed_records(embedder, list(query), "embed query")
    gf, g_kept, g_bad = embed_records(embedder, list(gallery), "embed gallery")
    embed_s = time.perf_counter() - t
    res = evaluate_features(
        model, qf, gf, q_kept, g_kept, modes, rerank, max_rank, k1, k2, lambda_value, keep_distmats
    )
    res.undecodable = q_bad + g_bad
    res.seconds["embed"] = embed_s
    res.runtime = str(getattr(embedder, "runtime", "torch"))
    return res


def evaluate_model(
    model: Any,
    query: list[ImageRecord],
    gallery: list[ImageRecord],
    modes: list[str],
    device: Any,
    batch: int = 256,
    rerank: bool = False,
) -> dict[str, dict[str, float]]:
    """``{"<mode>": {"rank1", "rank5", "rank10", "mAP", "mINP"}}`` (fractions), plus
    ``"<mode>+rerank"`` entries when ``rerank``; see :func:`run_evaluation` for the rest."""
    return run_evaluation(model, query, gallery, modes, device, batch, rerank).metrics()
