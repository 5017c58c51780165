"""Person detectors behind one protocol, built by name from the config.

Protocol: ``detector.detect(frames) -> list[Detections]``, one ``Detections`` (persons only,
``xyxy`` float32 in the frame's pixels, scores in (0, 1]) per input, in input order.
``frames`` is a list of ``reid_pipeline.types.Frame`` - frames of *many* cameras in one
call, so a GPU detector runs one batch for all streams. Image-only detectors (YOLO, HOG)
also accept bare BGR arrays; the MOTChallenge detector needs ``Frame`` (it looks boxes up
by camera and frame index).

``build_detector(cfg.detector, device, cameras=...)`` picks the implementation:

* ``yolo``  - ultralytics YOLO, any weights file or model name (``yolo11n.pt``, a custom
  ``best.pt``, an architecture ``.yaml`` for tests); batched, person class only, fp16 on CUDA;
* ``hog``   - OpenCV's HOG + linear SVM people detector: no download, CPU, real but weak;
* ``mot``   - public detections from MOTChallenge ``det.txt`` files, one per camera;
* ``auto``  - YOLO when its weights can be had, else HOG.

When YOLO weights cannot be had (offline, no such file) and ``fallback_to_hog`` is true, a
WARNING names the weights and HOG is used; with it false, ``DetectorUnavailable`` is raised.
A weights file that exists but does not load is a ``CheckpointError`` either way: falling
back would hide a broken file the user explicitly gave.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from reid_pipeline.errors import DetectorUnavailable
from reid_pipeline.types import Detections, Frame

log = logging.getLogger(__name__)

FrameLike = Frame | np.ndarray


@runtime_checkable
class Detector(Protocol):
    """Anything that turns a batch of frames into per-frame person detections."""

    name: str

    def detect(self, frames: Sequence[FrameLike]) -> list[Detections]: ...


def images_of(frames: Sequence[FrameLike]) -> list[np.ndarray]:
    """The BGR images of a batch that may mix ``Frame`` records and bare arrays."""
    return [f.image if isinstance(f, Frame) else f for f in frames]


def build_detector(cfg: Any, device: Any = "cpu", cameras: Sequence[str] | None = None
                   ) -> Detector:
    """Build the detector ``cfg.kind`` names (``cfg`` is ``config.DetectorConfig``).

    ``cameras`` (in command-line order) pairs ``cfg.mot_det`` files with cameras; only the
    ``mot`` kind needs it.
    """
    kind = cfg.kind
    if kind == "hog":
        from reid_pipeline.detect.hog import HogDetector

        return HogDetector(cfg)
    if kind == "mot":
        from reid_pipeline.detect.mot import MotDetector

        return MotDetector(cfg, cameras)
    if kind in ("yolo", "auto"):
        from reid_pipeline.detect.yolo import YoloDetector

        try:
            return YoloDetector(cfg, device)
        except DetectorUnavailable as e:
            if not cfg.fallback_to_hog:
                raise
            from reid_pipeline.detect.hog import HogDetector

            log.warning("%s; falling back to the OpenCV HOG person detector (weaker: expect "
                        "missed and loose boxes). Put the weights file in place, or set "
                        "detector.kind=hog to silence this.", e)
            return HogDetector(cfg)
    from reid_pipeline.errors import ConfigError

    raise ConfigError(f"config key 'detector.kind': unknown detector {kind!r}")


__all__ = ["Detector", "FrameLike", "build_detector", "images_of"]
