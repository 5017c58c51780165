"""Training (``train``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from reid_pipeline.config.base import check


@dataclass(frozen=True)
class TrainConfig:
    data: str = ""  # dataset root
    epochs: int = 60
    p: int = 16  # identities per batch
    k: int = 4  # images per identity
    lr: float = 3.5e-4
    weight_decay: float = 5e-4
    warmup_epochs: int = 5
    scheduler: Literal["cosine", "step"] = "cosine"
    lambda_ce: float = 1.0
    lambda_triplet: float = 1.0
    lambda_hinge: float = 1.0
    margin_triplet: float = 0.3
    margin_hinge: float = 1.0
    label_smoothing: float = 0.1
    w_constraint: Literal["projection", "penalty"] = "projection"
    w_max_norm: float = 1.0  # L2 bound on the classifier weights
    w_penalty: float = 1e-2
    freeze_backbone: bool = False
    # train only the pair classifier (w, b; its calibration is fitted after as always) on the
    # embedding of `init`, one of our checkpoints: its backbone AND adapter are loaded and
    # kept as they are. For an embedding that changed without its classifier (a weight-space
    # ensemble, reid_pipeline/bench/wise_ft.py). Only the hinge reaches w and b; the other
    # losses train nothing then (set lambda_ce/triplet/rsk to 0 to skip their cost)
    freeze_embedding: bool = False
    amp: Literal["bf16", "fp16", "off"] = "bf16"
    channels_last: bool = True
    eval_every: int = 10
    workers: int = 4  # threads decoding JPEGs while the train split is preloaded
    seed: int = 0
    out: str = "runs/train"
    resume: str = ""
    init: str = ""  # start from this checkpoint (ours or torchreid zoo), e.g. for freeze_backbone
    val_ids: int = 30  # train identities held out for validation, calibration, best-model pick
    pad: int = 10  # px of zero padding before the random crop
    flip_prob: float = 0.5
    erase_prob: float = 0.5  # random erasing
    # far cameras: this share of the images shrunk to a random height in lowres_heights px
    # and enlarged back (train/augment.py low_resolution); PETS09's people are 40-65 px
    lowres_prob: float = 0.0
    lowres_heights: list[int] = field(default_factory=lambda: [40, 96])
    hinge_balance: float = 0.5  # weight of the similar-pair term (0.5: classes equal)
    min_lr_factor: float = 0.01  # cosine ends at lr * this
    step_milestones: list[float] = field(default_factory=lambda: [0.5, 0.75])  # epoch fractions
    step_gamma: float = 0.1
    log_every: int = 20  # steps between log lines / TensorBoard points
    bias_lr_mult: float = 10.0  # lr multiplier of the pair bias b (it tracks the L1 scale)
    time_limit_s: float = 0.0  # stop after the epoch that passes this (0: none)
    # Recall@k surrogate (Patel et al. 2022), alone or added to the seed losses
    lambda_rsk: float = 0.0
    rsk_similarity: Literal["cosine", "dissimilarity"] = "cosine"
    rsk_ks: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    rsk_tau2: float = 0.01  # rank sigmoid temperature (tau1 = k)
    simix: int = 0  # SiMix virtual samples per batch (0: off)
    chunk: int = 0  # two-pass large batches: images per graph chunk (0: one pass)

    def validate(self, p: str) -> None:
        check(self.epochs >= 1, f"{p}.epochs", "must be >= 1")
        check(
            not self.freeze_embedding or bool(self.init),
            f"{p}.freeze_embedding",
            "needs train.init: the checkpoint whose embedding is kept",
        )
        check(
            not self.freeze_embedding or self.lambda_hinge > 0,
            f"{p}.freeze_embedding",
            "trains w and b through the hinge alone: train.lambda_hinge must be > 0",
        )
        check(self.p >= 2, f"{p}.p", f"needs at least 2 identities per batch, got {self.p}")
        check(self.k >= 2, f"{p}.k", f"needs at least 2 images per identity, got {self.k}")
        check(self.lr > 0, f"{p}.lr", "must be > 0")
        check(self.w_max_norm > 0, f"{p}.w_max_norm", "must be > 0")
        check(0 <= self.label_smoothing < 1, f"{p}.label_smoothing", "must be in [0, 1)")
        check(self.lambda_rsk >= 0, f"{p}.lambda_rsk", "must be >= 0")
        check(self.rsk_tau2 > 0, f"{p}.rsk_tau2", "must be > 0")
        check(
            bool(self.rsk_ks) and all(k >= 1 for k in self.rsk_ks),
            f"{p}.rsk_ks",
            f"must be a non-empty list of k >= 1, got {self.rsk_ks}",
        )
        check(self.simix >= 0, f"{p}.simix", "must be >= 0")
        check(self.chunk >= 0, f"{p}.chunk", "must be >= 0 (0: one pass)")
        check(
            self.lambda_ce + self.lambda_triplet + self.lambda_hinge + self.lambda_rsk > 0,
            f"{p}.lambda_rsk",
            "all loss weights are zero: nothing to train",
        )
        for name in ("lambda_ce", "lambda_triplet", "lambda_hinge"):
            check(getattr(self, name) >= 0, f"{p}.{name}", "must be >= 0")
        check(self.eval_every >= 0, f"{p}.eval_every", "must be >= 0")
        check(self.warmup_epochs >= 0, f"{p}.warmup_epochs", "must be >= 0")
        check(self.weight_decay >= 0, f"{p}.weight_decay", "must be >= 0")
        check(
            self.margin_triplet >= 0 and self.margin_hinge >= 0,
            f"{p}.margin_hinge",
            "margins must be >= 0",
        )
        check(self.w_penalty >= 0, f"{p}.w_penalty", "must be >= 0")
        check(self.workers >= 0, f"{p}.workers", "must be >= 0")
        check(self.val_ids >= 0, f"{p}.val_ids", "must be >= 0 (0: validate on query/gallery)")
        check(self.pad >= 0, f"{p}.pad", "must be >= 0")
        check(
            len(self.lowres_heights) == 2 and 8 <= self.lowres_heights[0] <= self.lowres_heights[1],
            f"{p}.lowres_heights",
            f"must be [LOW, HIGH] px with 8 <= LOW <= HIGH, got {self.lowres_heights}",
        )
        for name in ("flip_prob", "erase_prob", "lowres_prob", "hinge_balance"):
            check(0 <= getattr(self, name) <= 1, f"{p}.{name}", "must be in [0, 1]")
        check(0 <= self.min_lr_factor <= 1, f"{p}.min_lr_factor", "must be in [0, 1]")
        check(
            all(0 < m < 1 for m in self.step_milestones),
            f"{p}.step_milestones",
            f"are fractions of the run in (0, 1), got {self.step_milestones}",
        )
        check(0 < self.step_gamma <= 1, f"{p}.step_gamma", "must be in (0, 1]")
        check(self.log_every >= 1, f"{p}.log_every", "must be >= 1")
        check(self.bias_lr_mult > 0, f"{p}.bias_lr_mult", "must be > 0")
        check(self.time_limit_s >= 0, f"{p}.time_limit_s", "must be >= 0 (0: no limit)")
