"""Plain records passed between stages (no stage imports another stage's internals).

Boxes are ``xyxy`` in pixel coordinates of the frame they came from, float32.
Images are BGR ``uint8`` arrays of shape (H, W, 3), as OpenCV gives them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Frame:
    """One decoded frame of one camera."""

    camera: str
    index: int  # 0-based frame number within the source
    timestamp: float  # seconds; for files: index / fps (+ the source's start time if known)
    image: np.ndarray


@dataclass
class Detections:
    """Person detections of one frame (the supervision-style small container)."""

    boxes: np.ndarray  # (N, 4) float32 xyxy
    scores: np.ndarray  # (N,) float32

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
        if len(self.boxes) != len(self.scores):
            raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))


@dataclass
class TrackedBox:
    """A detection after within-camera tracking: one observation of one track."""

    camera: str
    frame_index: int
    timestamp: float
    bbox: tuple[float, float, float, float]  # xyxy
    confidence: float
    track_id: int


@dataclass
class Tracklet:
    """A within-camera track: its observations and the quality-filtered crops kept for ReID."""

    camera: str
    track_id: int
    boxes: list[TrackedBox] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)  # BGR crops that passed the filter
    crop_frames: list[int] = field(default_factory=list)  # frame index of each kept crop
    finished: bool = False

    @property
    def first_frame(self) -> int:
        return self.boxes[0].frame_index

    @property
    def last_frame(self) -> int:
        return self.boxes[-1].frame_index

    @property
    def first_seen(self) -> float:
        return self.boxes[0].timestamp

    @property
    def last_seen(self) -> float:
        return self.boxes[-1].timestamp


@dataclass(frozen=True)
class ImageRecord:
    """One labelled image of a ReID dataset (torchreid's (path, pid, camid))."""

    path: str
    pid: int  # -1 junk, 0 distractor on Market-1501
    camid: int  # 0-based


@dataclass
class Sighting:
    """One output row: a tracked box with the global identity it was assigned."""

    camera: str
    frame: int
    timestamp: float
    bbox: tuple[float, float, float, float]
    confidence: float
    track: int
    identity: int | None
    score: float | None
    name: str | None = None  # the identity's name, if it has one
    tracklet: int | None = None  # the gallery's tracklet row id
