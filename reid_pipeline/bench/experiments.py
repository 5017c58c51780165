"""The issue-3 GPU experiment in one command (docs/benchmarks.md, "Training (issue 3)").

    python -m reid_pipeline.bench.experiments --data ROOT --out OUT --budget 420 \
        [--zoo osnet_x0_25_msmt17.pth]

1. Throughput, GPU to itself: our loop (preloaded uint8 on the GPU, device augmentation,
   bf16 autocast, channels_last) vs torchreid's ``ImageTripletEngine`` (fp32 eager, CPU
   DataLoader with PIL transforms), same architecture, batch 64 (P=16 x K=4), 256x128.
2. Training runs side by side on the one GPU, each a ``reid train`` subprocess: the main
   model (CE + triplet + hinge, projection), the same with the penalty constraint, the
   no-hinge ablation, and the frozen-backbone baseline (MSMT17 OSNet x0.25 features +
   adapter + classifier). Epochs are chosen from the measured speed to fit ``--budget``.
3. The MSMT17 zoo checkpoint evaluated as it is (peer baseline, no Market training).
Runs write under ``--work``; ``--out`` receives few files (the device tool returns at
most 8): ``summary.json``, ``runs.tar.gz`` (each run's metrics.csv, result.json, log and
TensorBoard events) and ``ship_fp16.pt``, the fp16 export of the hinge-trained run with the
best validation mAP (validation = held-out train identities, never the test split).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger("reid_pipeline.bench.experiments")


def _cfg(data: str, out: str, **kv: Any) -> Any:
    from reid_pipeline.config import load_config

    return load_config(None, {"train.data": data, "train.out": out, **kv})


def _sync(dev: str) -> None:
    if dev.startswith("cuda"):
        torch.cuda.synchronize()


def bench_ours(
    data: str, arch: str, steps: int, warm: int, dev: str = "cuda", hw: tuple[int, int] = (256, 128)
) -> dict[str, float]:
    """img/s of our training step alone on the GPU (preloaded batch indices, full loss)."""
    from reid_pipeline.train.loop import Trainer
    from reid_pipeline.train.sampler import PKSampler

    cfg = _cfg(
        data,
        "/tmp/bench_ours",
        **{"model.backbone": arch, "train.val_ids": 0, "model.height": hw[0], "model.width": hw[1]},
    )
    tr = Trainer(cfg, dev)
    tr._data()
    model = tr._model()
    opt = tr._optimizer(model)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    batches = PKSampler(tr.train_split.pids, 16, 4, 0).batches(0)
    n = 0
    for i in range(warm + steps):
        if i == warm:
            _sync(dev)
            t0 = time.time()
        idx = torch.as_tensor(batches[i % len(batches)], device=dev)
        tr._step(model, tr.train_split.images[idx], tr.labels[idx], opt, sched, None, i == 0)
        n += len(idx) if i >= warm else 0
    _sync(dev)
    dt = time.time() - t0
    mem = torch.cuda.max_memory_allocated() / 2**30 if dev.startswith("cuda") else 0.0
    return {"img_per_s": n / dt, "steps": steps, "batch": 64, "max_mem_gib": mem}


def bench_torchreid(
    data: str, arch: str, workers: int, dev: str = "cuda", hw: tuple[int, int] = (256, 128)
) -> dict[str, float]:
    """img/s of one epoch of torchreid's own ImageTripletEngine (its data loading included)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import torchreid

    root = Path("/tmp/torchreid_root")
    root.mkdir(exist_ok=True)
    link = root / "market1501"
    if not link.exists():
        link.symlink_to(Path(data).resolve())
    dm = torchreid.data.ImageDataManager(
        root=str(root),
        sources="market1501",
        height=hw[0],
        width=hw[1],
        batch_size_train=64,
        batch_size_test=256,
        workers=workers,
        train_sampler="RandomIdentitySampler",
        num_instances=4,
        transforms=["random_flip", "random_crop", "random_erase"],
        use_gpu=dev.startswith("cuda"),
    )
    model = torchreid.models.build_model(
        arch, num_classes=dm.num_train_pids, loss="triplet", pretrained=False
    ).to(dev)
    opt = torchreid.optim.build_optimizer(model, optim="adam", lr=3.5e-4)
    eng = torchreid.engine.ImageTripletEngine(
        dm, model, opt, margin=0.3, use_gpu=dev.startswith("cuda")
    )
    eng.epoch, eng.max_epoch, eng.writer = 0, 2, None
    n_img = len(dm.train_loader) * 64
    _sync(dev)
    t0 = time.time()
    eng.train(print_freq=10_000)  # epoch 1: includes worker start-up, as a user's epoch does
    _sync(dev)
    t1 = time.time()
    eng.epoch = 1
    eng.train(print_freq=10_000)  # epoch 2: steady state
    _sync(dev)
    t2 = time.time()
    return {
        "img_per_s_epoch1": n_img / (t1 - t0),
        "img_per_s": n_img / (t2 - t1),
        "images_per_epoch": n_img,
        "workers": workers,
    }


def eval_zoo(data: str, zoo: str, arch: str, dev: str = "cuda") -> dict[str, Any]:
    """The zoo checkpoint as it is: Market test split, three matching modes."""
    from reid_pipeline.config import ModelConfig
    from reid_pipeline.datasets.market import load_dataset
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.model import load_model
    from reid_pipeline.train.loop import preload
    from reid_pipeline.train.validate import MODES, evaluate_embeddings

    ds = load_dataset(data)
    model = load_model(zoo, ModelConfig(backbone=arch), dev)
    q, _ = preload(ds.query, 256, 128, torch.device(dev), 8, "query")
    g, _ = preload(ds.gallery, 256, 128, torch.device(dev), 8, "gallery")
    emb = Embedder(model, dev)
    eq, eg = emb.embed_batch_u8(q.images), emb.embed_batch_u8(g.images)
    return {
        "model_version": model.model_version,
        "test": evaluate_embeddings(model, eq, eg, q.pids, g.pids, q.cams, g.cams, MODES),
    }


def _pack(work: Path, final: Path, summary: dict[str, Any]) -> None:
    """Copy the few files that matter from ``work`` to ``final``."""
    import shutil
    import tarfile

    def val_map(name: str) -> float:
        r = summary.get(name, {})
        return float(r.get("val_last", {}).get("val_dissimilarity_mAP", -1.0)) if r else -1.0

    cands = [n for n in ("main", "penalty", "main_id") if (work / n / "model_fp16.pt").is_file()]
    if cands:
        ship = max(cands, key=val_map)
        shutil.copy(work / ship / "model_fp16.pt", final / "ship_fp16.pt")
        summary["shipped"] = ship
    (final / "summary.json").write_text(json.dumps(summary, indent=2))
    with tarfile.open(final / "runs.tar.gz", "w:gz") as tar:
        for p in sorted(work.rglob("*")):
            if p.is_file() and p.suffix != ".pt":
                tar.add(p, arcname=str(p.relative_to(work)))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", default="/tmp/reid_experiments")
    ap.add_argument("--zoo", default="")
    ap.add_argument("--arch", default="osnet_x1_0")
    ap.add_argument("--budget", type=float, default=420.0, help="seconds for the training runs")
    ap.add_argument(
        "--share",
        type=float,
        default=3.0,
        help="assumed slow-down of one run when the runs share the GPU",
    )
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--skip-bench", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--height", type=int, default=256)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--min-epochs", type=int, default=10)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--bench-steps", type=int, default=60)
    ap.add_argument("--val-ids", type=int, default=30)
    ap.add_argument(
        "--runs",
        default="main,penalty,nohinge,frozen,zoo",
        help="which runs: main, penalty, nohinge, frozen, main_id, nohinge_id, "
        "rsk_cos, rsk_dis, rsk_dis_simix, rsk_dis_big, rsk_cos_hinge, main_rsk "
        "(issue 8)",
    )
    ap.add_argument("--epochs", type=int, default=0, help="fixed epochs (0: from the speed)")
    ap.add_argument(
        "--deadline",
        type=float,
        default=0.0,
        help="seconds after start: stop runs still going and pack what exists",
    )
    a = ap.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    final = Path(a.out)
    final.mkdir(parents=True, exist_ok=True)
    out = Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    dev = a.device
    hw = (a.height, a.width)
    summary: dict[str, Any] = {"torch": torch.__version__, "device": dev, "input": hw}
    if dev.startswith("cuda"):
        summary["gpu"] = torch.cuda.get_device_name(0)
    t_start = time.time()
    if not a.skip_bench:
        summary["bench_ours"] = bench_ours(
            a.data, a.arch, a.bench_steps, max(1, a.bench_steps // 4), dev, hw
        )
        log.info("ours: %s", summary["bench_ours"])
        try:
            summary["bench_torchreid"] = bench_torchreid(a.data, a.arch, a.workers, dev, hw)
        except Exception as e:  # noqa: BLE001 - report, keep the training runs
            summary["bench_torchreid"] = {"error": repr(e)[:300]}
        log.info("torchreid: %s", summary["bench_torchreid"])
        if dev.startswith("cuda"):
            torch.cuda.empty_cache()
    speed = summary.get("bench_ours", {}).get("img_per_s", 1000.0)
    per_epoch = 4900.0  # train images left after holding out 30 identities
    epochs = a.epochs or int(
        max(a.min_epochs, min(120, a.budget * speed / a.share / per_epoch * 0.85))
    )
    summary["epochs"] = epochs
    log.info("training %d epochs per run (speed %.0f img/s alone)", epochs, speed)
    common = [
        "--data",
        a.data,
        "--epochs",
        str(epochs),
        "--eval-every",
        "5",
        "--time-limit",
        str(a.budget),
        "--device",
        dev,
        "--height",
        str(hw[0]),
        "--width",
        str(hw[1]),
        "--set",
        f"train.workers={a.workers}",
        "--val-ids",
        str(a.val_ids),
        "--set",
        f"train.warmup_epochs={min(5, max(1, epochs // 10))}",
    ]
    runs = {
        "main": ["--backbone", a.arch, "--lr", str(a.lr)],
        "penalty": ["--backbone", a.arch, "--lr", str(a.lr), "--w-constraint", "penalty"],
        "nohinge": ["--backbone", a.arch, "--lr", str(a.lr), "--lambda-hinge", "0"],
        # the same two with a linear adapter (no ReLU after its BN)
        "main_id": ["--backbone", a.arch, "--lr", str(a.lr), "--set", "model.activation=identity"],
        "nohinge_id": [
            "--backbone",
            a.arch,
            "--lr",
            str(a.lr),
            "--lambda-hinge",
            "0",
            "--set",
            "model.activation=identity",
        ],
    }
    # issue 8: the Recall@k surrogate (CE kept as regulariser; RS@k replaces triplet+hinge)
    rsk = [
        "--backbone",
        a.arch,
        "--lr",
        str(a.lr),
        "--lambda-triplet",
        "0",
        "--lambda-hinge",
        "0",
        "--set",
        "train.lambda_rsk=1",
    ]
    runs.update(
        {
            "rsk_cos": [*rsk, "--set", "train.rsk_similarity=cosine"],
            "rsk_dis": [*rsk, "--set", "train.rsk_similarity=dissimilarity"],
            "rsk_dis_simix": [
                *rsk,
                "--set",
                "train.rsk_similarity=dissimilarity",
                "--set",
                "train.simix=64",
            ],
            # RS@k on cosine next to the pair classifier's hinge (the classifier stays trained):
            # the best recipe of the CPU proxy (docs/benchmarks.md, issue 8); and all four losses
            "rsk_cos_hinge": [
                "--backbone",
                a.arch,
                "--lr",
                str(a.lr),
                "--lambda-triplet",
                "0",
                "--set",
                "train.lambda_rsk=1",
                "--set",
                "train.rsk_similarity=cosine",
            ],
            "main_rsk": [
                "--backbone",
                a.arch,
                "--lr",
                str(a.lr),
                "--set",
                "train.lambda_rsk=1",
                "--set",
                "train.rsk_similarity=cosine",
            ],
            # a 512-image batch (P=128 x K=4) in two passes of 128 images
            "rsk_dis_big": [
                *rsk,
                "--set",
                "train.rsk_similarity=dissimilarity",
                "--set",
                "train.simix=256",
                "--set",
                "train.p=128",
                "--set",
                "train.chunk=128",
            ],
        }
    )
    if a.zoo:
        runs["frozen"] = [
            "--backbone",
            "osnet_x0_25",
            "--init",
            a.zoo,
            "--freeze-backbone",
            "--lr",
            "3.5e-4",
        ]
    wanted = a.runs.split(",")
    runs = {k: v for k, v in runs.items() if k in wanted}
    env = dict(os.environ, REID_NO_PROGRESS="1", PYTHONUNBUFFERED="1")
    procs = {}
    for name, extra in runs.items():
        (out / name).mkdir(exist_ok=True)
        cmd = [
            sys.executable,
            "-m",
            "reid_pipeline.commands.train",
            *common,
            *extra,
            "--out",
            str(out / name),
        ]
        summary.setdefault("commands", {})[name] = " ".join(cmd)
        logf = (out / f"{name}.log").open("w")
        procs[name] = (subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env), logf)
    if a.zoo and "zoo" in wanted:
        try:
            summary["zoo"] = eval_zoo(a.data, a.zoo, "osnet_x0_25", dev)
        except Exception as e:  # noqa: BLE001
            summary["zoo"] = {"error": repr(e)[:300]}
        log.info("zoo: %s", summary["zoo"])
    for name, (p, logf) in procs.items():
        left = a.deadline - (time.time() - t_start) if a.deadline else None
        try:
            rc = p.wait(timeout=max(1.0, left) if left is not None else None)
        except subprocess.TimeoutExpired:
            p.terminate()
            rc = p.wait()
            summary.setdefault("stopped_at_deadline", []).append(name)
        logf.close()
        res = out / name / "result.json"
        summary[name] = json.loads(res.read_text()) if res.is_file() else {"rc": rc}
        log.info("%s rc=%d %s", name, rc, summary[name].get("test"))
    summary["wall_s"] = time.time() - t_start
    _pack(out, final, summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "commands"}, indent=1)[:6000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
