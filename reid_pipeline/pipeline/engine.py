"""The recorded-footage pipeline: N sources -> detect -> track -> embed -> match -> gallery.

Why it is shaped like this:

* **One detector call per step for all cameras.** Each step takes up to
  ``detector.batch // cameras`` frames from every camera still running and sends them to the
  detector together; the accelerator sees one batch instead of N small ones.
* **One embedder call per step.** All crops of every tracklet that finished (or is scored
  provisionally) in a step, from every camera, are embedded in one call.
* **Commit invariant, for resume and idempotency.** For each source the gallery stores
  ``frames_processed`` = R: everything committed lies strictly before R, everything from R
  on is recomputed on resume. R is the first frame of the oldest track still in flight, so
  a finished tracklet is only committed once it ends before R (it is held back until
  then). A restart at R reproduces the in-flight tracks, with track ids from the gallery's
  ``next_track_id`` so they never collide with committed ones. A source whose content
  (fingerprint) is already done is skipped: re-running the same video adds nothing.
* **Ctrl-C** ends every open track where it is, commits the in-flight batch with R = the
  next unprocessed frame, and re-raises ``KeyboardInterrupt``: the database is consistent
  and the same command resumes.
* **Provisional scoring.** A long track is matched every ``tracker.provisional_every``
  frames from the crops it has so far; the result is kept in memory (``provisional``) and
  in the progress logs, while only the final, finished tracklet is written, which keeps
  the commit invariant simple.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reid_pipeline.config import Config
from reid_pipeline.errors import ConfigError, SourceError
from reid_pipeline.types import Frame, Tracklet
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)


@dataclass
class CameraInput:
    """One input of a run: what to read and which camera it is."""

    spec: str
    camera: str


def open_input(inp: CameraInput, cfg: Config | None = None, start_frame: int = 0) -> Any:
    """Open one input with the run's settings (``input.fps``, ``input.frames``; ``stream``
    for URLs)."""
    from reid_pipeline.config import frame_range
    from reid_pipeline.sources import open_source

    fps = cfg.input.fps if cfg is not None and cfg.input.fps > 0 else None

    def opener(start: int) -> Any:
        return open_source(inp.spec, inp.camera, cfg.stream if cfg is not None else None,
                           start_frame=start, fps=fps)

    part = frame_range(cfg.input.frames, "input.frames") if cfg is not None else None
    if part is None:
        return opener(start_frame)
    from reid_pipeline.sources.range import FrameRangeSource

    return FrameRangeSource(opener, *part, start_frame=start_frame)


@dataclass
class CameraSummary:
    camera: str
    uri: str
    frames: int = 0  # frames processed in this run
    skipped: bool = False  # already fully processed earlier (idempotent re-run)
    resumed_from: int = 0
    tracklets: int = 0
    fps: float = 0.0
    frame_count: int | None = None
    source_id: int | None = None


@dataclass
class RunSummary:
    """What a run did, for the CLI and the benchmarks."""

    cameras: list[CameraSummary] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    failures: dict[str, str] = field(default_factory=dict)  # camera -> why its input broke off

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.cameras)

    @property
    def tracklets(self) -> int:
        return sum(c.tracklets for c in self.cameras)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Pending:
    """A finished tracklet waiting for the commit point to pass its last frame."""

    camera: str
    source_id: int
    tracklet: Tracklet
    vectors: np.ndarray  # (k, D) crop embeddings
    identity: int | None = None
    score: float | None = None


class _CameraRun:
    """Per-camera state of a run: the source iterator, its tracker and commit bookkeeping."""

    def __init__(self, inp: CameraInput, source: Any, tracker: Any, source_id: int,
                 track_offset: int, summary: CameraSummary) -> None:
        self.inp = inp
        self.camera = inp.camera
        self.source = source
        self.it = iter(source)
        self.tracker = tracker
        self.source_id = source_id
        self.track_offset = track_offset
        self.summary = summary
        self.next_frame = int(getattr(source, "start_frame", 0))  # first unprocessed
        self.exhausted = False
        self.failed: SourceError | None = None  # the input broke off (input.on_error=continue)
        self.bar: Any = None
        self.last_provisional: dict[int, int] = {}

    def commit_point(self) -> int:
        """R: the first frame that is not yet safe to commit (see the module docstring)."""
        firsts = [t.first_frame for t in self.tracker.active() if t.boxes]
        return min([self.next_frame, *firsts])


class Pipeline:
    """Wires sources, detector, trackers, embedder, matcher and gallery for recorded footage.

    Components are passed in (built by ``Pipeline.build`` from a config) so tests and the
    live-stream command can swap any of them.
    """

    def __init__(self, cfg: Config, *, detector: Any, embedder: Any, model: Any,
                 gallery: Any, matcher: Any) -> None:
        self.cfg = cfg
        self.detector = detector
        self.embedder = embedder
        self.model = model
        self.gallery = gallery
        self.matcher = matcher
        self._stop: Callable[[], bool] | None = None

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(cls, cfg: Config, out_dir: str | Path, *, db: str | None = None,
              checkpoint: str | None = None, cameras: Sequence[str] = ()) -> Pipeline:
        """Build every real component from ``cfg`` (each failure names its input)."""
        from reid_pipeline.detect import build_detector
        from reid_pipeline.embed.embedder import Embedder
        from reid_pipeline.embed.model import load_model
        from reid_pipeline.gallery import Gallery
        from reid_pipeline.gallery.cache import ExemplarCache
        from reid_pipeline.match.assign import IdentityMatcher
        from reid_pipeline.utils import resolve_device

        device = resolve_device(cfg.device)
        out = Path(out_dir)
        model = load_model(checkpoint or cfg.model.checkpoint, cfg.model, device)
        model.scoring_backend = "auto" if cfg.match.use_triton else "torch"
        model.eval()
        detector = build_detector(cfg.detector, device, cameras=cameras)
        # the input size the model was built (trained) for, not the config's default
        embedder = Embedder(model, device, batch=cfg.model.batch, half=cfg.model.half)
        db_url = db or cfg.gallery.db or str(out / "reid.db")
        crops_dir: Path | str | None = cfg.gallery.crops_dir or None
        if crops_dir is None and "://" in db_url and not db_url.startswith("sqlite"):
            crops_dir = out / "crops"  # a server database: crops go beside the run's outputs
        gallery = Gallery.open(db_url, cfg.gallery, crops_dir)
        cache = ExemplarCache(gallery, model.model_version, device=device)
        matcher = IdentityMatcher(model.pair_probability, cache, cfg.match)
        return cls(cfg, detector=detector, embedder=embedder, model=model, gallery=gallery,
                   matcher=matcher)

    # ------------------------------------------------------------------ the run
    @staticmethod
    def open_inputs(inputs: Sequence[CameraInput], cfg: Config | None = None) -> list[Any]:
        """Open (and so validate) every source before anything is written."""
        names = [i.camera for i in inputs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"camera name(s) {dup} given to more than one input; "
                              "each input needs its own camera")
        return [open_input(i, cfg) for i in inputs]

    def run(self, inputs: Sequence[CameraInput],
            stop: Callable[[], bool] | None = None) -> RunSummary:
        """Process every input to its end (or until ``stop()`` is true, or Ctrl-C)."""
        from reid_pipeline.track.tracker import CameraTracker

        t0 = time.perf_counter()
        summary = RunSummary()
        probes = self.open_inputs(inputs, self.cfg)
        runs: list[_CameraRun] = []
        for inp, probe in zip(inputs, probes):
            uri = redact_url(getattr(probe, "uri", inp.spec))
            cs = CameraSummary(inp.camera, uri, fps=float(probe.fps),
                               frame_count=probe.frame_count)
            summary.cameras.append(cs)
            self.gallery.ensure_camera(inp.camera, uri)
            start = self.gallery.begin_source(inp.camera, probe.fingerprint(), uri)
            source_id, resume = int(start.source_id), int(start.resume_from_frame)
            cs.source_id = source_id
            done = bool(getattr(start, "done", False)) or (
                probe.frame_count is not None and resume >= probe.frame_count)
            if done:
                probe.close()
                cs.skipped = True
                log.info("camera %s: %s already processed, skipped", inp.camera, uri)
                continue
            if resume > 0:
                probe.close()
                src = open_input(inp, self.cfg, start_frame=resume)
                cs.resumed_from = resume
                log.info("camera %s: resuming at frame %d", inp.camera, resume)
            else:
                src = probe
            # a resumed run continues the source's track numbering: ids stay unique
            tracker = CameraTracker(inp.camera, self.cfg.tracker, float(src.fps),
                                    first_track_id=int(getattr(start, "next_track_id", 1)))
            run = _CameraRun(inp, src, tracker, source_id, 0, cs)
            run.bar = _bar(inp.camera, src.frame_count, resume, position=len(runs))
            runs.append(run)
        self._pending: list[_Pending] = []
        try:
            self._loop(runs, stop)
        except (KeyboardInterrupt, SourceError) as e:
            # Ctrl-C, or a video that breaks off mid-way (truncated): keep what was done
            summary.interrupted = True
            log.warning("%s: committing the in-flight batch",
                        "interrupted" if isinstance(e, KeyboardInterrupt) else "input failed")
            self._finish(runs, interrupted=True)
            summary.seconds = time.perf_counter() - t0
            raise
        finally:
            for r in runs:
                r.source.close()
                _close_bar(r.bar)
        summary.interrupted = summary.interrupted or any(not r.exhausted for r in runs)
        for r in runs:
            if r.failed is not None:
                summary.interrupted = True
                summary.failures[r.camera] = str(r.failed)
        summary.seconds = time.perf_counter() - t0
        return summary

    def _loop(self, runs: list[_CameraRun], stop: Callable[[], bool] | None) -> None:
        batch = max(1, int(self.cfg.detector.batch))
        rows_since_commit = 0
        while True:
            active = [r for r in runs if not r.exhausted]
            if not active:
                break
            if stop is not None and stop():
                raise KeyboardInterrupt
            per_cam = max(1, batch // len(active))
            frames: list[tuple[_CameraRun, Frame]] = []
            for r in active:
                for _ in range(per_cam):
                    try:
                        fr = next(r.it, None)
                    except SourceError as e:
                        if self.cfg.input.on_error == "stop":
                            raise
                        # this camera ends here (its frames so far are kept and committed,
                        # its source stays resumable, not "done"); the others go on
                        log.error("camera %s: %s; the other cameras go on", r.camera, e)
                        r.failed = e
                        fr = None
                    if fr is None:
                        r.exhausted = True
                        break
                    frames.append((r, fr))
            self.detect_and_track(frames)
            finished: list[tuple[_CameraRun, Tracklet]] = []
            for r in runs:
                tl = r.tracker.flush() if r.exhausted else r.tracker.pop_finished()
                finished.extend((r, t) for t in tl)
            provisional = self._due_provisional(active)
            self._embed_and_match(finished, provisional)
            rows_since_commit += sum(len(t.boxes) for _, t in finished)
            if rows_since_commit >= self.cfg.gallery.batch_size or any(
                    r.exhausted for r in active):
                self._commit(runs)
                rows_since_commit = 0
        self._commit(runs, final=True)

    def detect_and_track(self, frames: Sequence[tuple[_CameraRun, Frame]]) -> None:
        """One detector call for the frames of every camera, then each camera's tracker.

        (Issue 5: shared with the live loop, ``stream.LiveSteps``, which gathers its frames
        from reader threads instead of ``_loop``'s blocking iterators.)
        """
        if not frames:
            return
        dets = self.detector.detect([f for _, f in frames])
        for (r, fr), d in zip(frames, dets):
            r.tracker.update(fr, d)
            r.next_frame = fr.index + 1
            r.summary.frames += 1
            _bar_update(r.bar)

    def _finish(self, runs: list[_CameraRun], interrupted: bool) -> None:
        """End every open track now and commit everything up to the last processed frame."""
        finished = [(r, t) for r in runs for t in r.tracker.flush()]
        self._embed_and_match(finished, [])
        self._commit(runs, final=True)

    # ------------------------------------------------------------------ embed + match
    def _due_provisional(self, active: list[_CameraRun]) -> list[tuple[_CameraRun, Tracklet]]:
        every = int(self.cfg.tracker.provisional_every)
        due = []
        for r in active:
            for t in r.tracker.active():
                n = len(t.boxes)
                if n >= every and t.crops and n - r.last_provisional.get(t.track_id, 0) >= every:
                    r.last_provisional[t.track_id] = n
                    due.append((r, t))
        return due

    @staticmethod
    def forget_ended(finished: Sequence[tuple[_CameraRun, Tracklet]]) -> None:
        """Drop the provisional cadence of ended tracks, so week-long runs stay bounded."""
        for r, t in finished:
            r.last_provisional.pop(t.track_id, None)

    def _embed_and_match(self, finished: list[tuple[_CameraRun, Tracklet]],
                         provisional: list[tuple[_CameraRun, Tracklet]]) -> None:
        self.forget_ended(finished)
        keep = [(r, t) for r, t in finished if len(t.boxes) >= self.cfg.tracker.min_length]
        jobs = keep + provisional
        crops = [c for _, t in jobs for c in t.crops]
        if crops:
            emb = self.embedder.embed_crops(crops).float().cpu().numpy()
        else:
            emb = np.zeros((0, 1), np.float32)
        off = 0
        for i, (r, t) in enumerate(jobs):
            vec = emb[off:off + len(t.crops)]
            off += len(t.crops)
            if i < len(keep):
                self._pending.append(_Pending(r.camera, r.source_id, t, vec))
                r.summary.tracklets += 1
            elif len(vec):
                ident, score = self.matcher.peek(r.camera, t, vec) if hasattr(
                    self.matcher, "peek") else (None, None)
                log.debug("camera %s track %d: provisional identity %s (p=%s)", r.camera,
                          t.track_id, ident, score)

    # ------------------------------------------------------------------ commit
    def _commit(self, runs: list[_CameraRun], final: bool = False) -> None:
        """Assign and write every pending tracklet that ends before its camera's commit point,
        then advance the cameras' ``frames_processed`` in the same transaction."""
        points = {r.camera: (r.next_frame if final else r.commit_point()) for r in runs}
        ready = [p for p in self._pending
                 if p.tracklet.last_frame < points[p.camera]]
        if not ready and not final:
            return
        ready.sort(key=lambda p: (p.tracklet.first_seen, p.camera))
        ready_ids = {id(p) for p in ready}
        self._pending = [p for p in self._pending if id(p) not in ready_ids]
        progress_rows = {r.source_id: (points[r.camera],
                                       final and r.exhausted and r.failed is None)
                         for r in runs}
        from reid_pipeline.match.assign import MatchQuery

        offsets = {r.camera: r.track_offset for r in runs}
        with self.gallery.batch() as tx:
            queries = []
            for p in ready:
                tl = dataclasses.replace(p.tracklet,
                                         track_id=p.tracklet.track_id + offsets[p.camera])
                tid = tx.record_tracklet(p.source_id, tl)
                queries.append(MatchQuery.from_tracklet(tl, p.vectors, tid))
            if queries:
                # one global decision for the batch (conflicting tracklets solved together)
                for p, a in zip(ready, self.matcher.commit(tx, queries)):
                    p.identity, p.score = a.identity_id, a.probability
            for sid, (frame, done) in progress_rows.items():
                if done:
                    tx.finish_source(sid, frame)
                else:
                    tx.set_progress(sid, frame)
        log.debug("committed %d tracklets; resume points %s", len(ready), points)


def _bar(camera: str, total: int | None, initial: int, position: int = 0) -> Any:
    """A tqdm bar per camera, one line each (utils.progress wraps iterables; here frames
    arrive in steps)."""
    from tqdm.auto import tqdm

    return tqdm(desc=camera, total=total, initial=initial, unit="frame", dynamic_ncols=True,
                leave=False, position=position,
                disable=os.environ.get("REID_NO_PROGRESS") == "1")


def _bar_update(bar: Any) -> None:
    up = getattr(bar, "update", None)
    if up is not None:
        up(1)


def _close_bar(bar: Any) -> None:
    close = getattr(bar, "close", None)
    if close is not None:
        close()
