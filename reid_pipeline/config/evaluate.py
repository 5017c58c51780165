"""Evaluation: ReID figures of a checkpoint (``eval``), MOTChallenge scoring (``mot_eval``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from reid_pipeline.config.base import check, frame_range


@dataclass(frozen=True)
class EvalConfig:
    data: str = ""  # dataset root (any layout reid_pipeline.datasets.market.load_dataset reads)
    checkpoint: str = ""  # empty: model.checkpoint; ours or a torchreid model-zoo state_dict
    modes: list[str] = field(default_factory=lambda: ["euclidean", "cosine", "dissimilarity"])
    rerank: bool = False  # also report k-reciprocal re-ranked results ("<mode>+rerank")
    max_rank: int = 50  # length of the CMC curve
    batch: int = 256  # images per embedder call
    out: str = "runs/eval"
    k1: int = 20  # re-ranking: k-reciprocal neighbourhood (Zhong et al. 2017 defaults)
    k2: int = 6  # re-ranking: query-expansion neighbours
    lambda_value: float = 0.3  # re-ranking: weight of the original distance
    ranked_queries: int = 6  # queries drawn in the ranked-list picture (0: none)
    topk: int = 10  # gallery images shown per query in the ranked-list picture

    def validate(self, p: str) -> None:
        allowed = {"euclidean", "cosine", "dissimilarity"}
        bad = [m for m in self.modes if m not in allowed]
        check(
            not bad and bool(self.modes),
            f"{p}.modes",
            f"unknown mode(s) {bad}; choose from {sorted(allowed)}",
        )
        check(len(set(self.modes)) == len(self.modes), f"{p}.modes", "lists a mode twice")
        check(self.max_rank >= 1, f"{p}.max_rank", "must be >= 1")
        check(self.batch >= 1, f"{p}.batch", f"must be >= 1, got {self.batch}")
        check(bool(self.out), f"{p}.out", "must not be empty")
        check(self.k1 >= 1, f"{p}.k1", f"must be >= 1, got {self.k1}")
        check(self.k2 >= 1, f"{p}.k2", f"must be >= 1, got {self.k2}")
        check(
            0.0 <= self.lambda_value <= 1.0,
            f"{p}.lambda_value",
            f"must be in [0, 1], got {self.lambda_value}",
        )
        check(self.ranked_queries >= 0, f"{p}.ranked_queries", "must be >= 0")
        check(self.topk >= 1, f"{p}.topk", "must be >= 1")


@dataclass(frozen=True)
class MotEvalConfig:
    """``reid evaluate-mot``: MOTChallenge scoring of a sequence (py-motmetrics)."""

    sequence: str = ""  # MOTChallenge sequence folder (seqinfo.ini, gt/gt.txt, img1/)
    video: str = ""  # run on this video instead of the sequence's img1/ frames
    scale: float = 1.0  # video size / sequence size (0.625: a 768x576 sequence at 480x360)
    frames: str = ""  # "A:B": score gt frames A..B only (1-based, inclusive); "": all
    result: str = ""  # score this MOT-format result file instead of running the pipeline
    result_identities: str = ""  # with result: a second file scored as "by identity"
    # the run's detector: "" = detector.kind; "mot" = the sequence's det/det.txt (or
    # detector.mot_det), converted to the video's size and frames
    detector: str = ""
    iou: float = 0.5  # a prediction matches a gt box at IoU >= this
    gt_format: Literal["auto", "mot15", "mot16"] = "auto"  # auto: 9 columns are MOT16+

    def validate(self, p: str) -> None:
        check(0.0 < self.scale <= 100.0, f"{p}.scale", f"must be in (0, 100], got {self.scale}")
        check(0.0 < self.iou <= 1.0, f"{p}.iou", f"must be in (0, 1], got {self.iou}")
        frame_range(self.frames, f"{p}.frames")
        check(
            not self.result_identities or bool(self.result),
            f"{p}.result_identities",
            "needs mot_eval.result (the file scored by track)",
        )
