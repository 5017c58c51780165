"""Reproduce ``reid_pipeline/weights/demo.pt``: the small model the offline demo uses.

Trained with the project's own trainer (``reid_pipeline.train``) on crops of *generated*
pedestrians (``scene.make_crops_dataset``, seeds >= 1000; the demo scene uses seed 7, so its
people are never in training), OSNet x0.25 at 64x32 from random init (no download), on the
CPU in about 20 minutes (one thread), then exported fp16 (~0.7 MB).

    uv run python -m reid_pipeline.demo.weights            # writes reid_pipeline/weights/demo.pt
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
from pathlib import Path

from reid_pipeline.config import Config, load_config

log = logging.getLogger(__name__)

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DEMO_CHECKPOINT = WEIGHTS / "demo.pt"


def demo_model_config() -> dict[str, object]:
    """The model section the demo weights are built with (also used by ``configs/demo.yaml``)."""
    # a linear adapter: with the ReLU after its BN, training from random init on this small
    # input left the adapter dead (every feature 0, CE stuck at ln(classes))
    return {
        "backbone": "osnet_x0_25",
        "embed_dim": 128,
        "activation": "identity",
        "height": 64,
        "width": 32,
    }


def train_demo_weights(
    out: Path = DEMO_CHECKPOINT,
    people: int = 600,
    per_camera: int = 12,
    epochs: int = 40,
    seed: int = 1000,
    work: Path | None = None,
    time_limit_s: float = 1500.0,
    extra: dict[str, object] | None = None,
) -> dict[str, object]:
    """Generate the training crops, train, export fp16 to ``out``, write the model card."""
    from reid_pipeline.datasets.scene import make_crops_dataset
    from reid_pipeline.train.loop import Trainer

    tmp = Path(work) if work else Path(tempfile.mkdtemp(prefix="reid-demo-train-"))
    data = make_crops_dataset(tmp / "data", people=people, per_camera=per_camera, seed=seed)
    overrides: dict[str, object] = {f"model.{k}": v for k, v in demo_model_config().items()}
    overrides.update(
        {
            "device": "cpu",
            "train.data": str(data),
            "train.epochs": epochs,
            "train.p": 16,
            "train.k": 4,
            "train.lr": 2e-3,
            "train.warmup_epochs": 1,
            "train.eval_every": 5,
            "train.workers": 2,
            "train.val_ids": 10,
            "train.seed": 0,
            "train.amp": "off",
            "train.channels_last": False,
            "train.out": str(tmp / "run"),
            "train.pad": 2,
            "train.time_limit_s": time_limit_s,
        }
    )
    overrides.update(extra or {})
    cfg: Config = load_config(None, overrides)
    import torch

    # one thread: on a small, shared CPU, OpenMP threads spinning against each other made
    # training ~10x slower than a single thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = Trainer(cfg, "cpu").fit()
    finally:
        torch.set_num_threads(threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp / "run" / "model_fp16.pt", out)
    card = {
        "file": out.name,
        "what": "OSNet x0.25 + 128-d adapter + dichotomy classifier, fp16, 64x32 input",
        "epochs": epochs,
        "trained_on": f"{people} generated pedestrians (reid_pipeline.datasets.scene.make_crops_dataset, "
        f"seed {seed}), 2 generated cameras x {per_camera} crops each; the demo "
        "scene's people (seed 7) are not among them. No real images.",
        "reproduce": "uv run python -m reid_pipeline.demo.weights",
        "for": "the offline demo (`reid demo`) only; not a model for real footage",
        "result": result,
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=2, default=str))
    if not work:
        shutil.rmtree(tmp, ignore_errors=True)
    return card


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--out", default=str(DEMO_CHECKPOINT))
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--people", type=int, default=600)
    ap.add_argument("--work", default="")
    ap.add_argument("--per-camera", type=int, default=12)
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key of the training run",
    )
    a = ap.parse_args()
    logging.basicConfig(level="INFO", format="%(asctime)s %(name)s: %(message)s")
    from reid_pipeline.config import parse_set

    card = train_demo_weights(
        Path(a.out),
        people=a.people,
        per_camera=a.per_camera,
        epochs=a.epochs,
        work=Path(a.work) if a.work else None,
        extra=dict(parse_set(x) for x in a.set),
    )
    log.info("demo model written: %s", json.dumps(card["result"], indent=1, default=str))


if __name__ == "__main__":
    main()
