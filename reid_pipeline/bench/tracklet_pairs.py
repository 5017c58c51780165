"""How well a ReID model separates the tracklets of one real run, labelled by MOT ground truth.

Reads a ``reid process`` output folder with a SQLite gallery (``sightings.csv``, ``reid.db``
and the crop files it lists),
labels every track with the ground-truth person its boxes overlap most (IoU >= 0.5), embeds
each track's crops with the model, and scores every pair of tracks with the matcher's own
tracklet probability (mean pair probability over the two crop sets, ``pair_mean``). Prints
the genuine (same person, two tracks) and impostor (two people) distributions and, for
every threshold, how many wrong merges and missed joins a fixed threshold would make.

    uv run python -m reid_pipeline.bench.tracklet_pairs RUN_DIR GT.txt SCALE [--checkpoint CK]...
        [--backbone NAME] [--last-frame N]
    uv run python -m reid_pipeline.bench.tracklet_pairs RUN_DIR --spans PEOPLE.csv ...

``--spans`` labels footage without box ground truth where people pass one at a time
(``person,first_s,last_s`` per line: a track is the person in view at its sightings'
times). ``--checkpoint`` repeated compares models on the same tracks; AUC is threshold-free
(the chance that a genuine pair scores above an impostor pair), so models calibrated
differently compare fairly.
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import torch

from reid_pipeline.bench.gt_chunks import auc


def quant(x: np.ndarray) -> dict[int, float]:
    """The 0/10/50/90/100 % quantiles, rounded, for printing."""
    return {k: round(float(v), 3) for k, v in zip(QS, np.percentile(x, QS))}


QS = [0, 10, 50, 90, 100]


def read_spans(path: str) -> list[tuple[str, float, float]]:
    """``person,first_s,last_s`` lines (``#`` comments): who was in view when, for footage
    without box ground truth (people who pass one at a time)."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [x.strip() for x in line.split(",")]
        if len(parts) != 3:
            raise SystemExit(f"error: {path}:{n}: expected person,first_s,last_s")
        out.append((parts[0], float(parts[1]), float(parts[2])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("gt", nargs="?", default="", help="MOT gt.txt (or use --spans)")
    ap.add_argument("scale", type=float, nargs="?", default=1.0)
    ap.add_argument("--spans", default="", help="person,first_s,last_s lines in place of gt.txt")
    ap.add_argument("--checkpoint", action="append", default=[], help="repeat to compare models")
    ap.add_argument("--backbone", default="")
    ap.add_argument("--last-frame", type=int, default=10**9, help="0-based, inclusive")
    ap.add_argument("--apart", type=int, default=20, help="frames between same-track crops")
    a = ap.parse_args()
    if bool(a.gt) == bool(a.spans):
        raise SystemExit("error: give either GT.txt SCALE or --spans FILE")
    from reid_pipeline.config import load_config
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.model import ReIDModel, load_model
    from reid_pipeline.evaluate.mot import iou_distance, read_gt
    from reid_pipeline.gallery.manage import open_existing

    gt: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    people = read_spans(a.spans) if a.spans else []
    if a.gt:
        truth = read_gt(a.gt)  # the evaluate-mot reader: scored rows, MOT15/16 flags
        for f in np.unique(truth.frame[truth.scored]):
            sel = truth.scored & (truth.frame == f)
            gt[int(f) - 1] = (truth.ident[sel], truth.box[sel] * a.scale)  # 0-based frame
    votes: dict[tuple[str, int], Counter] = defaultdict(Counter)
    span: dict[tuple[str, int], list[int]] = {}
    times: dict[tuple[str, int], list[float]] = defaultdict(list)
    rows = (Path(a.run) / "sightings.csv").read_text().splitlines()
    for r in csv.DictReader(rows):
        f = int(r["frame"])
        if f > a.last_frame:
            continue
        key = (r["camera"], int(r["track"]))
        x1, y1, x2, y2 = (float(r[k]) for k in ("x1", "y1", "x2", "y2"))
        pid: int | str = -1
        if people:
            t = float(r["timestamp"])
            times[key].append(t)
            pid = next((p for p, t0, t1 in people if t0 <= t <= t1), -1)
        elif f in gt:  # the person whose box it overlaps most, at IoU >= 0.5
            d = iou_distance(gt[f][1], np.array([[x1, y1, x2 - x1, y2 - y1]]), 0.5)[:, 0]
            if np.isfinite(d).any():
                pid = int(gt[f][0][int(np.nanargmin(d))])
        votes[key][pid] += 1
        s = span.setdefault(key, [f, f])
        s[0], s[1] = min(s[0], f), max(s[1], f)
    cfg = load_config(overrides={"model.backbone": a.backbone} if a.backbone else None)
    # crop files are filed by gallery tracklet row: map (camera, track) to them
    files: dict[tuple[str, int], list[tuple[int, str]]] = defaultdict(list)
    with open_existing(str(Path(a.run) / "reid.db"), cfg) as gallery:
        for c in gallery.crops():
            if c.path is not None and c.track_id is not None:
                files[(c.camera, c.track_id)].append((c.frame, str(c.path)))
    tracks, labels, crops_of, frames_of = [], [], [], []
    for key, v in sorted(votes.items()):
        pid, n = v.most_common(1)[0]
        crops: list[np.ndarray] = []
        frames: list[int] = []
        for f, path in sorted(files.get(key, [])):
            img = cv2.imread(path)
            if img is not None:
                crops.append(img)
                frames.append(f)
        if pid == -1 or n < 0.7 * sum(v.values()) or not crops:
            continue  # a track on no one, on two people, or without crops: not a clean label
        tracks.append(key)
        labels.append(pid)
        crops_of.append(crops)
        frames_of.append(np.array(frames))
    n = len(tracks)
    print(f"{n} clean tracks of {len(set(labels))} people")
    for ck in a.checkpoint or ["default"]:
        model = load_model(ck, cfg.model, "cpu")
        emb = Embedder(model, "cpu", batch=64, half=False)
        vecs = [emb.embed_crops(c).float() for c in crops_of]
        means = [torch.nn.functional.normalize(v.mean(0), dim=0) for v in vecs]
        unit = [torch.nn.functional.normalize(v, dim=1) for v in vecs]
        within = [
            float((u @ u.T).sum() - len(u)) / max(1, len(u) * (len(u) - 1)) if len(u) > 1 else 1.0
            for u in unit
        ]

        def dist(
            x: torch.Tensor,
            y: torch.Tensor,
            m: ReIDModel = model,
            b: float = float(model.b.detach()),
        ) -> torch.Tensor:
            # the classifier's weighted L1 distance w.|x - y| (score = b - distance)
            return b - m.pair_scores(x, y).float()

        wd = [
            float(dist(v, v).sum()) / max(1, len(v) * (len(v) - 1)) if len(v) > 1 else 0.0
            for v in vecs
        ]
        gen_d, imp_d = [], []
        gen, imp, gen_cos, imp_cos, gen_rel, imp_rel = [], [], [], [], [], []
        worst = (-1.0, "")
        for i in range(n):
            for j in range(i + 1, n):
                p = float(model.pair_probability(vecs[i], vecs[j]).mean())
                cos = float(means[i] @ means[j])
                # cross-track mean crop cosine relative to how alike each track is to itself
                rel = float((unit[i] @ unit[j].T).mean()) / max(
                    1e-6, float(np.sqrt(max(within[i], 1e-6) * max(within[j], 1e-6)))
                )
                si, sj = span[tracks[i]], span[tracks[j]]
                drel = float(dist(vecs[i], vecs[j]).mean()) / max(
                    1e-6, float(np.sqrt(max(wd[i], 1e-6) * max(wd[j], 1e-6)))
                )
                overlap = tracks[i][0] == tracks[j][0] and si[0] <= sj[1] and sj[0] <= si[1]
                if labels[i] == labels[j] and not overlap:
                    gen.append(p)
                    gen_cos.append(cos)
                    gen_rel.append(rel)
                    gen_d.append(drel)
                elif labels[i] != labels[j]:
                    imp.append(p)
                    imp_cos.append(cos)
                    imp_rel.append(rel)
                    imp_d.append(drel)
                    if p > worst[0]:
                        worst = (p, f"t{tracks[i][1]}/t{tracks[j][1]}")
        g, im = np.array(gen), np.array(imp)
        # crop level, calibration-free: two crops of one track at least --apart frames
        # apart (the footage's own proof of one person) against crops of two people
        cg, ci = [], []
        allv = torch.nn.functional.normalize(torch.cat(vecs), dim=1)
        owner = np.concatenate([np.full(len(v), k) for k, v in enumerate(vecs)])
        fr = np.concatenate(frames_of)
        sim = (allv @ allv.T).numpy()
        lab = np.array(labels, dtype=object)[owner]
        iu = np.triu_indices(len(owner), 1)
        same_track = owner[iu[0]] == owner[iu[1]]
        far = np.abs(fr[iu[0]] - fr[iu[1]]) >= a.apart
        cg = sim[iu][same_track & far]
        ci = sim[iu][lab[iu[0]] != lab[iu[1]]]
        print(
            f"== {ck} ({model.model_version}): {len(g)} genuine, {len(im)} impostor track "
            f"pairs; AUC probability {auc(g, im):.3f}, cosine of mean embeddings "
            f"{auc(np.array(gen_cos), np.array(imp_cos)):.3f}; most alike strangers "
            f"{worst[1]} at p {worst[0]:.3f}"
        )
        gr, ir = np.array(gen_rel), np.array(imp_rel)
        print(
            f"   crops: {len(cg)} same-track pairs >= {a.apart} frames apart vs {len(ci)} "
            f"stranger pairs: cosine AUC {auc(cg, ci):.3f}; strangers above the "
            f"5th percentile of same-track cosine: "
            f"{float((ci > np.percentile(cg, 5)).mean()) if len(cg) else float('nan'):.3f}"
        )
        print(
            f"   self-relative crop cosine: AUC {auc(gr, ir):.3f}; genuine "
            f"{quant(gr) if len(gr) else '-'}; impostor "
            f"{quant(ir) if len(ir) else '-'}"
        )
        gd, idd = np.array(gen_d), np.array(imp_d)
        print(
            f"   self-relative classifier distance: AUC {auc(-gd, -idd):.3f}; genuine "
            f"{quant(gd) if len(gd) else '-'}; impostor "
            f"{quant(idd) if len(idd) else '-'}"
        )
        if len(g):
            print("genuine  p quantiles", quant(g))
        if len(im):
            print("impostor p quantiles", quant(im))
        print("threshold | impostor pairs over it | genuine pairs under it")
        for t in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
            print(f"{t:9.2f} | {int((im >= t).sum()):6d} | {int((g < t).sum()):6d}")


if __name__ == "__main__":
    main()
