"""How well a ReID model separates the tracklets of one real run, labelled by MOT ground truth.

Reads a ``reid process`` output folder with a SQLite gallery (``sightings.csv``, ``reid.db``
and the crop files it lists),
labels every track with the ground-truth person its boxes overlap most (IoU >= 0.5), embeds
each track's crops with the model, and scores every pair of tracks with the matcher's own
tracklet probability (mean pair probability over the two crop sets, ``pair_mean``). Prints
the genuine (same person, two tracks) and impostor (two people) distributions and, for
every threshold, how many wrong merges and missed joins a fixed threshold would make.

    uv run python -m reid_pipeline.bench.tracklet_pairs RUN_DIR GT.txt SCALE [--checkpoint CK]
        [--backbone NAME] [--last-frame N]
"""

from __future__ import annotations

import argparse
import csv
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("gt")
    ap.add_argument("scale", type=float)
    ap.add_argument("--checkpoint", default="default")
    ap.add_argument("--backbone", default="")
    ap.add_argument("--last-frame", type=int, default=10**9, help="0-based, inclusive")
    a = ap.parse_args()
    from reid_pipeline.config import load_config
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.model import load_model
    from reid_pipeline.evaluate.mot import iou_distance, read_gt
    from reid_pipeline.gallery.manage import open_existing

    truth = read_gt(a.gt)  # the evaluate-mot reader: scored rows, MOT15/16 flags
    gt: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for f in np.unique(truth.frame[truth.scored]):
        sel = truth.scored & (truth.frame == f)
        gt[int(f) - 1] = (truth.ident[sel], truth.box[sel] * a.scale)  # 0-based video frame
    votes: dict[tuple[str, int], Counter] = defaultdict(Counter)
    span: dict[tuple[str, int], list[int]] = {}
    rows = (Path(a.run) / "sightings.csv").read_text().splitlines()
    for r in csv.DictReader(rows):
        f = int(r["frame"])
        if f > a.last_frame:
            continue
        key = (r["camera"], int(r["track"]))
        x1, y1, x2, y2 = (float(r[k]) for k in ("x1", "y1", "x2", "y2"))
        pid = -1
        if f in gt:  # the person whose box it overlaps most, at IoU >= 0.5
            d = iou_distance(gt[f][1], np.array([[x1, y1, x2 - x1, y2 - y1]]), 0.5)[:, 0]
            if np.isfinite(d).any():
                pid = int(gt[f][0][int(np.nanargmin(d))])
        votes[key][pid] += 1
        s = span.setdefault(key, [f, f])
        s[0], s[1] = min(s[0], f), max(s[1], f)
    cfg = load_config(overrides={"model.backbone": a.backbone} if a.backbone else None)
    model = load_model(a.checkpoint, cfg.model, "cpu")
    emb = Embedder(model, "cpu", batch=64, half=False)
    # crop files are filed by gallery tracklet row: map (camera, track) to them
    files: dict[tuple[str, int], list[str]] = defaultdict(list)
    with open_existing(str(Path(a.run) / "reid.db"), cfg) as gallery:
        for c in gallery.crops():
            if c.path is not None and c.track_id is not None:
                files[(c.camera, c.track_id)].append(str(c.path))
    tracks, vecs, labels = [], [], []
    for key, v in sorted(votes.items()):
        pid, n = v.most_common(1)[0]
        crops: list[np.ndarray] = []
        for path in sorted(files.get(key, [])):
            img = cv2.imread(path)
            if img is not None:
                crops.append(img)
        if pid < 0 or n < 0.7 * sum(v.values()) or not crops:
            continue  # a track on no one, on two people, or without crops: not a clean label
        tracks.append(key)
        labels.append(pid)
        vecs.append(emb.embed_crops(crops).float())
    n = len(tracks)
    gen, imp = [], []
    for i in range(n):
        for j in range(i + 1, n):
            p = float(model.pair_probability(vecs[i], vecs[j]).mean())
            si, sj = span[tracks[i]], span[tracks[j]]
            overlap = tracks[i][0] == tracks[j][0] and si[0] <= sj[1] and sj[0] <= si[1]
            if labels[i] == labels[j] and not overlap:
                gen.append(p)
            elif labels[i] != labels[j]:
                imp.append(p)
    g, im = np.array(gen), np.array(imp)
    print(
        f"{n} clean tracks of {len(set(labels))} people; {len(g)} genuine, {len(im)} "
        f"impostor track pairs; model {model.model_version}"
    )
    q = [0, 10, 50, 90, 100]
    if len(g):
        print("genuine  p quantiles", dict(zip(q, np.percentile(g, q).round(3))))
    if len(im):
        print("impostor p quantiles", dict(zip(q, np.percentile(im, q).round(3))))
    print("threshold | impostor pairs over it | genuine pairs under it")
    for t in (0.3, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95):
        print(f"{t:9.2f} | {int((im >= t).sum()):6d} | {int((g < t).sum()):6d}")


if __name__ == "__main__":
    main()
