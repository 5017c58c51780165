"""Inputs: recorded videos and frame folders (``input``), live cameras (``stream``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from reid_pipeline.config.base import check, frame_range


@dataclass(frozen=True)
class InputConfig:
    """How recorded inputs are read (``reid process`` / ``reid demo``)."""

    # frames per second for timestamps: 0 = the video's own rate (folders of frames: 10)
    fps: float = 0.0
    # a camera whose video breaks off mid-way (truncated/corrupt): "continue" ends that camera
    # there (everything decoded before is kept) and lets the others finish, then the run
    # fails naming it; "stop" ends the whole run at once
    on_error: Literal["continue", "stop"] = "continue"
    # "A:B": process only frames A..B of every input (1-based, inclusive); "": all
    frames: str = ""

    def validate(self, p: str) -> None:
        check(
            self.fps == 0 or 0.1 <= self.fps <= 1000,
            f"{p}.fps",
            f"must be 0 (the video's own rate) or in [0.1, 1000], got {self.fps}",
        )
        frame_range(self.frames, f"{p}.frames")


@dataclass(frozen=True)
class StreamConfig:
    queue_size: int = 4  # frames buffered per live camera; older ones are dropped
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    open_timeout_s: float = 10.0
    read_timeout_s: float = 10.0
    events: str = ""  # JSONL path; empty: <out>/events.jsonl
    watch: list[int] = field(default_factory=list)
    status_every_s: float = 5.0
    mode: Literal["live", "recorded"] = "live"  # live drops the oldest frames; recorded none
    transport: Literal["tcp", "udp"] = "tcp"  # RTSP transport (FFmpeg rtsp_transport)
    probe_s: float = 1.0  # stream analysis before the first frame; longer for slow cameras
    give_up_after: int = 0  # failed connection attempts in a row before 'failed'; 0: never
    batch_wait_s: float = 0.05  # max wait for more cameras' frames before a step runs
    duration_s: float = 0.0  # stop after this many seconds (0: until SIGINT/SIGTERM)
    frames_per_step: int = 1  # per camera and step; live takes the newest (1: lowest lag)
    provisional_every: int = 5  # live: score a growing tracklet every N processed frames

    def validate(self, p: str) -> None:
        check(self.queue_size >= 1, f"{p}.queue_size", "must be >= 1")
        check(
            0 < self.reconnect_initial_s <= self.reconnect_max_s,
            f"{p}.reconnect_initial_s",
            "must be > 0 and <= reconnect_max_s",
        )
        check(self.open_timeout_s > 0, f"{p}.open_timeout_s", "must be > 0")
        check(self.read_timeout_s > 0, f"{p}.read_timeout_s", "must be > 0")
        check(
            all(i >= 0 for i in self.watch),
            f"{p}.watch",
            f"identity ids are >= 0, got {self.watch}",
        )
        check(self.status_every_s >= 0, f"{p}.status_every_s", "must be >= 0 (0: no status)")
        check(
            0.05 <= self.probe_s <= 30, f"{p}.probe_s", f"must be in [0.05, 30], got {self.probe_s}"
        )
        check(self.give_up_after >= 0, f"{p}.give_up_after", "must be >= 0 (0: retry for ever)")
        check(0 <= self.batch_wait_s <= 5, f"{p}.batch_wait_s", "must be in [0, 5]")
        check(self.duration_s >= 0, f"{p}.duration_s", "must be >= 0 (0: run until stopped)")
        check(self.frames_per_step >= 1, f"{p}.frames_per_step", "must be >= 1")
        check(self.provisional_every >= 1, f"{p}.provisional_every", "must be >= 1")
