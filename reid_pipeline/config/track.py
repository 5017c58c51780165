"""Tracking and the crop quality filter (``tracker``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reid_pipeline.config.base import check


@dataclass(frozen=True)
class TrackerConfig:
    kind: Literal["bytetrack", "botsort"] = "bytetrack"
    track_buffer: int = 30  # frames a lost track is kept
    # the tracker settings below won on PETS09-S2L1 1-400 with SSD (issue 13 sweep,
    # reid_pipeline/bench/ssd_tracker_sweep.py: MOTA 67.2 / IDF1 55.2 by track vs 60.8 / 40.8 with
    # 0.8 / 0.25 / 0.25 / fused scores), and on the public detections match 0.9 gave the
    # best IDF1 by track too; the demo still matches 4/4 with them
    match_thresh: float = 0.9  # IoU distance below which a box may continue a track
    high_thresh: float = 0.3  # detections above: first association (ByteTrack)
    low_thresh: float = 0.1  # detections in (low, high): second association only
    new_track_thresh: float = 0.5  # an unmatched detection starts a track at this score
    fuse_score: bool = False  # weigh IoU by detection score when associating
    gmc: Literal["none", "sparseOptFlow", "orb", "ecc"] = "none"  # BoT-SORT camera motion comp.
    # crop quality filter
    # PETS09's people are 40-64 px tall at 480x360: 48 left many tracklets without one crop
    # (hence without identity); 32 gave IDF1 59.3 by identity vs 56.9 (issue 12)
    min_height: int = 32
    min_aspect: float = 1.2  # height / width
    max_aspect: float = 5.0
    min_conf: float = 0.3
    border_margin: int = 2  # px; boxes touching the frame border are truncated persons
    max_crops: int = 16  # crops kept per tracklet (spread over its life)
    # partial boxes: when a tracklet ends, drop crops whose box is shorter than this times
    # the track's usual height around that moment (80th percentile of the boxes within
    # +-partial_window frames): a detector window on the legs only or with the head cut off
    # describes half a person. 0 turns it off; at least half of the crops are always kept
    partial_ratio: float = 0.85
    partial_window: int = 5
    min_length: int = 3  # observations; shorter tracklets are noise
    provisional_every: int = 30  # frames: score long tracks provisionally this often

    def validate(self, p: str) -> None:
        check(self.track_buffer >= 1, f"{p}.track_buffer", "must be >= 1")
        check(0 < self.match_thresh <= 1, f"{p}.match_thresh", "must be in (0, 1]")
        check(
            0 <= self.low_thresh <= self.high_thresh <= 1,
            f"{p}.low_thresh",
            f"needs 0 <= low_thresh <= high_thresh <= 1, got {self.low_thresh}, {self.high_thresh}",
        )
        check(0 <= self.new_track_thresh <= 1, f"{p}.new_track_thresh", "must be in [0, 1]")
        check(self.border_margin >= 0, f"{p}.border_margin", "must be >= 0")
        check(self.min_height >= 8, f"{p}.min_height", f"must be >= 8, got {self.min_height}")
        check(
            0 < self.min_aspect <= self.max_aspect,
            f"{p}.min_aspect",
            "must be > 0 and <= max_aspect",
        )
        check(0 <= self.min_conf <= 1, f"{p}.min_conf", "must be in [0, 1]")
        check(self.max_crops >= 1, f"{p}.max_crops", "must be >= 1")
        check(0 <= self.partial_ratio < 1, f"{p}.partial_ratio", "must be in [0, 1)")
        check(self.partial_window >= 1, f"{p}.partial_window", "must be >= 1")
        check(self.min_length >= 1, f"{p}.min_length", "must be >= 1")
        check(self.provisional_every >= 1, f"{p}.provisional_every", "must be >= 1")
