"""OpenCV HOG + linear SVM people detector (Dalal & Triggs): the offline fallback.

It ships inside opencv-python, so it works with no download, on the CPU. Its window is
64x128 with the person ~96 px tall inside, so:

* the frame is resized by ``96 / hog_min_height``: persons down to ``hog_min_height`` px
  reach the window's size (upscale when < 96), and big frames with tall persons can be
  shrunk for speed (``hog_min_height`` > 96);
* a replicated border of ``hog_pad`` x frame height is added, because a person filling the
  frame height leaves no room for the window's margins and is otherwise never found;
* the returned box is the window minus its margins (1/8 of the height above and below,
  3/16 of the width each side), so boxes hug the person like a CNN detector's do.

Scores: the SVM margin ``w`` (0 at the decision boundary, ~1-3 for clear persons) maps to
``1 - exp(-w)`` in (0, 1): monotone, 0.5 at w = 0.69. OpenCV's own grouping of overlapping
windows runs first, then NMS at ``iou`` plus containment suppression (a looser window
around, or a part window inside, an already found person), then the ``conf`` threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from reid_pipeline.detect.base import FrameLike, images_of
from reid_pipeline.types import Detections

log = logging.getLogger(__name__)

WINDOW_PERSON_HEIGHT = 96  # px of person inside the 64x128 detection window
MARGIN_Y = 1 / 8  # fraction of the window height above the head / below the feet
MARGIN_X = 3 / 16  # persons are ~2.4x as tall as wide; the window is 2x
CONTAIN_THRESH = 0.8  # boxes sharing this much of the smaller one are one person


def nms(
    boxes: np.ndarray, scores: np.ndarray, iou: float, contain: float = CONTAIN_THRESH
) -> np.ndarray:
    """Indices kept by greedy NMS (best score first), then containment suppression: a box
    is dropped when it and a better-scoring kept box overlap by ``contain`` or more of the
    smaller one's area. HOG often fires a second window around a found person - looser,
    or on the legs only - whose IoU is too low for NMS; left in, it becomes a second
    track of the same person. (An occluded person standing inside a nearer one's box is
    lost with it; HOG rarely finds those anyway.)"""
    if len(boxes) == 0:
        return np.zeros((0,), np.int64)
    xywh = [[float(x1), float(y1), float(x2 - x1), float(y2 - y1)] for x1, y1, x2, y2 in boxes]
    keep = np.asarray(
        cv2.dnn.NMSBoxes(xywh, scores.astype(float).tolist(), 0.0, float(iou)), np.int64
    ).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind="stable")]
    out: list[int] = []
    for i in keep:
        b = boxes[i]
        inside = False
        for j in out:
            a = boxes[j]
            iw = min(a[2], b[2]) - max(a[0], b[0])
            ih = min(a[3], b[3]) - max(a[1], b[1])
            small = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
            if iw > 0 and ih > 0 and iw * ih >= contain * small:
                inside = True
                break
        if not inside:
            out.append(int(i))
    return np.asarray(out, np.int64)


class HogDetector:
    """Persons from OpenCV's default HOG people detector (see the module doc)."""

    name = "hog"

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.hog = cv2.HOGDescriptor()
        # the stubs say Sequence[float]; it is a float32 array, which setSVMDetector takes
        people = np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32)
        self.hog.setSVMDetector(people)
        self.resize = WINDOW_PERSON_HEIGHT / float(cfg.hog_min_height)
        self.pad = float(getattr(cfg, "hog_pad", 0.15))
        log.info(
            "detector: OpenCV HOG (persons >= %d px, resize x%.2f, pad %.2f, scale %.2f)",
            cfg.hog_min_height,
            self.resize,
            self.pad,
            cfg.hog_scale,
        )

    def detect(self, frames: Sequence[FrameLike]) -> list[Detections]:
        return [self.detect_image(img) for img in images_of(frames)]

    def detect_image(self, image: np.ndarray) -> Detections:
        h, w = image.shape[:2]
        s = self.resize
        img = image
        if s != 1.0:
            interp = cv2.INTER_LINEAR if s > 1.0 else cv2.INTER_AREA
            img = cv2.resize(
                image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp
            )
        p = round(self.pad * img.shape[0])
        # the frame must at least hold one 64x128 window
        py = max(p, (128 - img.shape[0] + 1) // 2)
        px = max(p, (64 - img.shape[1] + 1) // 2)
        if py or px:
            img = cv2.copyMakeBorder(img, py, py, px, px, cv2.BORDER_REPLICATE)
        rects, weights = self.hog.detectMultiScale(
            img, hitThreshold=0.0, winStride=(8, 8), padding=(8, 8), scale=self.cfg.hog_scale
        )
        if len(rects) == 0:
            return Detections.empty()
        r = np.asarray(rects, np.float32).reshape(-1, 4)
        wts = np.asarray(weights, np.float32).reshape(-1)
        x1 = r[:, 0] + r[:, 2] * MARGIN_X
        x2 = r[:, 0] + r[:, 2] * (1 - MARGIN_X)
        y1 = r[:, 1] + r[:, 3] * MARGIN_Y
        y2 = r[:, 1] + r[:, 3] * (1 - MARGIN_Y)
        boxes = np.stack([(x1 - px) / s, (y1 - py) / s, (x2 - px) / s, (y2 - py) / s], axis=1)
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        scores = hog_score(wts)
        ok = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, self.cfg.iou)
        boxes, scores = boxes[keep], scores[keep]
        good = scores >= self.cfg.conf
        return Detections(boxes[good], scores[good])


def hog_score(weights: np.ndarray) -> np.ndarray:
    """SVM margin -> (0, 1): ``1 - exp(-w)``, negative margins clipped to 0."""
    return (1.0 - np.exp(-np.clip(weights, 0.0, None))).astype(np.float32)
