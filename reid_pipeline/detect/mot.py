"""Public detections from MOTChallenge ``det.txt`` files (one file per camera).

Format, one detection per line: ``frame,id,x,y,w,h,conf[,x,y,z]`` with 1-based frames,
top-left ``x,y`` and size ``w,h`` in pixels (``id`` is -1 for detections). Frame ``f`` of
the file is our ``Frame.index == f - 1``. Scores outside [0, 1] (MOT17's DPM detections
are raw SVM margins) are squashed with a logistic so every detector's scores live in
(0, 1) and the tracker thresholds mean the same thing; in-range scores are kept as is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reid_pipeline.detect.base import FrameLike
from reid_pipeline.errors import ConfigError, InputError
from reid_pipeline.types import Detections, Frame

log = logging.getLogger(__name__)


def load_det_txt(path: str | Path, min_score: float | None = None) -> dict[int, Detections]:
    """Read one det.txt into ``{0-based frame index: Detections}``; rows scoring below
    ``min_score`` (the file's own units) are dropped."""
    p = Path(path)
    name = repr(str(p))
    if not p.is_file():
        raise InputError(f"MOT detections file {name} does not exist")
    rows: list[list[float]] = []
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"MOT detections file {name} cannot be read: {e}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(" ", "").split(",") if "," in line else line.split()
        try:
            vals = [float(v) for v in parts[:7]]
        except ValueError:
            raise InputError(
                f"MOT detections file {name}, line {lineno}: not numbers: {line[:60]!r}"
            ) from None
        if len(vals) < 7:
            raise InputError(
                f"MOT detections file {name}, line {lineno}: expected "
                f"frame,id,x,y,w,h,conf, got {len(vals)} values"
            )
        if vals[0] < 1 or vals[0] != int(vals[0]):
            raise InputError(
                f"MOT detections file {name}, line {lineno}: frame must be a "
                f"1-based integer, got {parts[0]}"
            )
        rows.append(vals)
    if not rows:
        log.warning("MOT detections file %s has no detections", name)
        return {}
    a = np.asarray(rows, np.float64)
    if min_score is not None:
        a = a[a[:, 6] >= min_score]
        if not len(a):
            log.warning("MOT detections file %s has no detections scoring >= %s", name, min_score)
            return {}
    conf = a[:, 6]
    if conf.min() < 0 or conf.max() > 1:
        conf = 1.0 / (1.0 + np.exp(-conf))
    boxes = np.stack([a[:, 2], a[:, 3], a[:, 2] + a[:, 4], a[:, 3] + a[:, 5]], axis=1)
    frames = a[:, 0].astype(np.int64) - 1
    out: dict[int, Detections] = {}
    order = np.argsort(frames, kind="stable")
    frames, boxes, conf = frames[order], boxes[order], conf[order]
    cuts = np.flatnonzero(np.diff(frames)) + 1
    for f_idx, b, c in zip(np.split(frames, cuts), np.split(boxes, cuts), np.split(conf, cuts)):
        out[int(f_idx[0])] = Detections(b, c)
    return out


class MotDetector:
    """Looks up each frame's public detections by camera and frame index."""

    name = "mot"

    def __init__(self, cfg: Any, cameras: Sequence[str] | None = None) -> None:
        files = list(cfg.mot_det)
        if not files:
            raise ConfigError(
                "config key 'detector.mot_det': detector.kind=mot needs one det.txt per camera"
            )
        if cameras is None:
            if len(files) != 1:
                raise ConfigError(
                    f"config key 'detector.mot_det': {len(files)} files given but "
                    "the cameras they belong to are unknown"
                )
            self._any: dict[int, Detections] | None = load_det_txt(files[0], cfg.mot_min_score)
            self._by_camera: dict[str, dict[int, Detections]] = {}
        else:
            if len(files) != len(cameras):
                raise ConfigError(
                    f"config key 'detector.mot_det': {len(files)} det.txt file(s) "
                    f"for {len(cameras)} camera(s); give one per camera, in order"
                )
            self._any = None
            self._by_camera = {
                cam: load_det_txt(f, cfg.mot_min_score) for cam, f in zip(cameras, files)
            }
        self.conf = float(cfg.conf)

    def detect(self, frames: Sequence[FrameLike]) -> list[Detections]:
        """Bare arrays are refused (``TypeError``): the lookup needs camera and index."""
        out = []
        for f in frames:
            if not isinstance(f, Frame):
                raise TypeError("MotDetector.detect needs Frame records (camera and index)")
            table = self._any if self._any is not None else self._by_camera.get(f.camera)
            if table is None:
                raise ConfigError(
                    f"config key 'detector.mot_det': no det.txt for camera {f.camera!r}"
                )
            d = table.get(f.index)
            if d is None:
                out.append(Detections.empty())
            else:
                keep = d.scores >= self.conf
                out.append(Detections(d.boxes[keep], d.scores[keep]))
        return out
