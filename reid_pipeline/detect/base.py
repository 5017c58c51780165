"""The detector protocol and what every implementation shares (no implementation here).

``detector.detect(frames) -> list[Detections]``: one ``Detections`` (persons only, ``xyxy``
float32 in the frame's pixels, scores in (0, 1]) per input, in input order. ``frames`` are
``reid_pipeline.types.Frame`` records of *many* cameras in one call, so a GPU detector runs
one batch for all streams; image-only detectors also accept bare BGR arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from reid_pipeline.types import Detections, Frame

FrameLike = Frame | np.ndarray


@runtime_checkable
class Detector(Protocol):
    """Anything that turns a batch of frames into per-frame person detections."""

    name: str

    def detect(self, frames: Sequence[FrameLike]) -> list[Detections]: ...


def images_of(frames: Sequence[FrameLike]) -> list[np.ndarray]:
    """The BGR images of a batch that may mix ``Frame`` records and bare arrays."""
    return [f.image if isinstance(f, Frame) else f for f in frames]


__all__ = ["Detector", "FrameLike", "images_of"]
