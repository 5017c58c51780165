"""Identity assignment on held-out people: the Market-1501 dev test identities as tracklets.

Each (identity, camera) of the test split (query + bounding_box_test) becomes one tracklet
of up to 16 crops; each camera's tracklets get disjoint time slots 100 s apart, are
shuffled (seed 0) and committed through a SQLite gallery in batches of 20 with the
matcher the pipeline builds (``build_matcher``: the calibrated probability, the relative
gate with the classifier's distance, re-linking - which never fires here, the slots are
far apart). Scored: identities made (truth: the number of people), identities holding
more than one person, and B-cubed precision / recall / F over tracklets (precision: how
much of my identity is me; recall: how much of me is in my identity). The question it
answers is which ``match.threshold`` a model wants on people it was not trained on:

    uv run python -m reid_pipeline.bench.market_assign ../shared/data/market1501-dev \\
        --threshold 0.7,0.75,0.8,0.85,0.9 [--checkpoint CK] [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import random
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch


def bcubed(ident: dict[tuple[int, int], int | None]) -> dict[str, float]:
    """B-cubed precision, recall and F of an assignment {(person, camera): identity}; a
    tracklet without an identity is its own cluster."""
    label = {k: (v if v is not None else ("alone", k)) for k, v in ident.items()}
    members: dict[object, list[int]] = defaultdict(list)
    for (pid, _cam), lab in label.items():
        members[lab].append(pid)
    total = Counter(pid for pid, _cam in label)
    prec = float(
        np.mean([Counter(members[label[k]])[k[0]] / len(members[label[k]]) for k in label])
    )
    rec = float(np.mean([Counter(members[label[k]])[k[0]] / total[k[0]] for k in label]))
    return {
        "identities": float(len(members)),
        "mixed": float(sum(len(set(p)) > 1 for p in members.values())),
        "precision": prec,
        "recall": rec,
        "F": 2 * prec * rec / max(prec + rec, 1e-12),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data", help="market1501-dev root (holds Market-1501-v15.09.15/)")
    ap.add_argument("--threshold", default="0.7,0.75,0.8,0.85,0.9")
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--crops", type=int, default=16, help="crops per tracklet")
    a = ap.parse_args()
    from reid_pipeline.config import load_config
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.model import load_model
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.match.assign import MatchQuery
    from reid_pipeline.pipeline.build import build_matcher
    from reid_pipeline.types import TrackedBox, Tracklet

    root = Path(a.data)
    if (root / "Market-1501-v15.09.15").is_dir():
        root = root / "Market-1501-v15.09.15"
    overrides = dict(kv.split("=", 1) for kv in a.set)
    cfg = load_config(overrides=overrides or None)
    model = load_model(a.checkpoint, cfg.model, "cpu").eval()
    emb = Embedder(model, "cpu", batch=64, half=False)
    groups: dict[tuple[int, int], list[Path]] = defaultdict(list)
    for sub in ("query", "bounding_box_test"):
        for p in sorted((root / sub).glob("*.jpg")):
            pid = int(p.name.split("_")[0])
            if pid > 0:  # -1: junk, 0000: distractors
                groups[(pid, int(p.name.split("_")[1][1]))].append(p)
    if not groups:
        raise SystemExit(f"error: no query/bounding_box_test images under {str(root)!r}")
    keys = sorted(groups)

    def read(p: Path) -> np.ndarray:
        img = cv2.imread(str(p))
        if img is None:
            raise SystemExit(f"error: cannot read image {str(p)!r}")
        return img

    with torch.no_grad():
        vecs = {k: emb.embed_crops([read(p) for p in groups[k][: a.crops]]) for k in keys}
    people = len({k[0] for k in keys})
    print(f"{len(keys)} tracklets of {people} people ({a.checkpoint}, {model.model_version})")
    print("threshold | identities | holding 2+ people | B3 precision | B3 recall | F")
    for thr in (float(x) for x in a.threshold.split(",") if x.strip()):
        tcfg = load_config(overrides={**overrides, "match.threshold": thr})
        order = keys[:]
        random.Random(0).shuffle(order)
        slot: Counter[int] = Counter()
        ident: dict[tuple[int, int], int | None] = {}
        with (
            tempfile.TemporaryDirectory() as d,
            Gallery.open(str(Path(d) / "g.db"), tcfg.gallery) as g,
        ):
            _cache, matcher = build_matcher(tcfg, model, g, torch.device("cpu"))
            sources: dict[str, int] = {}
            for b in range(0, len(order), 20):
                with g.batch() as uow:
                    qs = []
                    for pid, cam in order[b : b + 20]:
                        c = f"c{cam}"
                        if c not in sources:
                            sources[c] = uow.begin_source(c, "market").source_id
                        t = slot[cam] * 100.0
                        slot[cam] += 1
                        box = (0.0, 0.0, 64.0, 128.0)
                        tr = Tracklet(
                            c,
                            pid,
                            [
                                TrackedBox(c, int(t), t, box, 1.0, pid),
                                TrackedBox(c, int(t) + 10, t + 10, box, 1.0, pid),
                            ],
                        )
                        tid = uow.record_tracklet(sources[c], tr, save_crops=False)
                        qs.append(MatchQuery.from_tracklet(tr, vecs[(pid, cam)], tid))
                    for k, asg in zip(order[b : b + 20], matcher.commit(uow, qs)):
                        ident[k] = asg.identity_id
        r = bcubed(ident)
        print(
            f"{thr:g} | {int(r['identities'])} | {int(r['mixed'])} | {r['precision']:.3f} | "
            f"{r['recall']:.3f} | {r['F']:.3f}"
        )


if __name__ == "__main__":
    main()
