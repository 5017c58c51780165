"""The engine: the pipeline's two halves and the one typed record between them.

```
front (per camera group)                                    back (one per gallery)
frames -> detect -> track -> embed -> FinishedBatch ══▶ decide identities -> commit -> Committed
```

``Pipeline.start / step(frames) / finish`` is the public API. The recorded driver
(``pipeline.recorded``, ``reid process``) and the live driver (``pipeline.live``,
``reid stream``) only gather frames and call it. The seam is ``FinishedBatch``, a plain
record: in one process ``Back.commit`` is a function call; the distributed mode puts a
durable stream exactly there.

Why it is shaped like this:

* **One detector call per step for all cameras**, and **one embedder call per step** for
  the crops of every tracklet that finished (or is scored provisionally) in it, from every
  camera. A crop is embedded once (kept by camera, track and frame until its tracklet
  ends), however often its growing tracklet is scored.
* **Commit invariant, for resume and idempotency** (``hold_back=True``, recorded footage).
  For each source the gallery stores ``frames_processed`` = R: everything committed lies
  strictly before R, everything from R on is recomputed on resume. R is the first frame of
  the oldest track still in flight, so a finished tracklet is held back until it ends
  before R. A restart at R reproduces the in-flight tracks, with track ids from the
  gallery's ``next_track_id`` so they never collide with committed ones.
* **Live commits** (``hold_back=False``): a live stream is never replayed, so every step
  that finished a tracklet commits it at once (R = the next frame); waiting for older
  tracks would only delay its ``confirmed`` decision. A crash loses only open tracklets.
* **One track-id scheme**: each camera's tracker numbers its tracks from the gallery's
  next free id for that source, for files and live streams alike.
* **Provisional scoring.** A long track is scored every ``provisional_every`` frames from
  the crops it has so far; the decision is returned (``StepResult.provisional``) but only
  the finished tracklet is written, which keeps the commit invariant simple.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

from reid_pipeline.config import Config
from reid_pipeline.errors import ConfigError
from reid_pipeline.types import Frame, Tracklet
from reid_pipeline.utils import redact_url

if TYPE_CHECKING:
    from reid_pipeline.detect.base import Detector
    from reid_pipeline.gallery import Gallery

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ collaborators


class Embedder(Protocol):
    """Crops -> one vector each, in one batched call (``embed.embedder.Embedder``)."""

    def embed_crops(self, crops: Sequence[np.ndarray]) -> Any: ...


class Matcher(Protocol):
    """Identity decisions against a gallery (``match.assign.IdentityMatcher``)."""

    def peek(self, camera: str, tracklet: Any, vectors: Any) -> tuple[int | None, float]: ...

    def commit(self, uow: Any, queries: Sequence[Any]) -> list[Any]: ...


class SourceInfo(Protocol):
    """What ``Pipeline.start`` needs of a camera's source (``sources.VideoSource``)."""

    camera: str
    uri: str
    fps: float
    frame_count: int | None

    def fingerprint(self) -> str: ...


# ------------------------------------------------------------------ the seam


@dataclass(frozen=True)
class FinishedTracklet:
    """A tracklet the front is done with: boxes, crops and one vector per crop."""

    camera: str
    source_id: int
    tracklet: Tracklet
    vectors: np.ndarray  # (n_crops, D); (0, D) when no crop passed the quality filter


@dataclass(frozen=True)
class SourceProgress:
    """A source's resume point R once the batch is committed; ``done``: it ended cleanly."""

    camera: str
    source_id: int
    resume_from: int
    done: bool = False


@dataclass(frozen=True)
class FinishedBatch:
    """The seam: what the front hands the back, as one unit of commit."""

    tracklets: tuple[FinishedTracklet, ...]
    progress: tuple[SourceProgress, ...]
    model_version: str = ""


@dataclass(frozen=True)
class Decision:
    """One tracklet's identity: ``provisional`` (still growing) or ``confirmed``
    (committed). ``identity`` is None when nothing matched yet (provisional) or the
    tracklet had no usable crop."""

    camera: str
    track: int
    identity: int | None
    score: float | None
    kind: Literal["provisional", "confirmed"]
    tracklet_id: int | None = None  # gallery row (confirmed only)


@dataclass(frozen=True)
class Committed:
    """What one gallery transaction wrote."""

    decisions: tuple[Decision, ...]
    progress: tuple[SourceProgress, ...]


@dataclass(frozen=True)
class StepResult:
    provisional: tuple[Decision, ...] = ()
    committed: Committed | None = None


@dataclass(frozen=True)
class CameraStart:
    """A camera as the gallery knows it when a run starts."""

    camera: str
    uri: str
    source_id: int
    resume_from: int  # first frame to process
    next_track_id: int
    done: bool  # this content was processed to its end before: nothing to do


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


class BackEnd(Protocol):
    """What the front hands its work to: ``Back`` in one process; in the distributed mode a
    client that publishes each ``FinishedBatch`` to the durable stream (and asks the
    matcher where each source resumes)."""

    def begin(self, src: SourceInfo) -> CameraStart: ...

    def commit(self, batch: FinishedBatch) -> Committed: ...

    def peek(self, camera: str, tracklet: Tracklet, vectors: np.ndarray) -> Decision | None: ...


# ------------------------------------------------------------------ front


@dataclass
class CameraState:
    """The front's per-camera state: its tracker and where the camera stands."""

    camera: str
    source_id: int
    tracker: Any  # track.tracker.CameraTracker
    next_frame: int  # first frame not yet processed
    summary: CameraSummary
    ended: bool = False  # no more frames (end of file, or the input failed)
    flushed: bool = False  # its tracks were ended after ``ended`` was set
    failed: str | None = None  # why the input broke off
    scored_at: dict[int, int] = field(default_factory=dict)  # track -> boxes when last scored

    def commit_point(self) -> int:
        """R: the first frame that is not yet safe to commit (see the module docstring)."""
        firsts = [t.first_frame for t in self.tracker.active() if t.boxes]
        return min([self.next_frame, *firsts])


class Front:
    """Frames -> detections -> tracklets -> embeddings, ending in ``FinishedBatch``."""

    def __init__(
        self,
        cfg: Config,
        detector: Detector,
        embedder: Embedder,
        model_version: str = "",
        provisional_every: int | None = None,
    ) -> None:
        self.cfg = cfg
        self.detector = detector
        self.embedder = embedder
        self.model_version = model_version
        self.provisional_every = int(provisional_every or cfg.tracker.provisional_every)
        self.cameras: dict[str, CameraState] = {}
        self.pending: list[FinishedTracklet] = []
        self._emb: dict[tuple[str, int, int], np.ndarray] = {}  # crop vectors, see _embed
        self.ended_now: list[str] = []  # cameras whose end the last step handled
        self.rows_added = 0  # boxes of tracklets finished since the driver last looked

    def add_camera(self, state: CameraState) -> None:
        self.cameras[state.camera] = state

    def step(self, frames: Sequence[Frame]) -> list[tuple[CameraState, Tracklet, np.ndarray]]:
        """Detect (one call for every camera's frames), track, embed what finished; returns
        the growing tracklets due for provisional scoring, with their vectors."""
        if frames:
            unknown = sorted({f.camera for f in frames} - set(self.cameras))
            if unknown:
                raise ConfigError(
                    f"frames of unknown camera(s) {unknown}: start the pipeline "
                    "with every camera first"
                )
            every = max(1, int(self.cfg.detector.every))
            seen = [f for f in frames if f.index % every == 0]  # the detection stride
            found = iter(self.detector.detect(seen) if seen else [])
            for fr in frames:
                cam = self.cameras[fr.camera]
                if fr.index % every == 0:
                    cam.tracker.update(fr, next(found))
                else:
                    cam.tracker.skip(fr)
                cam.next_frame = fr.index + 1
                cam.summary.frames += 1
        self.ended_now = [c.camera for c in self.cameras.values() if c.ended and not c.flushed]
        finished = []
        for c in self.cameras.values():
            finished += [
                (c, t)
                for t in (
                    c.tracker.flush() if c.ended and not c.flushed else c.tracker.pop_finished()
                )
            ]
            c.flushed = c.flushed or c.ended
        due = self._due_provisional()
        return self._embed_jobs(finished, due)

    def flush(self) -> None:
        """End every open track now (shutdown, Ctrl-C) and embed it."""
        finished = [(c, t) for c in self.cameras.values() for t in c.tracker.flush()]
        self._embed_jobs(finished, [])

    def _due_provisional(self) -> list[tuple[CameraState, Tracklet]]:
        every = self.provisional_every
        due = []
        for c in self.cameras.values():
            if c.ended:
                continue
            for t in c.tracker.active():
                n = len(t.boxes)
                if n >= every and t.crops and n - c.scored_at.get(t.track_id, 0) >= every:
                    c.scored_at[t.track_id] = n
                    due.append((c, t))
        return due

    def _embed_jobs(
        self, finished: list[tuple[CameraState, Tracklet]], due: list[tuple[CameraState, Tracklet]]
    ) -> list[tuple[CameraState, Tracklet, np.ndarray]]:
        keep = [(c, t) for c, t in finished if len(t.boxes) >= self.cfg.tracker.min_length]
        vecs = self._embed(keep + due)
        for (c, t), v in zip(keep, vecs[: len(keep)], strict=True):
            self.pending.append(FinishedTracklet(c.camera, c.source_id, t, v))
            self.rows_added += len(t.boxes)
            c.summary.tracklets += 1
        ended = {(c.camera, t.track_id) for c, t in finished}
        if ended:  # forget per-track state of ended tracks: a week-long run stays bounded
            self._emb = {k: v for k, v in self._emb.items() if k[:2] not in ended}
            for c, t in finished:
                c.scored_at.pop(t.track_id, None)
        return [(c, t, v) for (c, t), v in zip(due, vecs[len(keep) :], strict=True)]

    def _embed(self, jobs: list[tuple[CameraState, Tracklet]]) -> list[np.ndarray]:
        """Crop vectors of each job's tracklet, from one embedder call for the whole step."""
        missing: list[tuple[tuple[str, int, int], np.ndarray]] = []
        for c, t in jobs:
            for f, crop in zip(t.crop_frames, t.crops, strict=True):
                key = (c.camera, t.track_id, f)
                if key not in self._emb:
                    missing.append((key, crop))
        if missing:
            out = self.embedder.embed_crops([crop for _, crop in missing])
            vecs = np.asarray(out.float().cpu().numpy() if hasattr(out, "cpu") else out, np.float32)
            for (key, _), v in zip(missing, vecs, strict=True):
                self._emb[key] = v
        dim = int(getattr(self.embedder, "dim", 1))
        return [
            np.stack([self._emb[(c.camera, t.track_id, f)] for f in t.crop_frames])
            if t.crops
            else np.zeros((0, dim), np.float32)
            for c, t in jobs
        ]

    def _held_point(self, c: CameraState) -> int:
        """R for a non-final commit: not past the first frame of an open track, nor of a
        finished tracklet held back (it ends at or after R): a resume at R recomputes only
        frames from R on, so R must not cut a tracklet that is not committed (a kill would
        lose its first frames). Lowering R may hold back more; repeated until stable."""
        r = c.commit_point()
        while True:
            cut = [
                p.tracklet.first_frame
                for p in self.pending
                if p.camera == c.camera and p.tracklet.last_frame >= r > p.tracklet.first_frame
            ]
            if not cut:
                return r
            r = min(cut)

    def take(self, *, final: bool) -> FinishedBatch | None:
        """The finished tracklets that are safe to commit, with each source's resume point.

        ``final``: every pending tracklet, R = the next unprocessed frame (end of a run,
        Ctrl-C, and every live commit). None when nothing is ready and not ``final``.
        """
        points = {
            c.camera: (c.next_frame if final else self._held_point(c))
            for c in self.cameras.values()
        }
        ready = [p for p in self.pending if p.tracklet.last_frame < points[p.camera]]
        if not ready and not final:
            return None
        ready.sort(key=lambda p: (p.tracklet.first_seen, p.camera))
        taken = {id(p) for p in ready}
        self.pending = [p for p in self.pending if id(p) not in taken]
        progress = tuple(
            SourceProgress(
                c.camera, c.source_id, points[c.camera], final and c.ended and c.failed is None
            )
            for c in self.cameras.values()
        )
        return FinishedBatch(tuple(ready), progress, self.model_version)


# ------------------------------------------------------------------ back


class Back:
    """``FinishedBatch`` -> identity decisions -> one gallery transaction -> ``Committed``."""

    def __init__(self, gallery: Gallery, matcher: Matcher) -> None:
        self.gallery = gallery
        self.matcher = matcher

    def begin(self, src: SourceInfo) -> CameraStart:
        """Register a camera and its source in the gallery; where the source resumes."""
        uri = redact_url(src.uri)
        self.gallery.ensure_camera(src.camera, uri)
        row = self.gallery.begin_source(src.camera, src.fingerprint(), uri)
        resume = int(row.resume_from_frame)
        done = bool(getattr(row, "done", False)) or (
            src.frame_count is not None and resume >= src.frame_count
        )
        return CameraStart(
            src.camera,
            uri,
            int(row.source_id),
            resume,
            int(getattr(row, "next_track_id", 1)),
            done,
        )

    def commit(self, batch: FinishedBatch) -> Committed:
        """Record every tracklet, decide all identities at once (conflicting tracklets are
        solved together), and advance each source's resume point, in one transaction."""
        from reid_pipeline.match.assign import MatchQuery

        decisions: list[Decision] = []
        with self.gallery.batch() as tx:
            queries, ids = [], []
            for p in batch.tracklets:
                tid = tx.record_tracklet(p.source_id, p.tracklet)
                ids.append(tid)
                queries.append(MatchQuery.from_tracklet(p.tracklet, p.vectors, tid))
            answers = self.matcher.commit(tx, queries) if queries else []
            for p, tid, a in zip(batch.tracklets, ids, answers, strict=True):
                decisions.append(
                    Decision(
                        p.camera,
                        p.tracklet.track_id,
                        a.identity_id,
                        a.probability,
                        "confirmed",
                        tid,
                    )
                )
            for sp in batch.progress:
                if sp.done:
                    tx.finish_source(sp.source_id, sp.resume_from)
                else:
                    tx.set_progress(sp.source_id, sp.resume_from)
        log.debug(
            "committed %d tracklets; resume points %s",
            len(decisions),
            {sp.camera: sp.resume_from for sp in batch.progress},
        )
        return Committed(tuple(decisions), batch.progress)

    def peek(self, camera: str, tracklet: Tracklet, vectors: np.ndarray) -> Decision | None:
        """The identity a growing tracklet would get now (nothing written)."""
        ident, score = self.matcher.peek(camera, tracklet, vectors)
        return Decision(camera, tracklet.track_id, ident, score, "provisional")


# ------------------------------------------------------------------ the pipeline


class Pipeline:
    """The two halves in one process; see the module docstring.

    Components come in built (``Pipeline.build`` or ``from_components``), so tests and the
    benchmark can swap any of them.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        detector: Detector,
        embedder: Embedder,
        model: Any,
        gallery: Gallery | None,
        matcher: Matcher | None,
        back: BackEnd | None = None,
    ) -> None:
        """``back``: where finished work goes; default ``Back(gallery, matcher)`` in this
        process (the distributed worker passes its stream publisher and no gallery)."""
        self.cfg = cfg
        self.detector = detector
        self.embedder = embedder
        self.model = model
        self._gallery = gallery
        self.matcher = matcher
        if back is None:
            if gallery is None or matcher is None:
                raise ValueError("Pipeline needs a gallery and a matcher, or a back end")
            back = Back(gallery, matcher)
        self.back: BackEnd = back
        self.front: Front | None = None
        self.hold_back = True
        self._rows = 0  # sightings finished since the last commit (the commit cadence)

    @property
    def gallery(self) -> Gallery:
        """The local gallery (a distributed worker has none: its back end is the stream)."""
        if self._gallery is None:
            raise RuntimeError("this pipeline has no local gallery (its back end is remote)")
        return self._gallery

    @classmethod
    def from_components(cls, c: Any) -> Pipeline:
        """From ``pipeline.build.Components``."""
        return cls(
            c.cfg,
            detector=c.detector,
            embedder=c.embedder,
            model=c.model,
            gallery=c.gallery,
            matcher=c.matcher,
        )

    @classmethod
    def build(
        cls,
        cfg: Config,
        out_dir: str | Path,
        *,
        db: str | None = None,
        checkpoint: str | None = None,
        cameras: Sequence[str] = (),
    ) -> Pipeline:
        """Build every real component from ``cfg`` (each failure names its input)."""
        from reid_pipeline.pipeline.build import build_components

        return cls.from_components(
            build_components(cfg, out_dir, db=db, checkpoint=checkpoint, cameras=cameras)
        )

    # ------------------------------------------------------------------ public API
    def start(
        self,
        sources: Sequence[SourceInfo],
        *,
        hold_back: bool = True,
        provisional_every: int | None = None,
    ) -> list[CameraStart]:
        """Register each camera and source in the gallery; a tracker for each that has work.

        ``hold_back``: keep the resume invariant of recorded footage (see the module
        docstring); False commits every finished tracklet at once (live). A source whose
        content was processed to its end before is ``done`` and gets no tracker.
        """
        from reid_pipeline.sources import DEFAULT_FPS
        from reid_pipeline.track.tracker import CameraTracker

        names = [s.camera for s in sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(
                f"camera name(s) {dup} given to more than one input; "
                "each input needs its own camera"
            )
        self.hold_back = hold_back
        self.front = Front(
            self.cfg,
            self.detector,
            self.embedder,
            str(getattr(self.model, "model_version", "") or ""),
            provisional_every,
        )
        starts = []
        for src in sources:
            st = self.back.begin(src)
            starts.append(st)
            if st.done:
                continue
            fps = float(src.fps or DEFAULT_FPS)
            summary = CameraSummary(
                src.camera,
                st.uri,
                resumed_from=st.resume_from,
                fps=fps,
                frame_count=src.frame_count,
                source_id=st.source_id,
            )
            tracker = CameraTracker(
                src.camera,
                self.cfg.tracker,
                fps,
                first_track_id=st.next_track_id,
                every=self.cfg.detector.every,
            )
            self.front.add_camera(
                CameraState(src.camera, st.source_id, tracker, st.resume_from, summary)
            )
        return starts

    def end_camera(self, camera: str, failed: str | None = None) -> None:
        """No more frames from ``camera`` (``failed``: why its input broke off); its open
        tracks end in the next ``step``."""
        cam = self._front().cameras[camera]
        cam.ended = True
        cam.failed = failed

    def step(self, frames: Sequence[Frame]) -> StepResult:
        """Detect, track, embed; score growing tracklets; commit what is due."""
        front = self._front()
        due = front.step(frames)
        peeks = (self.back.peek(c.camera, t, v) for c, t, v in due if len(v))
        provisional = tuple(d for d in peeks if d is not None)
        for d in provisional:
            log.debug(
                "camera %s track %d: provisional identity %s (p=%s)",
                d.camera,
                d.track,
                d.identity,
                d.score,
            )
        self._rows += front.rows_added
        front.rows_added = 0
        committed = None
        if not self.hold_back:
            if front.pending:
                committed = self._commit(final=True)
        elif self._rows >= self.cfg.gallery.batch_size or front.ended_now:
            committed = self._commit(final=False)
            self._rows = 0
        return StepResult(provisional, committed)

    def finish(self) -> Committed:
        """End every open track, commit everything, R = the next unprocessed frame."""
        front = self._front()
        front.flush()
        return self._commit(final=True) or Committed((), ())

    @property
    def cameras(self) -> dict[str, CameraState]:
        return self._front().cameras

    # ------------------------------------------------------------------ internals
    def _front(self) -> Front:
        if self.front is None:
            raise RuntimeError("Pipeline.start() must be called before step() or finish()")
        return self.front

    def _commit(self, *, final: bool) -> Committed | None:
        batch = self._front().take(final=final)
        return None if batch is None else self.back.commit(batch)


__all__ = [
    "Back",
    "CameraStart",
    "CameraState",
    "CameraSummary",
    "Committed",
    "Decision",
    "FinishedBatch",
    "FinishedTracklet",
    "Front",
    "Pipeline",
    "SourceProgress",
    "StepResult",
]
