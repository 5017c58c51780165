"""Within-camera tracking into tracklets, with the crop quality filter for ReID.

``CameraTracker`` feeds our ``Detections`` to ultralytics' ``BYTETracker`` (or ``BOTSORT``
without ReID; camera-motion compensation per ``tracker.gmc``, off by default for fixed
cameras) and turns its tracks into ``Tracklet`` records:

* every tracked box of a frame becomes a ``TrackedBox`` (the *detection's* box and score,
  not the Kalman estimate: crops and sightings show what was actually seen);
* crops that pass the quality filter (tall enough, plausible person aspect, confident,
  not cut by the frame border) are candidates; at most ``max_crops`` are kept, spread
  evenly over the tracklet's whole life by stride thinning: keep every ``stride``-th
  candidate; when full, drop every other kept crop and double the stride. Deterministic,
  O(1) per box, and the crops sample the whole walk, not its first second;
* a tracklet finishes when ultralytics removes its track (lost for more than
  ``track_buffer`` updates) or at ``flush()``; finished tracklets with at least
  ``min_length`` boxes are returned by ``pop_finished()`` - also when no crop passed the
  filter (``crops == []``), so sightings are still recorded without an identity.

Time is counted in ``update`` calls (one per frame fed), as ultralytics does; a source that
skips undecodable frames therefore shortens the buffer by as many frames.

**Detection stride** (``every`` > 1, ``detector.every``): only every N-th frame is detected
and fed to ``update``; the frames between go to ``skip``. The tracker then links detections
N frames apart (its buffer is ``track_buffer / N`` updates, the same time), and a track seen
at two consecutive detected frames gets linearly interpolated boxes on the skipped frames
between (score: the lower of the two), so sightings stay per frame. Crops come from
detected frames only.
"""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace
from typing import Any

import numpy as np

from reid_pipeline.types import Detections, Frame, TrackedBox, Tracklet

log = logging.getLogger(__name__)


class _DetView:
    """The numpy 'Results-like' view ultralytics' trackers index and read."""

    __slots__ = ("cls", "conf", "xywh", "xyxy")

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray) -> None:
        self.xyxy = xyxy
        self.conf = conf
        self.cls = np.zeros(len(conf), np.float32)
        wh = xyxy[:, 2:4] - xyxy[:, 0:2]
        self.xywh = np.concatenate([xyxy[:, 0:2] + wh / 2, wh], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, mask: Any) -> _DetView:
        return _DetView(self.xyxy[mask], self.conf[mask])


class _Builder:
    """A tracklet under construction plus its crop-thinning state."""

    __slots__ = ("candidates", "stride", "tracklet")

    def __init__(self, tracklet: Tracklet) -> None:
        self.tracklet = tracklet
        self.candidates = 0  # quality-passing observations seen so far
        self.stride = 1


def tracker_args(cfg: Any) -> SimpleNamespace:
    """The ultralytics tracker namespace (bytetrack.yaml / botsort.yaml keys) from our config."""
    return SimpleNamespace(
        tracker_type=cfg.kind,
        track_high_thresh=cfg.high_thresh,
        track_low_thresh=cfg.low_thresh,
        new_track_thresh=cfg.new_track_thresh,
        track_buffer=cfg.track_buffer,
        match_thresh=cfg.match_thresh,
        fuse_score=cfg.fuse_score,
        gmc_method=cfg.gmc,
        proximity_thresh=0.5,
        appearance_thresh=0.8,
        with_reid=False,
        model="auto",
    )


class CameraTracker:
    """One camera's tracker; see the module doc. Not thread-safe: one per camera."""

    def __init__(
        self,
        camera: str,
        cfg: Any,
        frame_rate: float = 10.0,
        first_track_id: int = 1,
        every: int = 1,
    ) -> None:
        """``first_track_id`` lets a resumed run continue a camera's track numbering, so
        track ids stay unique per camera across interrupted and resumed runs; ``every``: the
        detection stride (see the module doc)."""
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker

        self.camera = camera
        self.cfg = cfg
        self.frame_rate = float(frame_rate)
        self.every = max(1, int(every))
        self._skipped: list[tuple[int, float]] = []  # (index, timestamp) since the last update
        args = tracker_args(cfg)
        if self.every > 1:  # the same buffer in time: it counts updates, one per N frames
            args.track_buffer = max(1, -(-int(cfg.track_buffer) // self.every))
        self._tracker = BOTSORT(args) if cfg.kind == "botsort" else BYTETracker(args)
        self._tracker._ids = iter(range(int(first_track_id), sys.maxsize))
        self._building: dict[int, _Builder] = {}
        self._finished: list[Tracklet] = []
        self.dropped_short = 0  # finished tracks shorter than min_length (noise)

    @property
    def buffer_updates(self) -> int:
        """How many updates a lost track is kept (``track_buffer`` frames / the stride)."""
        return int(self._tracker.max_frames_lost)

    # ------------------------------------------------------------------ per frame

    def update(self, frame: Frame, dets: Detections) -> list[TrackedBox]:
        """Advance one frame; returns this frame's tracked boxes (matched to a detection)."""
        img = frame.image
        h, w = img.shape[:2]
        view = _DetView(dets.boxes, dets.scores)
        out = self._tracker.update(view, img)
        boxes: list[TrackedBox] = []
        if len(out):
            cfg = self.cfg
            m = cfg.border_margin
            for row in out:
                tid = int(row[4])
                di = int(row[7])
                x1, y1, x2, y2 = (float(v) for v in dets.boxes[di])
                conf = float(dets.scores[di])
                tb = TrackedBox(
                    self.camera, frame.index, frame.timestamp, (x1, y1, x2, y2), conf, tid
                )
                boxes.append(tb)
                b = self._building.get(tid)
                if b is None:
                    b = self._building[tid] = _Builder(Tracklet(self.camera, tid))
                elif self._skipped:
                    b.tracklet.boxes.extend(self._between(b.tracklet.boxes[-1], tb))
                b.tracklet.boxes.append(tb)
                bh, bw = y2 - y1, x2 - x1
                if (
                    bh >= cfg.min_height
                    and bw > 0
                    and cfg.min_aspect <= bh / bw <= cfg.max_aspect
                    and conf >= cfg.min_conf
                    and x1 >= m
                    and y1 >= m
                    and x2 <= w - m
                    and y2 <= h - m
                ):
                    self._offer_crop(b, img, frame.index, x1, y1, x2, y2)
        self._skipped.clear()
        self._collect_removed()
        return boxes

    def skip(self, frame: Frame) -> None:
        """A frame the detector does not look at (detection stride): its boxes are
        interpolated once the next detected frame links the tracks."""
        self._skipped.append((frame.index, frame.timestamp))

    def _between(self, prev: TrackedBox, cur: TrackedBox) -> list[TrackedBox]:
        """Boxes of one track on the skipped frames between two detections of it, if the
        two are at consecutive detected frames (no interpolation across a longer gap)."""
        span = cur.frame_index - prev.frame_index
        if span <= 1 or span > self.every:
            return []
        a, c = np.asarray(prev.bbox), np.asarray(cur.bbox)
        conf = min(prev.confidence, cur.confidence)
        out = []
        for index, ts in self._skipped:
            if prev.frame_index < index < cur.frame_index:
                t = (index - prev.frame_index) / span
                x1, y1, x2, y2 = (float(v) for v in a + (c - a) * t)
                out.append(TrackedBox(self.camera, index, ts, (x1, y1, x2, y2), conf, cur.track_id))
        return out

    def _offer_crop(
        self, b: _Builder, img: np.ndarray, index: int, x1: float, y1: float, x2: float, y2: float
    ) -> None:
        k = b.candidates
        b.candidates += 1
        if k % b.stride:
            return
        t = b.tracklet
        if len(t.crops) >= self.cfg.max_crops:
            # thin: keep every other crop, take every 2*stride-th candidate from now on
            t.crops[:] = t.crops[::2]
            t.crop_frames[:] = t.crop_frames[::2]
            b.stride *= 2
            if k % b.stride:
                return
        crop = img[int(y1) : int(np.ceil(y2)), int(x1) : int(np.ceil(x2))].copy()
        t.crops.append(crop)
        t.crop_frames.append(index)

    def _collect_removed(self) -> None:
        """Finish tracklets whose track ultralytics no longer holds (removed, or dropped as
        a duplicate of another track)."""
        tr = self._tracker
        alive = {t.track_id for t in tr.tracked_stracks}
        alive.update(t.track_id for t in tr.lost_stracks)
        for tid in [tid for tid in self._building if tid not in alive]:
            self._finish(tid)

    def _finish(self, tid: int) -> None:
        t = self._building.pop(tid).tracklet
        t.finished = True
        if self.cfg.partial_ratio > 0 and len(t.crops) > 1:
            keep = partial_crop_mask(t, self.cfg.partial_ratio, self.cfg.partial_window)
            if not keep.all():
                t.crops[:] = [c for c, k in zip(t.crops, keep) if k]
                t.crop_frames[:] = [f for f, k in zip(t.crop_frames, keep) if k]
        if len(t.boxes) >= self.cfg.min_length:
            self._finished.append(t)
        else:
            self.dropped_short += 1

    # ------------------------------------------------------------------ tracklets

    def pop_finished(self) -> list[Tracklet]:
        """Tracklets finished since the last call (track removed, >= min_length boxes)."""
        done, self._finished = self._finished, []
        return done

    def active(self) -> list[Tracklet]:
        """Tracklets still being built (live objects: they grow with later updates); for
        provisional matching of long tracks."""
        return [b.tracklet for b in self._building.values()]

    def flush(self) -> list[Tracklet]:
        """End of stream: finish every tracklet and return all not yet popped."""
        for tid in list(self._building):
            self._finish(tid)
        tr = self._tracker  # forget the tracks, keep the id counter (ids stay unique)
        tr.tracked_stracks, tr.lost_stracks, tr.removed_stracks = [], [], []
        return self.pop_finished()


def partial_crop_mask(t: Tracklet, ratio: float, window: int) -> np.ndarray:
    """Which of ``t``'s crops to keep: False for a box shorter than ``ratio`` x the 80th
    percentile of the track's box heights within +-``window`` frames (a partial detection:
    legs only, head cut off). Heights are compared locally, so a person walking towards the
    camera is not mistaken for a partial one. At least half the crops (the tallest relative
    to their neighbourhood) are always kept."""
    frames = np.array([b.frame_index for b in t.boxes])
    heights = np.array([b.bbox[3] - b.bbox[1] for b in t.boxes], np.float64)
    rel = np.ones(len(t.crop_frames))
    for k, f in enumerate(t.crop_frames):
        i = int(np.searchsorted(frames, f))
        if i >= len(frames) or frames[i] != f:
            continue
        near = heights[(frames >= f - window) & (frames <= f + window)]
        rel[k] = heights[i] / max(1e-6, float(np.percentile(near, 80)))
    keep = rel >= ratio
    need = (len(rel) + 1) // 2
    if keep.sum() < need:
        keep = np.zeros(len(rel), bool)
        keep[np.argsort(-rel, kind="stable")[:need]] = True
    return keep


__all__ = ["CameraTracker", "partial_crop_mask", "tracker_args"]
