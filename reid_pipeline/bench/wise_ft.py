"""Weight-space ensembles of a fine-tuned model and the model it started from (WiSE-FT).

Wortsman et al., "Robust fine-tuning of zero-shot models" (CVPR 2022): averaging the
weights of a fine-tuned network and of its starting point, ``(1 - a) * start + a * tuned``,
often keeps most of the fine-tuning's gain on its own data while losing less of the start's
robustness elsewhere. Here: the bundled default (torchreid's MSMT17 OSNet x0.25 fine-tuned on
Market-1501 dev) against the MSMT17 file it started from, to ask whether the fine-tuning on
Market's 270 people cost the model the separation of other footage's people (the indoor
clip, issue 12). Writes one of our fp16 checkpoints per ``a``; the pair classifier's ``w``,
``b`` and calibration are the fine-tuned model's (rank-based measures do not need them):

    uv run python -m reid_pipeline.bench.wise_ft ../shared/weights/osnet_x0_25_msmt17.pth \\
        --tuned default --alpha 0,0.25,0.5,0.75 --out runs/wise
    uv run reid evaluate --data ../shared/data/market1501-dev --checkpoint runs/wise/a0.5.pt
    uv run python -m reid_pipeline.bench.tracklet_pairs RUN --spans benchmarks/indoor_people.csv \\
        --checkpoint default --checkpoint runs/wise/a0.5.pt ...
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch


def interpolate(start: torch.nn.Module, tuned: torch.nn.Module, alpha: float) -> dict:
    """``(1 - alpha) * start + alpha * tuned`` for every floating tensor of the backbone and
    adapter (BatchNorm statistics included); the classifier, calibration and integer buffers
    are the tuned model's."""
    own = ("w", "b", "platt_a", "platt_c", "calibrated")
    s0, s1 = start.state_dict(), tuned.state_dict()
    if s0.keys() != s1.keys():
        raise SystemExit("error: the two models' state_dict keys differ (another architecture?)")
    out = {}
    for k, v in s1.items():
        if k in own or not v.is_floating_point():
            out[k] = v.clone()
        else:
            out[k] = (1 - alpha) * s0[k].float() + alpha * v.float()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("start", help="the starting point: a torchreid zoo file or our checkpoint")
    ap.add_argument("--tuned", default="default", help="the fine-tuned checkpoint")
    ap.add_argument("--alpha", default="0,0.25,0.5,0.75")
    ap.add_argument("--out", default="runs/wise")
    a = ap.parse_args()
    from reid_pipeline.config import load_config
    from reid_pipeline.embed.model import ReIDModel, export_fp16, load_model

    tuned = load_model(a.tuned, load_config().model)
    arch = tuned.arch()
    cfg = load_config(overrides={"model.backbone": arch["backbone"]})
    start_in = load_model(a.start, cfg.model)
    # a zoo import has an identity adapter activation; the tuned model's (ReLU) changes
    # nothing on OSNet's features, which are non-negative already
    start = ReIDModel(
        arch["backbone"], 1, arch["embed_dim"], arch["activation"], arch["height"], arch["width"]
    )
    start.load_state_dict(start_in.state_dict())
    Path(a.out).mkdir(parents=True, exist_ok=True)
    for alpha in (float(x) for x in a.alpha.split(",") if x.strip()):
        m = ReIDModel(
            arch["backbone"],
            1,
            arch["embed_dim"],
            arch["activation"],
            arch["height"],
            arch["width"],
        )
        m.load_state_dict(interpolate(start, tuned, alpha))
        path = export_fp16(Path(a.out) / f"a{alpha:g}.pt", m)
        print(f"a={alpha:g}: {path}")


if __name__ == "__main__":
    main()
