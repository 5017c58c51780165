"""The training loop: preload -> P x K batches -> GPU augmentation -> CE + triplet + hinge.

Speed comes from keeping the input pipeline off the CPU: the whole train split is decoded
once, resized with the serving code (``embed.crops_to_batch``) and kept as one uint8
tensor on the device (Market-1501: ~5.5k images, ~0.5 GB at 256x128); a batch is an index
into it. Validation runs on identities held out of the train split (``train.val_ids``),
so the best checkpoint and the Platt calibration are chosen without touching the test
split; the test split is evaluated once, at the end, for the report.
"""

from __future__ import annotations

import copy
import csv
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reid_pipeline.config import Config
from reid_pipeline.embed.embedder import Embedder, crops_to_batch
from reid_pipeline.embed.model import (
    ReIDModel,
    export_fp16,
    is_checkpoint,
    load_model,
    read_checkpoint,
    save_checkpoint,
)
from reid_pipeline.errors import CheckpointError, ConfigError, InputError
from reid_pipeline.train.augment import augment_batch
from reid_pipeline.train.losses import (
    batch_hard_triplet,
    batch_pair_scores,
    identity_ce,
    pair_hinge,
    w_norm_penalty,
)
from reid_pipeline.train.recall import rsk_batch_loss, two_pass_backward
from reid_pipeline.train.sampler import PKSampler
from reid_pipeline.train.validate import MODES, evaluate_embeddings, pair_labels
from reid_pipeline.types import ImageRecord
from reid_pipeline.utils import progress, resolve_device

log = logging.getLogger(__name__)


@dataclass
class Split:
    """Images of one split, decoded and resized, as a uint8 tensor on the device."""

    images: torch.Tensor  # (N, 3, H, W) uint8 RGB
    pids: list[int]
    cams: list[int]


def split_validation(
    train: list[ImageRecord], val_ids: int, seed: int
) -> tuple[list[ImageRecord], list[ImageRecord], list[ImageRecord]]:
    """Hold ``val_ids`` identities out of ``train``; their first image per camera is a query,
    the rest is gallery (the Market protocol in miniature). Returns (train, query, gallery)."""
    pids = sorted({r.pid for r in train})
    if val_ids <= 0:
        return train, [], []
    if val_ids >= len(pids) - 1:
        raise InputError(
            f"train.val_ids={val_ids} leaves too few of the {len(pids)} train "
            "identities for training"
        )
    rng = np.random.default_rng(seed)
    held = {int(p) for p in rng.choice(pids, val_ids, replace=False)}
    rest = [r for r in train if r.pid not in held]
    query, gallery, seen = [], [], set()
    for r in sorted((r for r in train if r.pid in held), key=lambda r: r.path):
        if (r.pid, r.camid) in seen:
            gallery.append(r)
        else:
            seen.add((r.pid, r.camid))
            query.append(r)
    return rest, query, gallery


def preload(
    records: list[ImageRecord],
    height: int,
    width: int,
    device: torch.device,
    workers: int = 4,
    desc: str = "preload",
) -> tuple[Split, list[ImageRecord]]:
    """Decode (threads), resize on the device, stack: one uint8 tensor for the whole split.

    Unreadable images are skipped with one warning naming the count and the first file.
    """
    from reid_pipeline.datasets.market import read_image

    def read(r: ImageRecord) -> np.ndarray | None:
        try:
            return read_image(r.path)
        except InputError:
            return None

    chunk = 512
    parts: list[torch.Tensor] = []
    kept: list[ImageRecord] = []
    bad: list[str] = []
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for i in progress(
            range(0, len(records), chunk),
            desc=desc,
            total=math.ceil(len(records) / chunk),
            unit="chunk",
        ):
            recs = records[i : i + chunk]
            imgs = list(pool.map(read, recs))
            ok = [(r, im) for r, im in zip(recs, imgs) if im is not None]
            bad += [r.path for r, im in zip(recs, imgs) if im is None]
            if ok:
                parts.append(crops_to_batch([im for _, im in ok], height, width, device))
                kept += [r for r, _ in ok]
    if bad:
        log.warning(
            "%d of %d images could not be read and were skipped (first: %s)",
            len(bad),
            len(records),
            bad[0],
        )
    if not kept:
        raise InputError(f"none of the {len(records)} images of split {desc!r} could be read")
    images = torch.cat(parts)
    return Split(images, [r.pid for r in kept], [r.camid for r in kept]), kept


def lr_lambda(cfg: Config, steps_per_epoch: int) -> Callable[[int], float]:
    """Linear warm-up from lr/10, then cosine to ``min_lr_factor`` or steps at milestones."""
    t = cfg.train
    total = max(1, t.epochs * steps_per_epoch)
    warm = t.warmup_epochs * steps_per_epoch

    def f(step: int) -> float:
        if warm and step < warm:
            return 0.1 + 0.9 * step / warm
        if t.scheduler == "cosine":
            prog = min(1.0, (step - warm) / max(1, total - warm))
            return t.min_lr_factor + (1 - t.min_lr_factor) * 0.5 * (1 + math.cos(math.pi * prog))
        return float(t.step_gamma ** sum(step >= m * total for m in t.step_milestones))

    return f


class Trainer:
    """Trains a ``ReIDModel`` as ``cfg.train`` says; ``fit()`` returns the final metrics."""

    def __init__(self, cfg: Config, device: torch.device | str | None = None) -> None:
        self.cfg = cfg
        self.t = cfg.train
        self.device = torch.device(device) if device is not None else resolve_device(cfg.device)
        self.out = Path(self.t.out)
        self.cuda = self.device.type == "cuda"
        self.amp_dtype = None
        if self.cuda and self.t.amp != "off":
            self.amp_dtype = torch.bfloat16 if self.t.amp == "bf16" else torch.float16

    # -------------------------------------------------------------- setup
    def _data(self) -> None:
        from reid_pipeline.datasets.market import load_dataset, relabel

        if not self.t.data:
            raise InputError("no training data: pass --data ROOT (config key train.data)")
        ds = load_dataset(self.t.data)
        ds.require_train()
        self.dataset = ds
        train, vq, vg = split_validation(ds.train, self.t.val_ids, self.t.seed)
        train, self.label_map = relabel(train)
        h, w = self.cfg.model.height, self.cfg.model.width
        self.train_split, _ = preload(train, h, w, self.device, self.t.workers, "train")
        self.labels = torch.as_tensor(self.train_split.pids, device=self.device)
        self.num_classes = len(self.label_map)
        self.val_q: Split | None
        self.val_g: Split | None
        if vq and vg:
            self.val_q, _ = preload(vq, h, w, self.device, self.t.workers, "val-query")
            self.val_g, _ = preload(vg, h, w, self.device, self.t.workers, "val-gallery")
            self.val_name = f"held-out train ids ({self.t.val_ids})"
        elif ds.query and ds.gallery:
            log.warning(
                "train.val_ids=0: validating and calibrating on the TEST split "
                "(query/gallery); figures chosen this way are optimistic"
            )
            self.val_q, _ = preload(ds.query, h, w, self.device, self.t.workers, "query")
            self.val_g, _ = preload(ds.gallery, h, w, self.device, self.t.workers, "gallery")
            self.val_name = "test split"
        else:
            self.val_q = self.val_g = None
            self.val_name = "none"
        log.info(
            "training on %d images of %d identities; validation: %s",
            len(self.train_split.pids),
            self.num_classes,
            self.val_name,
        )

    def _model(self) -> ReIDModel:
        m = self.cfg.model
        torch.manual_seed(self.t.seed)
        model = ReIDModel(
            m.backbone,
            num_classes=self.num_classes,
            embed_dim=m.embed_dim,
            activation=m.activation,
            height=m.height,
            width=m.width,
        )
        if m.pretrained and not self.t.init:
            from reid_pipeline.embed.pretrained import init_backbone, resolve_pretrained

            init_backbone(model.backbone, m.backbone, resolve_pretrained(m.pretrained, m.backbone))
            log.info("backbone initialised from %s weights", m.pretrained)
        if self.t.init:
            if is_checkpoint(self.t.init):
                src = load_model(self.t.init, m, "cpu")
                model.backbone.load_state_dict(src.backbone.state_dict())
                if self.t.freeze_embedding:
                    model.adapter.load_state_dict(src.adapter.state_dict())
                    with torch.no_grad():  # start from its classifier, not a uniform w
                        model.w.copy_(src.w.detach().float())
                        model.b.copy_(src.b.detach().float())
                log.info(
                    "%s initialised from %s",
                    "embedding (backbone, adapter) and classifier"
                    if self.t.freeze_embedding
                    else "backbone",
                    self.t.init,
                )
            elif self.t.freeze_embedding:
                raise ConfigError(
                    f"train.freeze_embedding: train.init {self.t.init!r} is not one of our "
                    "checkpoints (a zoo or ImageNet file has no adapter to keep)"
                )
            else:  # a zoo or ImageNet weights file: matched by name, or by position
                from reid_pipeline.embed.pretrained import init_backbone

                init_backbone(model.backbone, m.backbone, self.t.init)
        if self.t.freeze_backbone or self.t.freeze_embedding:
            for prm in model.backbone.parameters():
                prm.requires_grad_(False)
        if self.t.freeze_embedding:
            for prm in [*model.adapter.parameters(), *model.head.parameters()]:
                prm.requires_grad_(False)
        model.to(self.device)
        if self.cuda and self.t.channels_last:
            model.to(memory_format=torch.channels_last)
        return model

    def _optimizer(self, model: ReIDModel) -> torch.optim.Optimizer:
        decay: list[torch.nn.Parameter] = []
        no_decay: list[torch.nn.Parameter] = []
        for name, prm in model.named_parameters():
            if not prm.requires_grad or name in ("w", "b"):
                continue
            (decay if prm.ndim >= 2 else no_decay).append(prm)
        groups = [
            {"params": decay, "weight_decay": self.t.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
            {"params": [model.w], "weight_decay": 0.0},
            {"params": [model.b], "weight_decay": 0.0, "lr": self.t.lr * self.t.bias_lr_mult},
        ]
        for g in groups:
            g.setdefault("lr", self.t.lr)
        return torch.optim.Adam(groups, lr=self.t.lr)

    # -------------------------------------------------------------- one step
    def _step(
        self,
        model: ReIDModel,
        x_u8: torch.Tensor,
        y: torch.Tensor,
        opt: torch.optim.Optimizer,
        sched: Any,
        scaler: Any,
        init_bias: bool,
    ) -> dict[str, float]:
        t = self.t
        x = augment_batch(
            x_u8,
            t.pad,
            t.flip_prob,
            t.erase_prob,
            t.lowres_prob,
            (int(t.lowres_heights[0]), int(t.lowres_heights[1])),
        )
        if self.cuda and t.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)

        def embed(xb: torch.Tensor) -> torch.Tensor:
            with torch.autocast(
                self.device.type,
                dtype=self.amp_dtype or torch.float32,
                enabled=self.amp_dtype is not None,
            ):
                return model.features(xb)

        if init_bias:  # start b between the similar and dissimilar L1 distances of a batch
            with torch.no_grad():
                s = batch_pair_scores(embed(x).float(), model.w, torch.zeros(()))
                same = y[:, None] == y[None, :]
                off = ~torch.eye(len(y), dtype=torch.bool, device=y.device)
                model.b.fill_(-0.5 * float(s[same & off].mean() + s[~same].mean()))
        terms: dict[str, torch.Tensor] = {}
        acc_box: list[torch.Tensor] = []

        def loss_fn(e: torch.Tensor) -> torch.Tensor:
            """Every term is a function of the batch embeddings, so a batch too big for one
            graph can be trained in two passes (train.chunk) with the same gradient."""
            e = e.float()
            loss = e.sum() * 0.0
            if t.lambda_ce > 0:
                with torch.autocast(
                    self.device.type,
                    dtype=self.amp_dtype or torch.float32,
                    enabled=self.amp_dtype is not None,
                ):
                    logits = model.head(e)
                terms["ce"] = identity_ce(logits, y, t.label_smoothing)
                loss = loss + t.lambda_ce * terms["ce"]
            if t.lambda_triplet > 0:
                terms["triplet"] = batch_hard_triplet(e, y, t.margin_triplet)
                loss = loss + t.lambda_triplet * terms["triplet"]
            hinge, acc = pair_hinge(e, y, model.w, model.b, t.margin_hinge, t.hinge_balance)
            terms["hinge"] = hinge
            acc_box.append(acc)
            if t.lambda_hinge > 0:
                loss = loss + t.lambda_hinge * hinge
            if t.lambda_rsk > 0:
                terms["rsk"] = rsk_batch_loss(
                    e,
                    y,
                    t.rsk_similarity,
                    model.w,
                    model.b,
                    ks=t.rsk_ks,
                    tau2=t.rsk_tau2,
                    n_mix=t.simix,
                )
                loss = loss + t.lambda_rsk * terms["rsk"]
            if t.w_constraint == "penalty":
                terms["w_penalty"] = w_norm_penalty(model.w, t.w_max_norm)
                loss = loss + t.w_penalty * terms["w_penalty"]
            return loss

        opt.zero_grad(set_to_none=True)
        if t.chunk > 0 and t.chunk < len(x):
            scale = scaler.scale if scaler is not None else (lambda v: v)
            loss, _ = two_pass_backward(embed, x, lambda e: scale(loss_fn(e)), t.chunk)
            if scaler is not None:
                loss = loss / scaler.get_scale()
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
        else:
            loss = loss_fn(embed(x))
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
        acc = acc_box[-1]
        sched.step()
        self.constrain(model)
        out = {k: float(v.detach()) for k, v in terms.items()}
        out["loss"] = float(loss.detach())
        out["pair_acc"] = float(acc)
        return out

    def constrain(self, model: ReIDModel) -> None:
        """Enforce the w constraint after a step: projection onto the ball, or (penalty mode)
        only non-negativity - the L2 bound then comes from the penalty term in the loss."""
        with torch.no_grad():
            if self.t.w_constraint == "projection":
                model.constrain_w(self.t.w_max_norm)
            else:
                model.w.clamp_(min=0.0)

    # -------------------------------------------------------------- validation
    def validate(self, model: ReIDModel) -> dict[str, Any]:
        if self.val_q is None or self.val_g is None:
            return {}
        emb = Embedder(model, self.device, batch=256, half=self.amp_dtype is not None)
        q = emb.embed_batch_u8(self.val_q.images)
        g = emb.embed_batch_u8(self.val_g.images)
        res: dict[str, Any] = evaluate_embeddings(
            model, q, g, self.val_q.pids, self.val_g.pids, self.val_q.cams, self.val_g.cams, MODES
        )
        s = model.pair_scores(q, g)
        lab = pair_labels(self.val_q.pids, self.val_g.pids, s.device)
        pos, neg = s[lab > 0], s[lab == 0]
        res["pair_balanced_acc"] = (
            100 * 0.5 * float((pos > 0).float().mean() + (neg <= 0).float().mean())
        )
        return res

    def calibrate(self, model: ReIDModel) -> dict[str, float]:
        """Platt scaling on all validation query x gallery pairs (balanced classes)."""
        if self.val_q is None or self.val_g is None:
            log.warning("no validation split: the pair probability stays uncalibrated")
            return {}
        emb = Embedder(model, self.device, batch=256, half=self.amp_dtype is not None)
        q = emb.embed_batch_u8(self.val_q.images)
        g = emb.embed_batch_u8(self.val_g.images)
        s = model.pair_scores(q, g)
        lab = pair_labels(self.val_q.pids, self.val_g.pids, s.device)
        a, c = model.calibrate(s, lab)
        p = model.score_to_probability(s)
        acc = 0.5 * float((p[lab > 0] > 0.5).float().mean() + (p[lab == 0] <= 0.5).float().mean())
        return {"a": a, "c": c, "balanced_acc_at_0.5": 100 * acc}

    def evaluate_test(self, model: ReIDModel) -> dict[str, Any]:
        ds = self.dataset
        if not (ds.query and ds.gallery):
            return {}
        h, w = self.cfg.model.height, self.cfg.model.width
        q, _ = preload(ds.query, h, w, self.device, self.t.workers, "test-query")
        g, _ = preload(ds.gallery, h, w, self.device, self.t.workers, "test-gallery")
        emb = Embedder(model, self.device, batch=256, half=self.amp_dtype is not None)
        eq, eg = emb.embed_batch_u8(q.images), emb.embed_batch_u8(g.images)
        return evaluate_embeddings(model, eq, eg, q.pids, g.pids, q.cams, g.cams, MODES)

    # -------------------------------------------------------------- main
    def fit(self) -> dict[str, Any]:
        t = self.t
        self.out.mkdir(parents=True, exist_ok=True)
        self._data()
        model = self._model()
        opt = self._optimizer(model)
        sampler = PKSampler(self.train_split.pids, t.p, t.k, t.seed)
        steps = len(sampler.batches(0))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(self.cfg, steps))
        scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        start, best, best_state, history = 0, -1.0, None, []
        if t.resume:
            ck = read_checkpoint(t.resume)
            try:
                model.load_state_dict(ck["state_dict"])
                opt.load_state_dict(ck["optimizer"])
                sched.load_state_dict(ck["scheduler"])
            except (KeyError, RuntimeError, ValueError, TypeError) as e:
                raise CheckpointError(
                    f"checkpoint {t.resume!r} cannot resume this run "
                    f"(different model or data?): {str(e)[:200]}"
                ) from None
            start = int(ck["epoch"]) + 1
            best = float(ck["extra"].get("best", -1.0))
            history = list(ck["extra"].get("history", []))
            if (self.out / "best.pt").is_file():
                best_state = read_checkpoint(self.out / "best.pt")["state_dict"]
            log.info("resumed from %s at epoch %d", t.resume, start)
        writer = self._writer()
        csv_path = self.out / "metrics.csv"
        t0 = time.time()
        for epoch in range(start, t.epochs):
            torch.manual_seed(t.seed * 100_003 + epoch)
            model.train()
            if t.freeze_backbone or t.freeze_embedding:
                model.backbone.eval()  # frozen features: keep BN statistics too
            if t.freeze_embedding:
                model.adapter.eval()
            sums: dict[str, float] = defaultdict(float)
            n_img, te = 0, time.time()
            batches = sampler.batches(epoch)
            for i, idx in enumerate(
                progress(batches, desc=f"epoch {epoch + 1}/{t.epochs}", unit="step")
            ):
                ix = torch.as_tensor(idx, device=self.device)
                m = self._step(
                    model,
                    self.train_split.images[ix],
                    self.labels[ix],
                    opt,
                    sched,
                    scaler,
                    init_bias=(epoch == 0 and i == 0 and t.lambda_hinge > 0),
                )
                for k, v in m.items():
                    sums[k] += v
                n_img += len(idx)
                gstep = epoch * steps + i
                if gstep % t.log_every == 0 and writer is not None:
                    for k, v in m.items():
                        writer.add_scalar(f"train/{k}", v, gstep)
                    writer.add_scalar("train/lr", opt.param_groups[0]["lr"], gstep)
            if self.cuda:
                torch.cuda.synchronize()
            dt = time.time() - te
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "lr": opt.param_groups[0]["lr"],
                **{k: v / max(1, len(batches)) for k, v in sums.items()},
                "w_norm": float(model.w.detach().norm()),
                "b": float(model.b.detach()),
                "img_per_s": n_img / max(dt, 1e-9),
                "epoch_s": dt,
            }
            last = epoch == t.epochs - 1 or (t.time_limit_s and time.time() - t0 > t.time_limit_s)
            if (t.eval_every and (epoch + 1) % t.eval_every == 0) or last:
                val = self.validate(model)
                for mode in MODES:
                    for k in ("rank1", "mAP"):
                        if mode in val:
                            row[f"val_{mode}_{k}"] = val[mode][k]
                if "pair_balanced_acc" in val:
                    row["val_pair_acc"] = val["pair_balanced_acc"]
                score = val.get("dissimilarity", {}).get("mAP", -1.0) if val else float(epoch)
                if score > best:
                    best = score
                    best_state = copy.deepcopy(
                        {k: v.detach().cpu() for k, v in model.state_dict().items()}
                    )
                    row["best"] = 1
            history.append(row)
            self._log_row(csv_path, row, writer, epoch)
            save_checkpoint(
                self.out / "last.pt",
                model,
                self.cfg,
                epoch,
                opt,
                sched,
                extra={"best": best, "history": history, "label_map": self.label_map},
            )
            if row.get("best"):
                save_checkpoint(
                    self.out / "best.pt",
                    model,
                    self.cfg,
                    epoch,
                    extra={"best": best, "val": self.val_name},
                )
            if last:
                if epoch < t.epochs - 1:
                    log.warning(
                        "train.time_limit_s=%s reached after epoch %d of %d",
                        t.time_limit_s,
                        epoch + 1,
                        t.epochs,
                    )
                break
        if writer is not None:
            writer.close()
        return self._finish(model, best_state, history)

    def _finish(
        self, model: ReIDModel, best_state: dict[str, Any] | None, history: list[dict[str, Any]]
    ) -> dict[str, Any]:
        if best_state is not None:
            model.load_state_dict(best_state)
        calib = self.calibrate(model)
        best_epoch = max((r["epoch"] for r in history if r.get("best")), default=len(history))
        save_checkpoint(
            self.out / "best.pt",
            model,
            self.cfg,
            best_epoch - 1,
            extra={"val": self.val_name, "calibration": calib},
        )
        export_fp16(
            self.out / "model_fp16.pt",
            model,
            self.cfg,
            extra={"trained_on": self.dataset.summary(), "best_epoch": best_epoch},
        )
        test = self.evaluate_test(model)
        speeds = [r["img_per_s"] for r in history[1:]] or [r["img_per_s"] for r in history]
        result = {
            "model_version": model.refresh_version(),
            "best_epoch": best_epoch,
            "epochs_run": len(history),
            "validation": self.val_name,
            "val_last": {k: v for k, v in history[-1].items() if k.startswith("val_")}
            if history
            else {},
            "calibration": calib,
            "test": test,
            "train_img_per_s": float(np.median(speeds)) if speeds else 0.0,
            "w_norm": float(model.w.norm()),
            "b": float(model.b),
        }
        (self.out / "result.json").write_text(json.dumps(result, indent=2))
        for mode, m in test.items():
            log.info("test %-13s rank-1 %.1f  mAP %.1f", mode, m["rank1"], m["mAP"])
        return result

    def _writer(self) -> Any:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a declared dependency; keep training without it
            log.warning("tensorboard is not installed: metrics go to metrics.csv only")
            return None
        return SummaryWriter(str(self.out / "tb"))

    def _log_row(self, path: Path, row: dict[str, Any], writer: Any, epoch: int) -> None:
        keys = (
            [
                "epoch",
                "lr",
                "loss",
                "ce",
                "triplet",
                "hinge",
                "rsk",
                "w_penalty",
                "pair_acc",
                "w_norm",
                "b",
                "img_per_s",
                "epoch_s",
            ]
            + [f"val_{m}_{k}" for m in MODES for k in ("rank1", "mAP")]
            + ["val_pair_acc", "best"]
        )
        new = not path.is_file()
        with path.open("a", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
            if new:
                wr.writeheader()
            wr.writerow(row)
        if writer is not None:
            for k, v in row.items():
                if k.startswith("val_"):
                    writer.add_scalar(k.replace("val_", "val/", 1), v, epoch + 1)
            writer.add_scalar("train/img_per_s", row["img_per_s"], epoch + 1)
        log.info(
            "epoch %d: loss %.3f (ce %.3f tri %.3f hinge %.3f) pair-acc %.3f |w| %.3f %.0f img/s%s",
            row["epoch"],
            row.get("loss", 0),
            row.get("ce", 0),
            row.get("triplet", 0),
            row.get("hinge", 0),
            row.get("pair_acc", 0),
            row["w_norm"],
            row["img_per_s"],
            "".join(
                f" {k[4:]} {v:.1f}"
                for k, v in row.items()
                if k.startswith("val_") and k.endswith("mAP")
            ),
        )
