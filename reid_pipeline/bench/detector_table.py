"""Detector table on PETS09-S2L1 (issue 13): recall, precision and frames/s of HOG, SSD
(each input size / tiling) and the MOT15 public ACF detections, against MOTChallenge ground
truth.

usage (data from ../shared, never committed):

    nice -n 10 uv run python -m reid_pipeline.bench.detector_table \\
        --video ../shared/videos/vtest_480x360.avi \\
        --gt ../shared/data/pets09-s2l1/gt/gt.txt --det ../shared/data/pets09-s2l1/det/det.txt

Scoring: GT frame n is video frame n-1; GT and ACF boxes are for 768x576 and scaled by
``--scale`` (0.625 for the 480x360 copy); GT rows with flag 0 are ignore regions: a
detection overlapping one (IoU >= 0.5) is dropped before matching, as MOTChallenge does.
Per frame, detections are matched one-to-one to GT boxes by the Hungarian method on IoU
(pairs below ``--iou`` 0.5 cannot match). Recall = matched / GT boxes, precision =
matched / detections kept. Each SSD view set (input size x tile grid) runs once at the
lowest score of ``--scores``; every score threshold is then applied to the same raw boxes,
and the whole frame + tiles rows add the two runs' times. frames/s is wall time of the
detector calls on this CPU (``--threads`` OpenCV threads), video decoding excluded.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
from scipy.optimize import linear_sum_assignment

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reid_pipeline.config import DetectorConfig
from reid_pipeline.detect.base import Detector
from reid_pipeline.detect.hog import HogDetector
from reid_pipeline.detect.ssd import SsdDetector, merge_views, parse_output, tile_windows
from reid_pipeline.detect.ssd_ort import box_iou
from reid_pipeline.types import Detections

iou_matrix = box_iou  # xyxy IoU matrix (len(a), len(b))


def load_boxes(path: str, scale: float) -> tuple[dict, dict]:
    """MOT txt -> ({frame index: xyxy (+score col)} for flag/score > 0 rows, ignore regions)."""
    keep: defaultdict[int, list[list[float]]] = defaultdict(list)
    ign: defaultdict[int, list[list[float]]] = defaultdict(list)
    for line in Path(path).read_text().splitlines():
        r = line.split(",")
        if len(r) < 7:
            continue
        f = int(r[0]) - 1
        x, y, w, h = (float(v) * scale for v in r[2:6])
        c = float(r[6])
        (keep if c > 0 or int(r[1]) < 0 else ign)[f].append([x, y, x + w, y + h, c])
    return ({f: np.asarray(v) for f, v in keep.items()}, {f: np.asarray(v) for f, v in ign.items()})


def score(
    dets: dict[int, Detections], gt: dict, ign: dict, frames: range, thr: float, iou_thr: float
) -> tuple[float, float, float]:
    tp = n_gt = n_det = 0
    for f in frames:
        d = dets.get(f, Detections.empty())
        boxes = d.boxes[d.scores >= thr]
        if f in ign and len(boxes):
            hit = iou_matrix(boxes, ign[f][:, :4]).max(axis=1) >= iou_thr
            boxes = boxes[~hit]
        g = gt.get(f, np.zeros((0, 5)))[:, :4]
        n_gt += len(g)
        n_det += len(boxes)
        if len(g) and len(boxes):
            m = iou_matrix(g, boxes)
            r, c = linear_sum_assignment(-m)
            tp += int((m[r, c] >= iou_thr).sum())
    n = len(frames)
    return tp / max(n_gt, 1), tp / max(n_det, 1), n_det / max(n, 1)


def read_frames(video: str, n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(video)
    out: list[np.ndarray] = []
    while len(out) < n:
        ok, img = cap.read()
        if not ok:
            break
        out.append(img)
    cap.release()
    return out


def run_views(
    det: SsdDetector,
    images: list[np.ndarray],
    cols: int,
    rows: int,
    overlap: float,
    full: bool,
    min_score: float,
) -> tuple[list[list], list[list], float]:
    """Raw per-view outputs for every frame (one batched pass) and the seconds it took."""
    views: list[list[tuple[int, int, int, int]]] = []
    crops: list[np.ndarray] = []
    for img in images:
        h, w = img.shape[:2]
        win = tile_windows(w, h, cols, rows, overlap, full)
        views.append(win)
        crops.extend(img[y0:y1, x0:x1] for x0, y0, x1, y1 in win)
    per_view = []
    t = time.perf_counter()
    for s in range(0, len(crops), det.batch):
        chunk = crops[s : s + det.batch]
        per_view.extend(parse_output(det.forward(chunk), len(chunk), min_score))
    dt = time.perf_counter() - t
    out, k = [], 0
    for win in views:
        out.append(per_view[k : k + len(win)])
        k += len(win)
    return views, out, dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--gt", required=True)
    ap.add_argument("--det", help="MOT15 public detections (det.txt) for the ACF rows")
    ap.add_argument("--scale", type=float, default=0.625)
    ap.add_argument("--frames", type=int, default=400, help="first N frames (GT covers 400)")
    ap.add_argument("--iou", type=float, default=0.5)
    ap.add_argument("--scores", default="0.2,0.3,0.4,0.5", help="SSD score thresholds")
    ap.add_argument("--acf-scores", default="0,10,30")
    ap.add_argument("--sizes", default="300,400,512", help="SSD input sizes, whole frame")
    ap.add_argument(
        "--tilings",
        default="2x1,2x2,3x2",
        help="SSD tile grids at 300 (each also with the whole frame added)",
    )
    ap.add_argument("--overlap", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=0, help="cv2.setNumThreads (0: OpenCV's)")
    ap.add_argument("--no-hog", action="store_true")
    ap.add_argument(
        "--ssd-runtime",
        default="auto",
        choices=["auto", "opencv", "onnxruntime"],
        help="detector.ssd_runtime of every SSD row (auto: onnxruntime when importable)",
    )
    ap.add_argument(
        "--speed-only",
        type=int,
        default=0,
        metavar="N",
        help="only time the detectors, interleaved on the same 8-frame chunks of "
        "the first N frames (fair on a shared CPU), and print frames/s",
    )
    a = ap.parse_args()
    if a.threads:
        cv2.setNumThreads(a.threads)
    if a.speed_only:
        speed_table(read_frames(a.video, a.speed_only), a)
        return
    images = read_frames(a.video, a.frames)
    frames = range(len(images))
    h, w = images[0].shape[:2]
    gt, ign = load_boxes(a.gt, a.scale)
    thrs = [float(s) for s in a.scores.split(",")]
    rows: list[tuple[str, float, float, float, float]] = []
    print(
        f"{len(images)} frames {w}x{h}, {sum(len(v) for f, v in gt.items() if f in frames)} "
        f"GT boxes, OpenCV threads {cv2.getNumThreads()}",
        flush=True,
    )

    if not a.no_hog:
        cfg = DetectorConfig(kind="hog")
        hog = HogDetector(cfg)
        t = time.perf_counter()
        dets = {i: d for i, d in enumerate(hog.detect(images))}
        dt = time.perf_counter() - t
        for thr in sorted({cfg.conf, 0.3, 0.5}):
            r, p, bpf = score(dets, gt, ign, frames, thr, a.iou)
            rows.append((f"HOG (defaults), score >= {thr:g}", r, p, bpf, len(images) / dt))
        print(*(fmt(x) for x in rows[-3:]), sep="\n", flush=True)

    def ssd_rows(label: str, size: int, views_outs: list[tuple[list, list]], dt: float) -> None:
        for thr in thrs:
            dets = {}
            for i in frames:
                win = [v for vs, _ in views_outs for v in vs[i]]
                pv = [o for _, os in views_outs for o in os[i]]
                dets[i] = merge_views(win, pv, w, h, 0.5, thr)
            r, p, bpf = score(dets, gt, ign, frames, thr, a.iou)
            rows.append(
                (f"SSD {size}x{size}, {label}, score >= {thr:g}", r, p, bpf, len(images) / dt)
            )
            print(fmt(rows[-1]), flush=True)

    full_runs = {}
    for size in (int(s) for s in a.sizes.split(",") if s):
        det = SsdDetector(
            SimpleNamespace(
                ssd_size=size,
                ssd_conf=min(thrs),
                ssd_iou=0.5,
                ssd_tiles="1x1",
                conf=0.1,
                iou=0.5,
                batch=16,
                ssd_runtime=a.ssd_runtime,
            )
        )
        v, o, dt = run_views(det, images, 1, 1, 0.0, True, min(thrs))
        full_runs[size] = (v, o, dt)
        ssd_rows("whole frame", size, [(v, o)], dt)
    det = SsdDetector(
        SimpleNamespace(
            ssd_size=300, ssd_conf=min(thrs), conf=0.1, iou=0.5, batch=16, ssd_runtime=a.ssd_runtime
        )
    )
    for spec in (s for s in a.tilings.split(",") if s):
        c, r_ = (int(x) for x in spec.split("x"))
        v, o, dt = run_views(det, images, c, r_, a.overlap, False, min(thrs))
        ssd_rows(f"{spec} tiles (overlap {a.overlap:g})", 300, [(v, o)], dt)
        if 300 in full_runs:
            fv, fo, fdt = full_runs[300]
            ssd_rows(f"whole frame + {spec} tiles", 300, [(fv, fo), (v, o)], dt + fdt)

    if a.det:
        acf, _ = load_boxes(a.det, a.scale)
        acf_d = {f: Detections(b[:, :4], np.ones(len(b))) for f, b in acf.items()}
        for thr in (float(s) for s in a.acf_scores.split(",")):
            d = {
                f: Detections(
                    acf[f][acf[f][:, 4] >= thr, :4], np.ones(int((acf[f][:, 4] >= thr).sum()))
                )
                for f in acf_d
            }
            r, p, bpf = score(d, gt, ign, frames, 0.0, a.iou)
            rows.append((f"MOT15 public ACF (det.txt), score >= {thr:g}", r, p, bpf, float("nan")))
            print(fmt(rows[-1]), flush=True)

    print("\n| detector | recall | precision | boxes/frame | frames/s |\n|---|---|---|---|---|")
    for row in rows:
        print(md(row))


def speed_table(images: list[np.ndarray], a: argparse.Namespace) -> None:
    """frames/s of each detector, timed round-robin chunk by chunk so that a load change on a
    shared CPU hits every detector alike."""
    dets: dict[str, Detector] = {"HOG (defaults)": HogDetector(DetectorConfig(kind="hog"))}
    for size in (int(s) for s in a.sizes.split(",") if s):
        dets[f"SSD {size}, whole frame"] = SsdDetector(
            DetectorConfig(kind="ssd", ssd_size=size, ssd_runtime=a.ssd_runtime)
        )
    for spec in (s for s in a.tilings.split(",") if s):
        dets[f"SSD 300, {spec} tiles"] = SsdDetector(
            DetectorConfig(
                kind="ssd",
                ssd_tiles=spec,
                ssd_full=False,
                ssd_overlap=a.overlap,
                ssd_runtime=a.ssd_runtime,
            )
        )
        dets[f"SSD 300, whole frame + {spec} tiles"] = SsdDetector(
            DetectorConfig(
                kind="ssd",
                ssd_tiles=spec,
                ssd_full=True,
                ssd_overlap=a.overlap,
                ssd_runtime=a.ssd_runtime,
            )
        )
    spent = dict.fromkeys(dets, 0.0)
    for d in dets.values():  # warm-up
        d.detect(images[:2])
    for s in range(0, len(images), 8):
        for name, d in dets.items():
            t = time.perf_counter()
            d.detect(images[s : s + 8])
            spent[name] += time.perf_counter() - t
    print(
        f"\n{len(images)} frames, interleaved in chunks of 8, OpenCV threads "
        f"{cv2.getNumThreads()}\n| detector | frames/s | x HOG |\n|---|---|---|"
    )
    hog = len(images) / spent["HOG (defaults)"]
    for name, t in spent.items():
        print(f"| {name} | {len(images) / t:.1f} | {len(images) / t / hog:.2f} |")


def fmt(row: tuple) -> str:
    name, r, p, bpf, fps = row
    return f"{name:<58} recall {r:.3f} precision {p:.3f} boxes/frame {bpf:.1f} fps {fps:.1f}"


def md(row: tuple) -> str:
    name, r, p, bpf, fps = row
    f = "-" if np.isnan(fps) else f"{fps:.1f}"
    return f"| {name} | {r:.2f} | {p:.2f} | {bpf:.1f} | {f} |"


if __name__ == "__main__":
    main()
