"""SSD runtimes side by side (``detector.ssd_runtime``): frames/s of OpenCV DNN and
onnxruntime on the same frames, timed interleaved, and how far their person boxes differ.

usage (the video from ../shared, never committed):

    nice -n 10 uv run python -m reid_pipeline.bench.ssd_speed \\
        --video ../shared/videos/vtest_480x360.avi --frames 100

Both detectors are the default SSD (``DetectorConfig(kind="ssd")``: 2x1 tiles at 300x300,
floor ``ssd_conf`` 0.1, batches of ``detector.batch`` views) except for ``ssd_runtime``.
Timing: each round runs every runtime over the frames in chunks of ``--chunk`` frames,
alternating which runtime goes first chunk by chunk (a load change on a shared CPU hits
both alike); the table gives the median over rounds of frames/s (wall time of ``detect``,
decoding excluded) and ms per net view. Equality: per frame, every box at >= each floor of
one runtime is matched to the other's best-overlapping box (``ssd_ort.Agreement``: IoU >=
0.98 and |score difference| <= 0.01 count as a match).
"""

from __future__ import annotations

import argparse
import statistics
import time

import cv2
import numpy as np

from reid_pipeline.bench import detector_table
from reid_pipeline.config import DetectorConfig
from reid_pipeline.detect.ssd import SsdDetector, tile_windows
from reid_pipeline.detect.ssd_ort import Agreement


def read_frames(video: str, n: int) -> list[np.ndarray]:
    out = detector_table.read_frames(video, n)
    if not out:
        raise SystemExit(f"error: no frames could be read from {video!r}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--video", required=True)
    ap.add_argument("--frames", type=int, default=100, help="the first N frames")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=8, help="frames per detect call")
    ap.add_argument("--floors", default="0.1,0.3,0.5", help="score floors for the equality")
    a = ap.parse_args()
    frames = read_frames(a.video, a.frames)
    dets = {
        r: SsdDetector(DetectorConfig(kind="ssd", ssd_runtime=r)) for r in ("opencv", "onnxruntime")
    }
    d0, (h, w) = dets["opencv"], frames[0].shape[:2]
    views = len(frames) * len(tile_windows(w, h, d0.cols, d0.rows, d0.overlap, d0.full))
    for d in dets.values():  # warm-up
        d.detect(frames[:2])
    per_round: dict[str, list[float]] = {r: [] for r in dets}
    out: dict[str, list] = {}
    for rnd in range(a.rounds):
        spent = dict.fromkeys(dets, 0.0)
        for k, s in enumerate(range(0, len(frames), a.chunk)):
            order = list(dets) if (k + rnd) % 2 == 0 else list(dets)[::-1]
            for r in order:
                t = time.perf_counter()
                res = dets[r].detect(frames[s : s + a.chunk])
                spent[r] += time.perf_counter() - t
                if rnd == 0:
                    out.setdefault(r, []).extend(res)
        for r in dets:
            per_round[r].append(spent[r])
        print(
            f"round {rnd + 1}: "
            + ", ".join(f"{r} {len(frames) / spent[r]:.1f} frames/s" for r in dets)
            + f" (onnxruntime {spent['opencv'] / spent['onnxruntime']:.2f}x)",
            flush=True,
        )
    ort = dets["onnxruntime"].ort
    print(
        f"\n{len(frames)} frames {frames[0].shape[1]}x{frames[0].shape[0]}, default SSD "
        f"({d0.cols}x{d0.rows} tiles at {d0.size}x{d0.size}: {views} net views), {a.rounds} rounds interleaved in chunks "
        f"of {a.chunk} frames; OpenCV threads {cv2.getNumThreads()}, onnxruntime "
        f"{ort.threads if ort else '-'} intra-op threads\n"
        "| runtime | frames/s (median of rounds) | ms per view | x OpenCV |\n|---|---|---|---|"
    )
    base = statistics.median(per_round["opencv"])
    for r in dets:
        t = statistics.median(per_round[r])
        print(f"| {r} | {len(frames) / t:.1f} | {1000 * t / views:.1f} | {base / t:.2f} |")
    print(
        "\n| score floor | boxes OpenCV | boxes onnxruntime | unmatched | min IoU | "
        "max abs score difference |\n|---|---|---|---|---|---|"
    )
    for floor in (float(f) for f in a.floors.split(",")):
        agr = Agreement(floor=floor)
        for x, y in zip(out["opencv"], out["onnxruntime"]):
            agr.add(x.boxes, x.scores, y.boxes, y.scores)
        print(
            f"| {floor:g} | {agr.boxes_a} | {agr.boxes_b} | {agr.unmatched} | "
            f"{agr.min_iou:.4f} | {agr.max_dscore:.1e} |"
        )


if __name__ == "__main__":
    main()
