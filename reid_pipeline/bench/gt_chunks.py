"""Re-identification across time on footage a model never saw, from MOT ground truth.

Cuts every ground-truth person of a MOTChallenge sequence into chunks of ``--chunk``
seconds (a stand-in for the tracklets a tracker would make, without the tracker's errors),
keeps up to ``--crops`` unoccluded crops per chunk (tall enough, inside the frame, not
overlapping another person's box by more than ``--max-overlap`` IoU), embeds them with each
``--checkpoint`` and asks the matcher's question: which earlier or later chunk is the same
person? Every chunk is a query against the chunks at least ``--gap`` seconds away from it
(the same person close in time is the tracker's job, not ReID's), scored

* ``classifier``: the tracklet probability the matcher uses (``pair_mean``: the mean pair
  probability over the two chunks' crops; models without a trained classifier give
  nothing useful here),
* ``cosine``: the cosine of the chunks' mean embeddings,
* ``relative``: the classifier's distance between the chunks over each chunk's own spread
  (``match.relative_max``'s measure; lower is more alike),

reported as chunk mAP and rank-1 and as the pair AUC (the chance that a genuine pair
scores above a stranger pair). For PETS09-S2L1 (people 40-65 px tall: the far-camera case
where issue 12's identities go wrong):

    uv run python -m reid_pipeline.bench.gt_chunks ../shared/data/pets09-s2l1 \\
        --video ../shared/videos/vtest_480x360.avi --scale 0.625 --frames 1:400 \\
        --checkpoint default --checkpoint ../shared/weights/osnet_x0_25_msmt17.pth
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

from reid_pipeline.embed.model import ReIDModel
from reid_pipeline.evaluate.mot import iou_distance


@dataclass
class Chunk:
    person: int
    first: int  # frame, 1-based
    last: int
    crops: list[np.ndarray] = field(default_factory=list)


def usable_boxes(
    frame_ids: np.ndarray,
    idents: np.ndarray,
    boxes: np.ndarray,
    width: int,
    height: int,
    min_height: float,
    max_overlap: float,
) -> np.ndarray:
    """Which rows give a clean crop: tall enough, inside the frame, not occluded much."""
    ok = (boxes[:, 3] >= min_height) & (boxes[:, 0] >= 0) & (boxes[:, 1] >= 0)
    ok &= (boxes[:, 0] + boxes[:, 2] <= width) & (boxes[:, 1] + boxes[:, 3] <= height)
    for f in np.unique(frame_ids):
        idx = np.flatnonzero(frame_ids == f)
        if len(idx) < 2:
            continue
        iou = 1.0 - iou_distance(boxes[idx], boxes[idx], 1.0)
        np.fill_diagonal(iou, 0.0)
        ok[idx[iou.max(1) > max_overlap]] = False
    return ok


def make_chunks(
    frame_ids: np.ndarray, idents: np.ndarray, usable: np.ndarray, chunk_frames: int, crops: int
) -> list[tuple[int, int, int, list[int]]]:
    """(person, first, last, rows to crop) per chunk of ``chunk_frames`` frames of a person;
    chunks with fewer than two usable rows are dropped; rows spread evenly."""
    out = []
    for pid in np.unique(idents):
        rows = np.flatnonzero(idents == pid)
        rows = rows[np.argsort(frame_ids[rows])]
        f0 = int(frame_ids[rows[0]])
        for start in range(f0, int(frame_ids[rows[-1]]) + 1, chunk_frames):
            sel = rows[(frame_ids[rows] >= start) & (frame_ids[rows] < start + chunk_frames)]
            good = sel[usable[sel]]
            if len(good) < 2:
                continue
            pick = good[
                np.unique(np.linspace(0, len(good) - 1, min(crops, len(good))).round().astype(int))
            ]
            out.append((int(pid), int(frame_ids[sel[0]]), int(frame_ids[sel[-1]]), pick.tolist()))
    return out


def average_precision(scores: np.ndarray, genuine: np.ndarray) -> float:
    """AP of one ranking (higher score first)."""
    order = np.argsort(-scores, kind="stable")
    hits = genuine[order]
    if not hits.any():
        return float("nan")
    prec = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(prec[hits].mean())


def auc(gen: np.ndarray, imp: np.ndarray) -> float:
    """P(a genuine pair scores above a stranger pair), ties counted half."""
    if not len(gen) or not len(imp):
        return float("nan")
    g, i = np.sort(gen), np.sort(imp)
    below = np.searchsorted(i, g, side="left")
    upto = np.searchsorted(i, g, side="right")
    return float((below + 0.5 * (upto - below)).sum() / (len(g) * len(i)))


def retrieval(
    sim: np.ndarray, person: np.ndarray, first: np.ndarray, last: np.ndarray, gap: int
) -> dict[str, float]:
    """Chunk mAP / rank-1 / AUC of a chunk-by-chunk similarity (higher: more alike), every
    chunk a query against the chunks at least ``gap`` frames away from it."""
    n = len(person)
    aps, r1, gen, imp = [], [], [], []
    for q in range(n):
        far = (first > last[q] + gap) | (last < first[q] - gap)
        far[q] = False
        if not far.any():
            continue
        s, g = sim[q, far], person[far] == person[q]
        if g.any():
            aps.append(average_precision(s, g))
            r1.append(float(g[int(np.argmax(s))]))
        # each unordered pair once, for the AUC
        upper = far & (np.arange(n) > q)
        gen.extend(sim[q, upper & (person == person[q])].tolist())
        imp.extend(sim[q, upper & (person != person[q])].tolist())
    return {
        "mAP": 100 * float(np.mean(aps)) if aps else float("nan"),
        "R1": 100 * float(np.mean(r1)) if r1 else float("nan"),
        "AUC": auc(np.array(gen), np.array(imp)),
        "queries": float(len(aps)),
        "genuine_pairs": float(len(gen)),
        "stranger_pairs": float(len(imp)),
    }


def score_chunks(model: ReIDModel, vecs: list[torch.Tensor]) -> dict[str, np.ndarray]:
    """Chunk-by-chunk similarities of each scoring (higher: more alike)."""
    n = len(vecs)
    prob = np.zeros((n, n))
    rel = np.zeros((n, n))
    b = float(model.b.detach())

    def dist(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return b - model.pair_scores(x, y).float()

    own = [
        float(dist(v, v).sum()) / max(1, len(v) * (len(v) - 1)) if len(v) > 1 else 0.0 for v in vecs
    ]
    means = torch.stack([torch.nn.functional.normalize(v.mean(0), dim=0) for v in vecs])
    with torch.no_grad():
        for i in range(n):
            for j in range(i + 1, n):
                p = float(model.pair_probability(vecs[i], vecs[j]).float().mean())
                d = float(dist(vecs[i], vecs[j]).mean())
                r = d / max(1e-6, float(np.sqrt(max(own[i], 1e-6) * max(own[j], 1e-6))))
                prob[i, j] = prob[j, i] = p
                rel[i, j] = rel[j, i] = -r  # lower distance ratio: more alike
    return {"classifier": prob, "cosine": (means @ means.T).numpy(), "relative": rel}


def read_frames(video: str, wanted: set[int]) -> dict[int, np.ndarray]:
    """The wanted 1-based frames of a video, decoded in one pass."""
    cap = cv2.VideoCapture(video)
    if not cap.isOpened():
        raise SystemExit(f"error: cannot open video {video!r}")
    out, i, last = {}, 0, max(wanted)
    while i < last:
        ok, img = cap.read()
        if not ok:
            break
        i += 1
        if i in wanted:
            out[i] = img
    cap.release()
    missing = wanted - set(out)
    if missing:
        raise SystemExit(f"error: video {video!r} ends before frame {min(missing)}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("sequence", help="MOTChallenge sequence folder (seqinfo.ini, gt/gt.txt)")
    ap.add_argument("--video", required=True, help="the sequence as a video")
    ap.add_argument("--scale", type=float, default=1.0, help="video pixels per gt pixel")
    ap.add_argument("--frames", default="", help="A:B, 1-based inclusive (default: all)")
    ap.add_argument("--checkpoint", action="append", default=[], help="repeat to compare")
    ap.add_argument("--backbone", default="", help="model.backbone for zoo files")
    ap.add_argument("--chunk", type=float, default=2.0, help="seconds per chunk")
    ap.add_argument("--gap", type=float, default=2.0, help="seconds between query and gallery")
    ap.add_argument("--crops", type=int, default=6, help="crops per chunk")
    ap.add_argument("--min-height", type=float, default=32, help="px in the video")
    ap.add_argument("--max-overlap", type=float, default=0.1, help="IoU with another person")
    ap.add_argument(
        "--flip", action="store_true", help="also: each crop's embedding averaged with its mirror's"
    )
    ap.add_argument("--json", default="", help="write the figures here")
    a = ap.parse_args()
    from reid_pipeline.config import load_config
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.model import load_model
    from reid_pipeline.evaluate.mot import read_gt, read_seqinfo, sequence_frames

    seq = read_seqinfo(a.sequence)
    gt = read_gt(Path(a.sequence) / "gt" / "gt.txt", seq)
    lo, hi = sequence_frames(a.frames, seq) if a.frames else (1, seq.length)
    sel = gt.scored & (gt.frame >= lo) & (gt.frame <= hi)
    frame_ids, idents, boxes = gt.frame[sel], gt.ident[sel], gt.box[sel] * a.scale
    w, h = round(seq.width * a.scale), round(seq.height * a.scale)
    usable = usable_boxes(frame_ids, idents, boxes, w, h, a.min_height, a.max_overlap)
    chunk_frames = max(1, round(a.chunk * seq.frame_rate))
    plan = make_chunks(frame_ids, idents, usable, chunk_frames, a.crops)
    images = read_frames(a.video, {int(frame_ids[r]) for *_, rows in plan for r in rows})
    chunks = []
    for pid, f0, f1, rows in plan:
        c = Chunk(pid, f0, f1)
        for row in rows:
            x, y, bw, bh = boxes[row]
            img = images[int(frame_ids[row])]
            c.crops.append(img[int(y) : int(y + bh), int(x) : int(x + bw)])
        chunks.append(c)
    person = np.array([c.person for c in chunks])
    first = np.array([c.first for c in chunks])
    last = np.array([c.last for c in chunks])
    gap = round(a.gap * seq.frame_rate)
    print(
        f"{len(chunks)} chunks of {len(set(person.tolist()))} people, frames {lo}-{hi}, "
        f"{a.chunk:g} s each, queries against chunks >= {a.gap:g} s away"
    )
    cfg = load_config(overrides={"model.backbone": a.backbone} if a.backbone else None)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for ck in a.checkpoint or ["default"]:
        model = load_model(ck, cfg.model, "cpu")
        model.eval()
        emb = Embedder(model, "cpu", batch=64, half=False)
        vecs = [emb.embed_crops(c.crops).float() for c in chunks]
        variants = {ck: vecs}
        if a.flip:  # test-time mirroring: a person walking left is one walking right
            variants[f"{ck}+flip"] = [
                0.5
                * (v + emb.embed_crops([np.ascontiguousarray(x[:, ::-1]) for x in c.crops]).float())
                for v, c in zip(vecs, chunks)
            ]
        for name, vs in variants.items():
            results[name] = report(name, model, vs, person, first, last, gap)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))


def report(
    name: str,
    model: ReIDModel,
    vecs: list[torch.Tensor],
    person: np.ndarray,
    first: np.ndarray,
    last: np.ndarray,
    gap: int,
) -> dict[str, dict[str, float]]:
    """Print and return each scoring's figures for one set of chunk embeddings."""
    out = {}
    for mode, sim in score_chunks(model, vecs).items():
        r = retrieval(sim, person, first, last, gap)
        out[mode] = r
        print(
            f"{name} [{mode}]: chunk mAP {r['mAP']:.1f}, R1 {r['R1']:.1f}, pair AUC "
            f"{r['AUC']:.3f} ({int(r['queries'])} queries, {int(r['genuine_pairs'])} "
            f"genuine / {int(r['stranger_pairs'])} stranger pairs)"
        )
    return out


if __name__ == "__main__":
    main()
