"""The gallery repository: one object to open the database and read/write it in batches.

Writes happen in a unit of work (``with gallery.batch() as uow:``) that commits in one
transaction, so a batch of tracklets - rows, sightings, crop files, identity assignments,
exemplars and the source's resume point - lands completely or not at all (Ctrl-C included:
crop files written by a rolled-back batch are removed again). Each write method is also
available directly on ``Gallery`` as its own one-call batch.

Read methods return plain records (``records.py``), never live ORM objects, so callers can
keep them after the session is gone. Attached caches (``ExemplarCache``) are told about
exemplar and assignment changes only after their transaction committed: they never hold
anything the database does not.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from sqlalchemy import Engine, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reid_pipeline.config import GalleryConfig
from reid_pipeline.errors import DatabaseError, InputError, NotFoundError, OutputError
from reid_pipeline.gallery import exemplars as ex
from reid_pipeline.gallery.engine import create_gallery_engine, db_errors, migrate
from reid_pipeline.gallery.models import (
    Camera,
    Crop,
    Exemplar,
    Identity,
    Meta,
    SightingRow,
    Source,
    Tracklet,
    utcnow,
)
from reid_pipeline.gallery.records import CropInfo, IdentitySummary, Interval, SourceStart
from reid_pipeline.types import Sighting
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)


class TrackedBoxLike(Protocol):
    frame_index: int
    timestamp: float
    bbox: tuple[float, float, float, float]
    confidence: float


class TrackletLike(Protocol):
    """What ``record_tracklet`` needs; ``reid_pipeline.types.Tracklet`` fits."""

    track_id: int
    boxes: Sequence[Any]  # TrackedBoxLike
    crops: Sequence[np.ndarray]
    crop_frames: Sequence[int]


class CacheListener(Protocol):
    def on_commit(self, changes: Changes) -> None: ...


@dataclass
class Changes:
    """What a committed unit of work changed that in-memory caches mirror."""

    exemplars: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    removed_identities: set[int] = field(default_factory=set)
    intervals_added: list[Interval] = field(default_factory=list)
    intervals_removed: set[int] = field(default_factory=set)  # tracklet ids

    def __bool__(self) -> bool:
        return bool(self.exemplars or self.removed_identities or self.intervals_added
                    or self.intervals_removed)


_SLUG_RE = re.compile(r"[^A-Za-z0-9._-]+")


def camera_slug(name: str) -> str:
    """A camera name made safe as one folder name (no separators, no dot-dot)."""
    slug = _SLUG_RE.sub("_", name).strip("._") or "camera"
    return slug[:80]


class UnitOfWork:
    """Writes of one transaction. Obtain from ``Gallery.batch()``; do not keep after it."""

    def __init__(self, gallery: Gallery, session: Session) -> None:
        self.g = gallery
        self.s = session
        self.changes = Changes()
        self._written: list[Path] = []  # crop files created in this batch
        self._to_remove: list[Path] = []  # crop files to delete once committed
        self._camera_names: dict[int, str] = {}

    # ------------------------------------------------------------------ cameras, sources
    def ensure_camera(self, name: str, uri: str = "") -> int:
        """Id of camera ``name``, created on first use; the URI is stored redacted."""
        if not name or not str(name).strip():
            raise InputError("camera name must not be empty")
        cam = self.s.scalar(select(Camera).where(Camera.name == name))
        if cam is None:
            try:  # another process may create the same camera at the same moment
                with self.s.begin_nested():
                    cam = Camera(name=name, uri=redact_url(uri or ""), created_at=utcnow())
                    self.s.add(cam)
            except IntegrityError:
                cam = self.s.scalar(select(Camera).where(Camera.name == name))
                if cam is None:
                    raise
        elif uri and cam.uri != redact_url(uri):
            cam.uri = redact_url(uri)
        self._camera_names[cam.id] = cam.name
        return cam.id

    def begin_source(self, camera: str | int, fingerprint: str, uri: str = "") -> SourceStart:
        """Register (or find) a processing run of one input; say where to resume.

        The same camera and fingerprint always map to the same row: a finished source is
        reported ``done`` (nothing to redo), an interrupted one resumes at its last
        committed frame.
        """
        cam_id = camera if isinstance(camera, int) else self.ensure_camera(camera, uri)
        if self.s.get(Camera, cam_id) is None:
            raise NotFoundError(f"camera {cam_id} does not exist in gallery {self.g.shown}")
        src = self.s.scalar(select(Source).where(Source.camera_id == cam_id,
                                                 Source.fingerprint == fingerprint))
        if src is None:
            try:
                with self.s.begin_nested():
                    src = Source(camera_id=cam_id, fingerprint=fingerprint,
                                 uri=redact_url(uri or ""), frames_processed=0,
                                 status="running", started_at=utcnow())
                    self.s.add(src)
                return SourceStart(src.id, 0, False, 1)
            except IntegrityError:  # the same input started by another process just now
                src = self.s.scalar(select(Source).where(Source.camera_id == cam_id,
                                                         Source.fingerprint == fingerprint))
                if src is None:
                    raise
        max_track = self.s.scalar(select(func.max(Tracklet.track_id))
                                  .where(Tracklet.source_id == src.id))
        return SourceStart(src.id, src.frames_processed, src.status == "done",
                           int(max_track or 0) + 1)

    def set_progress(self, source_id: int, frames_processed: int) -> None:
        """Advance the resume point: every frame before ``frames_processed`` is committed."""
        self.s.execute(update(Source).where(Source.id == source_id,
                                            Source.frames_processed < frames_processed)
                       .values(frames_processed=int(frames_processed)))

    def finish_source(self, source_id: int, frames_processed: int | None = None) -> None:
        """Mark a source done (a re-run will skip it)."""
        src = self._source(source_id)
        if frames_processed is not None:
            src.frames_processed = max(src.frames_processed, int(frames_processed))
        src.status = "done"
        src.finished_at = utcnow()

    def _source(self, source_id: int) -> Source:
        src = self.s.get(Source, source_id)
        if src is None:
            raise NotFoundError(f"source {source_id} does not exist in gallery {self.g.shown}")
        return src

    def _camera_name(self, camera_id: int) -> str:
        if camera_id not in self._camera_names:
            cam = self.s.get(Camera, camera_id)
            self._camera_names[camera_id] = cam.name if cam else str(camera_id)
        return self._camera_names[camera_id]

    # ------------------------------------------------------------------ tracklets
    def record_tracklet(self, source_id: int, tracklet: TrackletLike, *,
                        identity_id: int | None = None, score: float | None = None,
                        provisional: bool = False, save_crops: bool = True) -> int:
        """Store a tracklet with its sightings and crops; return its id.

        Idempotent on (source, track_id): recording it again (a re-run, or a longer version
        of a live track) adds only sightings and crops of frames not stored yet.
        """
        boxes = list(tracklet.boxes)
        if not boxes:
            raise ValueError(f"tracklet {tracklet.track_id} has no boxes")
        src = self._source(source_id)
        first_f = min(b.frame_index for b in boxes)
        last_f = max(b.frame_index for b in boxes)
        first_t = min(float(b.timestamp) for b in boxes)
        last_t = max(float(b.timestamp) for b in boxes)
        row = self.s.scalar(select(Tracklet).where(Tracklet.source_id == source_id,
                                                   Tracklet.track_id == int(tracklet.track_id)))
        if row is None:
            row = Tracklet(camera_id=src.camera_id, source_id=source_id,
                           track_id=int(tracklet.track_id), first_frame=first_f,
                           last_frame=last_f, first_ts=first_t, last_ts=last_t,
                           provisional=provisional, created_at=utcnow())
            self.s.add(row)
            self.s.flush()
            have: set[int] = set()
            have_crops: set[int] = set()
        else:
            row.first_frame = min(row.first_frame, first_f)
            row.last_frame = max(row.last_frame, last_f)
            row.first_ts = min(row.first_ts, first_t)
            row.last_ts = max(row.last_ts, last_t)
            have = set(self.s.scalars(select(SightingRow.frame)
                                      .where(SightingRow.tracklet_id == row.id)))
            have_crops = set(self.s.scalars(select(Crop.frame).where(Crop.tracklet_id == row.id)))
        rows = []
        for b in boxes:
            f = int(b.frame_index)
            if f in have:
                continue
            have.add(f)
            x1, y1, x2, y2 = (float(v) for v in b.bbox)
            rows.append({"tracklet_id": row.id, "frame": f, "timestamp": float(b.timestamp),
                         "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                         "confidence": float(b.confidence)})
        _insert_many(self.s, SightingRow, rows)
        if save_crops and getattr(tracklet, "crops", None):
            self._save_crops(row, src.camera_id, tracklet, have_crops)
        if identity_id is not None:
            self.assign(row.id, identity_id, score, provisional)
        return row.id

    def _save_crops(self, row: Tracklet, camera_id: int, tracklet: TrackletLike,
                    have: set[int]) -> None:
        crops_dir = self.g.crops_dir
        if crops_dir is None:
            self.g.warn_no_crops()
            return
        import cv2

        folder = Path(camera_slug(self._camera_name(camera_id))) / str(row.id)
        rows = []
        for img, f in zip(tracklet.crops, tracklet.crop_frames):
            f = int(f)
            if f in have or img is None or getattr(img, "size", 0) == 0:
                continue
            have.add(f)
            rel = folder / f"{f:07d}.jpg"
            dest = crops_dir / rel
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.g.cfg.crop_quality])
            if not ok:
                raise ValueError(f"crop of tracklet {tracklet.track_id} frame {f} cannot be "
                                 "encoded as JPEG")
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                existed = dest.exists()
                dest.write_bytes(buf.tobytes())
            except OSError as e:
                raise OutputError(f"crop folder {str(crops_dir)!r}: cannot write {rel}: "
                                  f"{e.strerror or e}") from None
            if not existed:
                self._written.append(dest)
            rows.append({"tracklet_id": row.id, "frame": f, "path": rel.as_posix(),
                         "created_at": utcnow()})
        if rows:
            _insert_many(self.s, Crop, rows)
            self.g.remember_crops_dir(self.s)

    # ------------------------------------------------------------------ identities
    def create_identity(self, name: str | None = None, flagged: bool = False) -> int:
        """A new, empty identity (first/last seen are set when tracklets are assigned)."""
        ident = Identity(name=name, flagged=flagged, created_at=utcnow(), updated_at=utcnow())
        self.s.add(ident)
        self.s.flush()
        return ident.id

    def assign(self, tracklet_id: int, identity_id: int, score: float | None = None,
               provisional: bool = False) -> None:
        """Attach a tracklet to an identity (moving it if it had another one)."""
        t = self.s.get(Tracklet, tracklet_id)
        if t is None:
            raise NotFoundError(f"tracklet {tracklet_id} does not exist in gallery {self.g.shown}")
        ident = self.s.get(Identity, identity_id)
        if ident is None:
            raise NotFoundError(f"identity {identity_id} does not exist in gallery "
                                f"{self.g.shown}")
        old = t.identity_id
        t.identity_id = identity_id
        t.score = None if score is None else float(score)
        t.provisional = bool(provisional)
        ident.first_seen = t.first_ts if ident.first_seen is None else min(ident.first_seen,
                                                                           t.first_ts)
        ident.last_seen = t.last_ts if ident.last_seen is None else max(ident.last_seen,
                                                                        t.last_ts)
        ident.updated_at = utcnow()
        if old is not None:
            self.changes.intervals_removed.add(t.id)
            if old != identity_id:
                self.s.flush()
                self.refresh_identity(old)
        if not provisional:
            self.changes.intervals_added.append(Interval(
                t.id, identity_id, self._camera_name(t.camera_id), t.first_ts, t.last_ts))

    def refresh_identity(self, identity_id: int) -> None:
        """Recompute first/last seen from the identity's tracklets (after moves/merges)."""
        lo, hi = self.s.execute(select(func.min(Tracklet.first_ts), func.max(Tracklet.last_ts))
                                .where(Tracklet.identity_id == identity_id)).one()
        self.s.execute(update(Identity).where(Identity.id == identity_id)
                       .values(first_seen=lo, last_seen=hi, updated_at=utcnow()))

    def set_identity(self, identity_id: int, *, name: str | None = None,
                     flagged: bool | None = None) -> None:
        """Rename or (un)flag an identity."""
        ident = self.s.get(Identity, identity_id)
        if ident is None:
            raise NotFoundError(f"identity {identity_id} does not exist in gallery "
                                f"{self.g.shown}")
        if name is not None:
            ident.name = name or None
        if flagged is not None:
            ident.flagged = flagged
        ident.updated_at = utcnow()

    def delete_identity(self, identity_id: int) -> int:
        """Erase an identity completely: its tracklets, sightings, crops (files too), exemplars.

        Returns the number of crop files removed (after the transaction commits).
        """
        if self.s.get(Identity, identity_id) is None:
            raise NotFoundError(f"identity {identity_id} does not exist in gallery "
                                f"{self.g.shown}")
        tids = list(self.s.scalars(select(Tracklet.id).where(Tracklet.identity_id == identity_id)))
        n = self._delete_tracklets(tids)
        self.s.execute(delete(Exemplar).where(Exemplar.identity_id == identity_id))
        self.s.execute(delete(Identity).where(Identity.id == identity_id))
        self.changes.removed_identities.add(identity_id)
        return n

    def delete_tracklets(self, tracklet_ids: Iterable[int]) -> int:
        """Remove tracklets with their sightings and crop files; returns files to remove."""
        return self._delete_tracklets(list(tracklet_ids))

    def _delete_tracklets(self, tids: list[int]) -> int:
        n = 0
        for i in range(0, len(tids), 500):
            chunk = tids[i:i + 500]
            paths = list(self.s.scalars(select(Crop.path).where(Crop.tracklet_id.in_(chunk))))
            if self.g.crops_dir is not None:
                self._to_remove += [self.g.crops_dir / p for p in paths]
            n += len(paths)
            # explicit child deletes: correct even where a backend ignores ON DELETE CASCADE
            self.s.execute(delete(Crop).where(Crop.tracklet_id.in_(chunk)))
            self.s.execute(delete(SightingRow).where(SightingRow.tracklet_id.in_(chunk)))
            self.s.execute(update(Exemplar).where(Exemplar.tracklet_id.in_(chunk))
                           .values(tracklet_id=None))
            self.s.execute(delete(Tracklet).where(Tracklet.id.in_(chunk)))
            self.changes.intervals_removed.update(chunk)
        return n

    # ------------------------------------------------------------------ exemplars
    def add_exemplars(self, identity_id: int, vectors: Any, model_version: str,
                      tracklet_id: int | None = None, keep: int = 5) -> np.ndarray:
        """Offer new embeddings of an identity; keep at most ``keep`` diverse ones in total.

        Existing and new vectors compete in one farthest-point selection, so the stored set
        stays bounded and spread out. Returns the identity's exemplars after the change
        (float32, (k, D)), which attached caches receive once the batch commits.
        """
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        new = ex.as_matrix(vectors)
        if self.s.get(Identity, identity_id) is None:
            raise NotFoundError(f"identity {identity_id} does not exist in gallery "
                                f"{self.g.shown}")
        rows = list(self.s.scalars(select(Exemplar).where(
            Exemplar.identity_id == identity_id, Exemplar.model_version == model_version)
            .order_by(Exemplar.id)))
        old = (np.stack([ex.decode(r.vector, r.dim, r.dtype) for r in rows])
               if rows else np.zeros((0, new.shape[1]), np.float32))
        if old.shape[1] != new.shape[1]:
            raise DatabaseError(f"gallery {self.g.shown}: model version {model_version!r} has "
                                f"{old.shape[1]}-d exemplars, got {new.shape[1]}-d vectors")
        allv = np.concatenate([old, new])
        chosen = sorted(ex.farthest_point_selection(allv, keep))
        chosen_set = set(chosen)
        drop = [r.id for i, r in enumerate(rows) if i not in chosen_set]
        if drop:
            self.s.execute(delete(Exemplar).where(Exemplar.id.in_(drop)))
        dtypes = {i: ex.storage_dtype(allv[i], self.g.cfg.exemplar_dtype) for i in chosen}
        add = [{"identity_id": identity_id, "tracklet_id": tracklet_id,
                "model_version": model_version, "dim": int(new.shape[1]), "dtype": dtypes[i],
                "vector": ex.encode(allv[i], dtypes[i]), "created_at": utcnow()}
               for i in chosen if i >= len(rows)]
        _insert_many(self.s, Exemplar, add)
        # what the database now holds (after the storage dtype round trip)
        final = np.stack([ex.decode(ex.encode(allv[i], dtypes[i]), new.shape[1], dtypes[i])
                          if i >= len(rows) else allv[i] for i in chosen])
        self.changes.exemplars[(identity_id, model_version)] = final
        return final


class Gallery:
    """An open gallery database. Use ``Gallery.open``; close it (or use ``with``)."""

    def __init__(self, engine: Engine, shown: str, cfg: GalleryConfig,
                 sqlite_file: Path | None) -> None:
        self.engine = engine
        self.shown = shown
        self.cfg = cfg
        self.sqlite_file = sqlite_file
        self.crops_dir: Path | None = None
        self._crops_dir_recorded = False
        self._write_engine = engine.execution_options(sqlite_immediate=True)
        self._listeners: list[CacheListener] = []
        self._warned_no_crops = False

    # ------------------------------------------------------------------ lifecycle
    @classmethod
    def open(cls, url_or_path: str, cfg: GalleryConfig | None = None,
             crops_dir: Path | str | None = None, create: bool = True) -> Gallery:
        """Open (creating if needed) a gallery and migrate its schema to the newest version.

        ``url_or_path``: a file path (SQLite, WAL) or any SQLAlchemy URL
        (``postgresql+psycopg://user@host/db``). ``crops_dir``: where crop JPEGs go; default:
        ``cfg.crops_dir``, else the folder recorded in the database, else ``crops/`` beside a
        SQLite file. ``create=False``: a SQLite file must exist already (read-only commands).
        Raises ``DatabaseError`` naming the redacted database on any failure.
        """
        cfg = cfg or GalleryConfig()
        engine, shown, sqlite_file = create_gallery_engine(str(url_or_path), cfg.busy_timeout_s,
                                                           create)
        try:
            migrate(engine, shown, cfg.busy_timeout_s)
            g = cls(engine, shown, cfg, sqlite_file)
            g.crops_dir = g._resolve_crops_dir(crops_dir)
        except BaseException:
            engine.dispose()
            raise
        log.debug("gallery %s open (crops in %s)", shown, g.crops_dir)
        return g

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Gallery:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Gallery({self.shown!r})"

    def _resolve_crops_dir(self, explicit: Path | str | None) -> Path | None:
        chosen = explicit or self.cfg.crops_dir or None
        recorded = self._read_meta("crops_dir")
        if chosen:
            path = Path(chosen).expanduser().resolve()
            if recorded and Path(recorded) != path:
                log.warning("gallery %s: crops were recorded under %s, now using %s",
                            self.shown, recorded, path)
            self._crops_dir_recorded = recorded == str(path)
            return path
        if recorded:
            self._crops_dir_recorded = True
            return Path(recorded)
        if self.sqlite_file is not None:
            self._crops_dir_recorded = True  # the default is derived, nothing to record
            return self.sqlite_file.parent / "crops"
        return None

    def remember_crops_dir(self, session: Session) -> None:
        """Record an explicitly chosen crop folder, so later readers find the files."""
        if self._crops_dir_recorded or self.crops_dir is None:
            return
        session.info["recorded_crops_dir"] = True
        row = session.get(Meta, "crops_dir")
        if row is None:
            session.add(Meta(key="crops_dir", value=str(self.crops_dir)))
        else:
            row.value = str(self.crops_dir)
        self._crops_dir_recorded = True

    def warn_no_crops(self) -> None:
        if not self._warned_no_crops:
            log.warning("gallery %s: no crop folder configured (config key gallery.crops_dir);"
                        " crops are not saved", self.shown)
            self._warned_no_crops = True

    def _read_meta(self, key: str) -> str | None:
        with self.read() as s:
            row = s.get(Meta, key)
            return row.value if row else None

    # ------------------------------------------------------------------ sessions
    @contextmanager
    def batch(self) -> Iterator[UnitOfWork]:
        """One transaction: everything done through the yielded ``UnitOfWork`` commits
        together, or (on any exception, Ctrl-C too) nothing does."""
        session = Session(self._write_engine, expire_on_commit=False, autoflush=True)
        uow = UnitOfWork(self, session)
        committing = False
        try:
            with db_errors(self.shown, self.cfg.busy_timeout_s):
                yield uow
                session.flush()  # every statement's error surfaces before COMMIT
                committing = True
                session.commit()
        except BaseException:
            try:
                session.rollback()
            except Exception:  # the original error matters more
                log.debug("rollback failed", exc_info=True)
            # Crop files of a batch that certainly did not commit are removed. If COMMIT
            # itself was interrupted its outcome is unknown: keep the files - an orphan file
            # (found by orphan_crop_files) is harmless, a crop row without its file is not.
            if not committing:
                for p in uow._written:
                    p.unlink(missing_ok=True)
            if session.info.get("recorded_crops_dir"):
                self._crops_dir_recorded = False
            raise
        finally:
            session.close()
        self._after_commit(uow)

    def _after_commit(self, uow: UnitOfWork) -> None:
        for p in uow._to_remove:
            try:
                p.unlink(missing_ok=True)
                _prune_empty(p.parent, self.crops_dir)
            except OSError as e:
                log.warning("gallery %s: could not remove crop %s: %s", self.shown, p, e)
        if uow.changes:
            for listener in list(self._listeners):
                listener.on_commit(uow.changes)

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (no write lock taken on SQLite)."""
        session = Session(self.engine)
        try:
            with db_errors(self.shown, self.cfg.busy_timeout_s):
                yield session
        finally:  # closing ends the (read) transaction; loaded attributes stay readable
            session.close()

    def attach(self, listener: CacheListener) -> None:
        """Keep ``listener`` (an ``ExemplarCache``) in sync with committed changes."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def detach(self, listener: CacheListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ------------------------------------------------------------------ one-call writes
    def ensure_camera(self, name: str, uri: str = "") -> int:
        with self.batch() as u:
            return u.ensure_camera(name, uri)

    def begin_source(self, camera: str | int, fingerprint: str, uri: str = "") -> SourceStart:
        with self.batch() as u:
            return u.begin_source(camera, fingerprint, uri)

    def set_progress(self, source_id: int, frames_processed: int) -> None:
        with self.batch() as u:
            u.set_progress(source_id, frames_processed)

    def finish_source(self, source_id: int, frames_processed: int | None = None) -> None:
        with self.batch() as u:
            u.finish_source(source_id, frames_processed)

    def record_tracklet(self, source_id: int, tracklet: TrackletLike, **kw: Any) -> int:
        with self.batch() as u:
            return u.record_tracklet(source_id, tracklet, **kw)

    def create_identity(self, name: str | None = None, flagged: bool = False) -> int:
        with self.batch() as u:
            return u.create_identity(name, flagged)

    def assign(self, tracklet_id: int, identity_id: int, score: float | None = None,
               provisional: bool = False) -> None:
        with self.batch() as u:
            u.assign(tracklet_id, identity_id, score, provisional)

    def add_exemplars(self, identity_id: int, vectors: Any, model_version: str,
                      tracklet_id: int | None = None, keep: int = 5) -> np.ndarray:
        with self.batch() as u:
            return u.add_exemplars(identity_id, vectors, model_version, tracklet_id, keep)

    def delete_identity(self, identity_id: int) -> int:
        with self.batch() as u:
            return u.delete_identity(identity_id)

    def set_identity(self, identity_id: int, *, name: str | None = None,
                     flagged: bool | None = None) -> None:
        with self.batch() as u:
            u.set_identity(identity_id, name=name, flagged=flagged)

    # ------------------------------------------------------------------ reads
    def exemplars(self, model_version: str) -> tuple[np.ndarray, np.ndarray]:
        """All exemplars of one model version: (identity ids int64 (N,), vectors float32 (N, D))."""
        with self.read() as s:
            rows = s.execute(select(Exemplar.identity_id, Exemplar.vector, Exemplar.dim,
                                    Exemplar.dtype)
                             .where(Exemplar.model_version == model_version)
                             .order_by(Exemplar.identity_id, Exemplar.id)).all()
        if not rows:
            return np.zeros((0,), np.int64), np.zeros((0, 0), np.float32)
        dims = {r.dim for r in rows}
        if len(dims) != 1:
            raise DatabaseError(f"gallery {self.shown}: model version {model_version!r} has "
                                f"exemplars of several sizes {sorted(dims)}")
        ids = np.array([r.identity_id for r in rows], np.int64)
        vecs = np.stack([ex.decode(r.vector, r.dim, r.dtype) for r in rows])
        return ids, vecs

    def model_versions(self) -> list[str]:
        with self.read() as s:
            return list(s.scalars(select(Exemplar.model_version).distinct()))

    def intervals(self, since: float | None = None) -> list[Interval]:
        """Time spans of all (non-provisional) assigned tracklets, for the one-place rule."""
        q = (select(Tracklet.id, Tracklet.identity_id, Camera.name, Tracklet.first_ts,
                    Tracklet.last_ts)
             .join(Camera, Camera.id == Tracklet.camera_id)
             .where(Tracklet.identity_id.is_not(None), Tracklet.provisional.is_(False)))
        if since is not None:
            q = q.where(Tracklet.last_ts >= since)
        with self.read() as s:
            return [Interval(r[0], r[1] or 0, r[2], r[3], r[4]) for r in s.execute(q)]

    def identities(self) -> list[IdentitySummary]:
        """Every identity with the cameras it was seen in, first/last seen and counts."""
        with self.read() as s:
            idents = s.execute(select(Identity).order_by(Identity.id)).scalars().all()
            per = s.execute(
                select(Tracklet.identity_id, Camera.name, func.count(Tracklet.id),
                       func.min(Tracklet.first_ts), func.max(Tracklet.last_ts))
                .join(Camera, Camera.id == Tracklet.camera_id)
                .where(Tracklet.identity_id.is_not(None))
                .group_by(Tracklet.identity_id, Camera.name)).all()
            counts = dict(s.execute(
                select(Tracklet.identity_id, func.count(SightingRow.id))
                .join(SightingRow, SightingRow.tracklet_id == Tracklet.id)
                .where(Tracklet.identity_id.is_not(None))
                .group_by(Tracklet.identity_id)).all())
        cams: dict[int, list[str]] = defaultdict(list)
        ntr: dict[int, int] = defaultdict(int)
        lo: dict[int, float] = {}
        hi: dict[int, float] = {}
        for iid_, cam, n, a, b in per:
            iid = iid_ or 0  # never None: filtered in the query
            cams[iid].append(cam)
            ntr[iid] += n
            lo[iid] = a if iid not in lo else min(lo[iid], a)
            hi[iid] = b if iid not in hi else max(hi[iid], b)
        return [IdentitySummary(
            id=i.id, name=i.name, flagged=bool(i.flagged), cameras=sorted(cams.get(i.id, [])),
            first_seen=lo.get(i.id, i.first_seen), last_seen=hi.get(i.id, i.last_seen),
            sightings=int(counts.get(i.id, 0)), tracklets=ntr.get(i.id, 0),
            created_at=i.created_at) for i in idents]

    def sightings(self, camera: str | None = None, identity_id: int | None = None,
                  chunk: int = 5000) -> Iterator[Sighting]:
        """All sightings in (camera, frame) order, as the CSV/JSONL export rows."""
        q = (select(Camera.name, SightingRow.frame, SightingRow.timestamp, SightingRow.x1,
                    SightingRow.y1, SightingRow.x2, SightingRow.y2, SightingRow.confidence,
                    Tracklet.track_id, Tracklet.identity_id, Tracklet.score)
             .join(Tracklet, Tracklet.id == SightingRow.tracklet_id)
             .join(Camera, Camera.id == Tracklet.camera_id)
             .order_by(Camera.name, SightingRow.frame, Tracklet.track_id))
        if camera is not None:
            q = q.where(Camera.name == camera)
        if identity_id is not None:
            q = q.where(Tracklet.identity_id == identity_id)
        with self.read() as s:
            for r in s.execute(q.execution_options(yield_per=chunk)):
                yield Sighting(camera=r[0], frame=r[1], timestamp=r[2],
                               bbox=(r[3], r[4], r[5], r[6]), confidence=r[7], track=r[8],
                               identity=r[9], score=r[10])

    def crops(self, identity_id: int | None = None,
              tracklet_id: int | None = None) -> list[CropInfo]:
        """Crop files (with their camera and time), e.g. for the report's identity page."""
        q = (select(Crop.id, Crop.tracklet_id, Tracklet.identity_id, Camera.name, Crop.frame,
                    SightingRow.timestamp, Crop.path)
             .join(Tracklet, Tracklet.id == Crop.tracklet_id)
             .join(Camera, Camera.id == Tracklet.camera_id)
             .outerjoin(SightingRow, (SightingRow.tracklet_id == Crop.tracklet_id)
                        & (SightingRow.frame == Crop.frame))
             .order_by(Camera.name, Crop.tracklet_id, Crop.frame))
        if identity_id is not None:
            q = q.where(Tracklet.identity_id == identity_id)
        if tracklet_id is not None:
            q = q.where(Crop.tracklet_id == tracklet_id)
        with self.read() as s:
            rows = s.execute(q).all()
        base = self.crops_dir
        return [CropInfo(r[0], r[1], r[2], r[3], r[4], r[5],
                         (base / r[6]) if base is not None else None, r[6]) for r in rows]

    def counts(self) -> dict[str, int]:
        """Row counts per table (tests, status lines)."""
        out = {}
        with self.read() as s:
            for name, model in (("cameras", Camera), ("sources", Source),
                                ("identities", Identity), ("tracklets", Tracklet),
                                ("sightings", SightingRow), ("exemplars", Exemplar),
                                ("crops", Crop)):
                out[name] = int(s.scalar(select(func.count()).select_from(model)) or 0)
        return out

    def orphan_crop_files(self) -> list[Path]:
        """Files under the crop folder that no crop row refers to (left by a crash)."""
        if self.crops_dir is None or not self.crops_dir.is_dir():
            return []
        with self.read() as s:
            known = set(s.scalars(select(Crop.path)))
        return sorted(p for p in self.crops_dir.rglob("*.jpg")
                      if p.relative_to(self.crops_dir).as_posix() not in known)


def _insert_many(session: Session, model: Any, rows: list[dict[str, Any]]) -> None:
    """Insert many rows in the fewest round trips the backend allows.

    PostgreSQL: ``COPY ... FROM STDIN`` on the session's own connection (same transaction);
    psycopg's executemany sends one statement per row, about 10x slower for sightings.
    SQLite: the driver's executemany, a C loop over one prepared statement.
    """
    if not rows:
        return
    table = model.__table__
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        cols = list(rows[0])
        raw: Any = conn.connection.dbapi_connection  # a psycopg 3 connection
        names = ", ".join(f'"{c}"' for c in cols)
        with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as cp:
            for r in rows:
                cp.write_row([r[c] for c in cols])
        return
    session.execute(insert(table), rows)


def _prune_empty(folder: Path, root: Path | None) -> None:
    """Remove now-empty tracklet/camera folders below the crop root."""
    if root is None:
        return
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent
