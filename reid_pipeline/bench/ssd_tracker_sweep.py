"""Sweep what the SSD detector feeds the tracker (issue 13), by track, on PETS09-S2L1.

Runs SSD once over the first ``--frames`` frames at a low score floor (cached in ``--cache``),
then for every combination of the swept settings feeds the boxes through the pipeline's own
``CameraTracker`` (ByteTrack) and scores the tracked boxes of tracklets with at least
``tracker.min_length`` boxes - what ``reid process`` writes to sightings.csv - against the
MOTChallenge ground truth with py-motmetrics (IoU >= 0.5; GT rows with flag 0 are ignore
regions: predictions overlapping one are dropped first, as MOTChallenge does). No ReID: this
is the by-track score; confirm the winner with ``reid process`` + score_mot.py (docs/benchmarks.md).

    nice -n 10 uv run python -m reid_pipeline.bench.ssd_tracker_sweep \\
        --video ../shared/videos/vtest_480x360.avi --gt ../shared/data/pets09-s2l1/gt/gt.txt
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.detector_table import iou_matrix, load_boxes, read_frames

from reid_pipeline.config import DetectorConfig, TrackerConfig
from reid_pipeline.detect.ssd import SsdDetector
from reid_pipeline.track.tracker import CameraTracker
from reid_pipeline.types import Detections, Frame


def floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",") if v]


def ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v]


def track(images, dets, cfg: TrackerConfig, floor: float, fps: float) -> dict[int, list]:
    """{frame: [(track id, xywh)]} of tracklets with >= min_length boxes."""
    tr = CameraTracker("cam", cfg, frame_rate=fps)
    for i, img in enumerate(images):
        d = dets[i]
        keep = d.scores >= floor
        tr.update(Frame("cam", i, i / fps, img), Detections(d.boxes[keep], d.scores[keep]))
    out: dict[int, list] = {}
    for t in tr.flush():  # every tracklet with >= min_length boxes not yet popped
        for b in t.boxes:
            x1, y1, x2, y2 = b.bbox
            out.setdefault(b.frame_index, []).append((t.track_id, [x1, y1, x2 - x1, y2 - y1]))
    return out


def score(pred: dict, gt: dict, ign: dict, n: int) -> dict:
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=False)
    for f in range(n):
        p = pred.get(f, [])
        pb = np.asarray([[x, y, x + w, y + h] for _, (x, y, w, h) in p]).reshape(-1, 4)
        if f in ign and p:
            hit = iou_matrix(pb, ign[f][:, :4]).max(axis=1) >= 0.5
            p, pb = [q for q, h in zip(p, hit) if not h], pb[~hit]
        g = gt.get(f, np.zeros((0, 6)))
        gi = [int(v) for v in g[:, 5]]
        # motmetrics' own iou_matrix uses np.asfarray (gone in NumPy 2): same rule here,
        # distance 1 - IoU, no match (NaN) below IoU 0.5
        iou = iou_matrix(g[:, :4], pb)
        dist = np.where(iou >= 0.5, 1.0 - iou, np.nan)
        acc.update(gi, [i for i, _ in p], dist, frameid=f)
    r = (
        mm.metrics.create()
        .compute(acc, metrics=["mota", "idf1", "recall", "precision", "num_switches"], name="x")
        .iloc[0]
    )
    n_tracks = len({i for v in pred.values() for i, _ in v})
    return {
        "mota": r.mota * 100,
        "idf1": r.idf1 * 100,
        "recall": r.recall * 100,
        "precision": r.precision * 100,
        "idsw": int(r.num_switches),
        "tracks": n_tracks,
    }


def load_gt_ids(path: str, scale: float, n: int) -> tuple[dict, dict]:
    """Like detector_table.load_boxes, with the GT id appended as column 5."""
    gt: dict[int, list] = {}
    ign: dict[int, list] = {}
    for line in Path(path).read_text().splitlines():
        r = line.split(",")
        f = int(r[0]) - 1
        if f >= n:
            continue
        x, y, w, h = (float(v) * scale for v in r[2:6])
        (gt if float(r[6]) > 0 else ign).setdefault(f, []).append(
            [x, y, x + w, y + h, 1, int(r[1])]
        )
    return ({f: np.asarray(v) for f, v in gt.items()}, {f: np.asarray(v) for f, v in ign.items()})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--scale", type=float, default=0.625)
    ap.add_argument("--frames", type=int, default=400)
    ap.add_argument("--fps", type=float, default=10.0)
    ap.add_argument("--cache", default="/tmp/ssd_sweep_dets.npz")
    ap.add_argument("--ssd-tiles", default="1x1")
    ap.add_argument("--ssd-full", type=int, default=0, help="with tiles: also the whole frame")
    ap.add_argument("--ssd-size", type=int, default=300)
    ap.add_argument("--floor", default="0.1,0.2", help="detector score floors (ssd_conf)")
    ap.add_argument("--high", default="0.25,0.4,0.5", help="tracker.high_thresh")
    ap.add_argument("--new", default="0.25,0.4,0.5,0.6", help="tracker.new_track_thresh")
    ap.add_argument("--buffer", default="30,60", help="tracker.track_buffer")
    ap.add_argument("--min-length", default="3", help="tracker.min_length")
    ap.add_argument("--match", default="0.8", help="tracker.match_thresh")
    ap.add_argument("--fuse", default="1", help="tracker.fuse_score (1/0)")
    a = ap.parse_args()
    images = read_frames(a.video, a.frames)
    n = len(images)
    cache = Path(a.cache)
    if cache.is_file():
        z = np.load(cache, allow_pickle=True)
        dets = [Detections(b, s) for b, s in zip(z["boxes"], z["scores"])]
    else:
        det = SsdDetector(
            DetectorConfig(
                kind="ssd",
                ssd_conf=0.05,
                ssd_tiles=a.ssd_tiles,
                ssd_full=bool(a.ssd_full),
                ssd_size=a.ssd_size,
            )
        )
        t = time.perf_counter()
        dets = det.detect(images)
        print(f"SSD {a.ssd_tiles}: {n / (time.perf_counter() - t):.1f} frames/s", flush=True)
        np.savez(
            cache,
            boxes=np.array([d.boxes for d in dets], dtype=object),
            scores=np.array([d.scores for d in dets], dtype=object),
        )
    gt, ign = load_gt_ids(a.gt, a.scale, n)
    _ = load_boxes  # same GT reading rules as the detector table
    rows = []
    for floor, high, new, buf, ml, mt, fuse in itertools.product(
        floats(a.floor),
        floats(a.high),
        floats(a.new),
        ints(a.buffer),
        ints(a.min_length),
        floats(a.match),
        ints(a.fuse),
    ):
        if new < high:
            continue
        cfg = dataclasses.replace(
            TrackerConfig(),
            high_thresh=high,
            low_thresh=min(floor, high),
            new_track_thresh=new,
            track_buffer=buf,
            min_length=ml,
            match_thresh=mt,
            fuse_score=bool(fuse),
        )
        s = score(track(images, dets, cfg, floor, a.fps), gt, ign, n)
        rows.append((floor, high, new, buf, ml, mt, fuse, s))
        print(
            f"floor {floor:.2f} high {high:.2f} new {new:.2f} buffer {buf:3d} min_length {ml} "
            f"match {mt:.2f} fuse {fuse}: MOTA {s['mota']:.1f} IDF1 {s['idf1']:.1f} recall {s['recall']:.1f} "
            f"precision {s['precision']:.1f} IDsw {s['idsw']} tracks {s['tracks']}",
            flush=True,
        )
    best = max(rows, key=lambda r: r[-1]["mota"] + r[-1]["idf1"])
    print("best (MOTA + IDF1):", best)


if __name__ == "__main__":
    main()
