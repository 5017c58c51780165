"""Ultralytics YOLO person detector, batched across cameras.

One ``predict`` call per ``cfg.batch`` frames, whatever camera they come from (DESIGN:
YOLO11n on an H100 does ~150 frames/s one by one and ~3,000 in batches of 16). Only the
person class is kept: the class named ``person`` (or ``pedestrian``) in the model's names,
or class 0 of a one-class model; NMS runs per class inside ultralytics. Precision is
ultralytics' ``quantize`` argument (16: fp16 on CUDA, 32: fp32), which replaced ``half``
(8.4: passing ``half`` logs a deprecation warning on every call).
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reid_pipeline.detect.base import FrameLike, images_of
from reid_pipeline.errors import CheckpointError, DetectorUnavailable
from reid_pipeline.types import Detections

log = logging.getLogger(__name__)

PERSON_NAMES = {"person", "pedestrian", "people", "human"}
# What ultralytics raises for missing, offline, corrupt or mismatched weights.
LOAD_ERRORS = (
    OSError,
    RuntimeError,
    TypeError,
    ValueError,
    KeyError,
    AttributeError,
    ImportError,
    EOFError,
    AssertionError,
    pickle.UnpicklingError,
)


def person_classes(names: dict[int, str] | Sequence[str]) -> list[int]:
    """Class ids meaning 'person' in a model's class names.

    COCO models call class 0 ``person``; a custom one-class model may call it anything. An
    architecture built from YAML has names ``'0'..'79'`` (COCO order), so 0 is person too.
    """
    items = list(names.items()) if isinstance(names, dict) else list(enumerate(names))
    ids = [int(i) for i, n in items if str(n).strip().lower() in PERSON_NAMES]
    if ids:
        return ids
    if len(items) > 1 and not all(str(n).isdigit() for _, n in items):
        log.warning(
            "YOLO model has no class named 'person' (classes: %s); using class 0",
            ", ".join(str(n) for _, n in items[:10]),
        )
    return [0]


def load_yolo(weights: str) -> Any:
    """``YOLO(weights)``, with failures split into 'cannot be had' and 'is broken'.

    Note: ultralytics ``.pt`` files are pickled models, which ultralytics itself unpickles;
    use only weights from a source you trust (our own checkpoints use weights_only loading).
    """
    from ultralytics import YOLO

    path = Path(weights)
    if path.is_file():
        try:
            return YOLO(str(path))
        except LOAD_ERRORS as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"YOLO weights {weights!r} cannot be loaded: {first}") from None
    if path.suffix in (".yaml", ".yml"):  # an architecture: random weights (tests, benchmarks)
        try:
            return YOLO(weights)
        except LOAD_ERRORS as e:
            raise CheckpointError(f"YOLO architecture {weights!r} cannot be built: {e}") from None
    try:
        return YOLO(weights)  # a model name ultralytics may find in its cache or download
    except LOAD_ERRORS as e:
        why = "offline or unknown model name" if not path.parent.parts else "no such file"
        raise DetectorUnavailable(
            f"YOLO weights {weights!r} cannot be had ({why}: {type(e).__name__})"
        ) from None


class YoloDetector:
    """Persons from an ultralytics YOLO model; ``detect`` takes frames of many cameras."""

    name = "yolo"

    def __init__(self, cfg: Any, device: Any = "cpu") -> None:
        import torch

        self.cfg = cfg
        self.device = torch.device(str(device))
        self.model = load_yolo(cfg.weights)
        self.classes = person_classes(self.model.names)
        self.half = bool(cfg.half) and self.device.type == "cuda"
        self.name = f"yolo:{Path(cfg.weights).name}"
        log.info(
            "detector: YOLO %s on %s (person classes %s, batch %d, imgsz %d%s)",
            cfg.weights,
            self.device,
            self.classes,
            cfg.batch,
            cfg.imgsz,
            ", fp16" if self.half else "",
        )

    def detect(self, frames: Sequence[FrameLike]) -> list[Detections]:
        images = images_of(frames)
        out: list[Detections] = []
        bs = self.cfg.batch
        for start in range(0, len(images), bs):
            chunk = images[start : start + bs]
            results = self.model.predict(
                chunk,
                conf=self.cfg.conf,
                iou=self.cfg.iou,
                imgsz=self.cfg.imgsz,
                classes=self.classes,
                quantize=16 if self.half else 32,
                device=self.device,
                verbose=False,
                batch=len(chunk),
            )
            for r in results:
                b = r.boxes
                out.append(
                    to_detections(
                        b.xyxy.cpu().numpy(),
                        b.conf.cpu().numpy(),
                        b.cls.cpu().numpy(),
                        self.classes,
                        self.cfg.conf,
                    )
                )
        return out


def to_detections(
    xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray, keep: Sequence[int], min_conf: float
) -> Detections:
    """Keep person-class boxes at or above ``min_conf`` (a guard beyond ultralytics' own
    ``classes=`` filter, so a model ignoring it still yields persons only)."""
    mask = np.isin(cls.astype(np.int64), np.asarray(keep, np.int64)) & (conf >= min_conf)
    return Detections(xyxy[mask], conf[mask])
