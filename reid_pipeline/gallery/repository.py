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
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol, TextIO, cast

import numpy as np
from sqlalchemy import Engine, Table, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reid_pipeline.config import GalleryConfig
from reid_pipeline.errors import DatabaseError, InputError, NotFoundError, OutputError
from reid_pipeline.gallery import exemplars as ex
from reid_pipeline.gallery.engine import create_gallery_engine, db_errors, migrate
from reid_pipeline.gallery.export import FORMATS, write_rows
from reid_pipeline.gallery.models import (
    Base,
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
from reid_pipeline.gallery.records import (
    CameraPresence,
    CropInfo,
    IdentitySummary,
    Interval,
    Result,
    SourceStart,
    TrackletSpan,
)
from reid_pipeline.types import Sighting
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)

# (crops BGR uint8) -> (vectors (N, D) float32, model_version): re-embeds crops when an
# identity is left without exemplar vectors (see ``UnitOfWork.reselect_exemplars``)
EmbedFn = Callable[[list[np.ndarray]], tuple[np.ndarray, str]]


class TrackedBoxLike(Protocol):
    frame_index: int
    timestamp: float
    bbox: tuple[float, float, float, float]
    confidence: float


class TrackletLike(Protocol):
    """What ``record_tracklet`` needs; ``reid_pipeline.types.Tracklet`` fits (read-only
    members, so a dataclass with list fields matches)."""

    @property
    def track_id(self) -> int: ...
    @property
    def boxes(self) -> Sequence[Any]: ...  # TrackedBoxLike
    @property
    def crops(self) -> Sequence[np.ndarray]: ...
    @property
    def crop_frames(self) -> Sequence[int]: ...


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
        return bool(
            self.exemplars
            or self.removed_identities
            or self.intervals_added
            or self.intervals_removed
        )


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
        self._to_remove: dict[Path, None] = {}  # crop files to delete once committed (ordered)
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
        src = self.s.scalar(
            select(Source).where(Source.camera_id == cam_id, Source.fingerprint == fingerprint)
        )
        if src is None:
            try:
                with self.s.begin_nested():
                    src = Source(
                        camera_id=cam_id,
                        fingerprint=fingerprint,
                        uri=redact_url(uri or ""),
                        frames_processed=0,
                        status="running",
                        started_at=utcnow(),
                    )
                    self.s.add(src)
                return SourceStart(src.id, 0, False, 1)
            except IntegrityError:  # the same input started by another process just now
                src = self.s.scalar(
                    select(Source).where(
                        Source.camera_id == cam_id, Source.fingerprint == fingerprint
                    )
                )
                if src is None:
                    raise
        max_track = self.s.scalar(
            select(func.max(Tracklet.track_id)).where(Tracklet.source_id == src.id)
        )
        return SourceStart(
            src.id, src.frames_processed, src.status == "done", int(max_track or 0) + 1
        )

    def set_progress(self, source_id: int, frames_processed: int) -> None:
        """Advance the resume point: every frame before ``frames_processed`` is committed."""
        self.s.execute(
            update(Source)
            .where(Source.id == source_id, Source.frames_processed < frames_processed)
            .values(frames_processed=int(frames_processed))
        )

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
    def record_tracklet(
        self,
        source_id: int,
        tracklet: TrackletLike,
        *,
        identity_id: int | None = None,
        score: float | None = None,
        provisional: bool = False,
        save_crops: bool = True,
    ) -> int:
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
        row = self.s.scalar(
            select(Tracklet).where(
                Tracklet.source_id == source_id, Tracklet.track_id == int(tracklet.track_id)
            )
        )
        if row is None:
            row = Tracklet(
                camera_id=src.camera_id,
                source_id=source_id,
                track_id=int(tracklet.track_id),
                first_frame=first_f,
                last_frame=last_f,
                first_ts=first_t,
                last_ts=last_t,
                provisional=provisional,
                created_at=utcnow(),
            )
            self.s.add(row)
            self.s.flush()
            have: set[int] = set()
            have_crops: set[int] = set()
        else:
            row.first_frame = min(row.first_frame, first_f)
            row.last_frame = max(row.last_frame, last_f)
            row.first_ts = min(row.first_ts, first_t)
            row.last_ts = max(row.last_ts, last_t)
            have = set(
                self.s.scalars(select(SightingRow.frame).where(SightingRow.tracklet_id == row.id))
            )
            have_crops = set(self.s.scalars(select(Crop.frame).where(Crop.tracklet_id == row.id)))
        rows = []
        for b in boxes:
            f = int(b.frame_index)
            if f in have:
                continue
            have.add(f)
            x1, y1, x2, y2 = (float(v) for v in b.bbox)
            rows.append(
                {
                    "tracklet_id": row.id,
                    "frame": f,
                    "timestamp": float(b.timestamp),
                    "x1": x1,
                    "y1": y1,
                    "x2": x2,
                    "y2": y2,
                    "confidence": float(b.confidence),
                }
            )
        _insert_many(self.s, SightingRow, rows)
        if save_crops and getattr(tracklet, "crops", None):
            self._save_crops(row, src.camera_id, tracklet, have_crops)
        if identity_id is not None:
            self.assign(row.id, identity_id, score, provisional)
        return row.id

    def _save_crops(
        self, row: Tracklet, camera_id: int, tracklet: TrackletLike, have: set[int]
    ) -> None:
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
                raise ValueError(
                    f"crop of tracklet {tracklet.track_id} frame {f} cannot be encoded as JPEG"
                )
            try:
                dest.parent.mkdir(parents=True, exist_ok=True)
                existed = dest.exists()
                dest.write_bytes(buf.tobytes())
            except OSError as e:
                raise OutputError(
                    f"crop folder {str(crops_dir)!r}: cannot write {rel}: {e.strerror or e}"
                ) from None
            if not existed:
                self._written.append(dest)
            rows.append(
                {"tracklet_id": row.id, "frame": f, "path": rel.as_posix(), "created_at": utcnow()}
            )
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

    def assign(
        self,
        tracklet_id: int,
        identity_id: int,
        score: float | None = None,
        provisional: bool = False,
    ) -> None:
        """Attach a tracklet to an identity (moving it if it had another one)."""
        t = self.s.get(Tracklet, tracklet_id)
        if t is None:
            raise NotFoundError(f"tracklet {tracklet_id} does not exist in gallery {self.g.shown}")
        ident = self._identity(identity_id)
        old = t.identity_id
        t.identity_id = identity_id
        t.score = None if score is None else float(score)
        t.provisional = bool(provisional)
        ident.first_seen = (
            t.first_ts if ident.first_seen is None else min(ident.first_seen, t.first_ts)
        )
        ident.last_seen = t.last_ts if ident.last_seen is None else max(ident.last_seen, t.last_ts)
        ident.updated_at = utcnow()
        if old is not None:
            self.changes.intervals_removed.add(t.id)
            if old != identity_id:
                self.s.flush()
                self.refresh_identity(old)
        if not provisional:
            self.changes.intervals_added.append(
                Interval(t.id, identity_id, self._camera_name(t.camera_id), t.first_ts, t.last_ts)
            )

    def refresh_identity(self, identity_id: int) -> None:
        """Recompute first/last seen from the identity's tracklets (after moves/merges)."""
        lo, hi = self.s.execute(
            select(func.min(Tracklet.first_ts), func.max(Tracklet.last_ts)).where(
                Tracklet.identity_id == identity_id
            )
        ).one()
        self.s.execute(
            update(Identity)
            .where(Identity.id == identity_id)
            .values(first_seen=lo, last_seen=hi, updated_at=utcnow())
        )

    def set_identity(
        self, identity_id: int, *, name: str | None = None, flagged: bool | None = None
    ) -> None:
        """Rename (an empty name clears it) or (un)flag an identity."""
        ident = self._identity(identity_id, lock=True)
        if name is not None:
            ident.name = name or None
        if flagged is not None:
            ident.flagged = flagged
        ident.updated_at = utcnow()

    def _identity(self, identity_id: int, lock: bool = False) -> Identity:
        """The identity's row (``lock``: held until the transaction ends, on servers)."""
        ident = (
            self.s.scalar(select(Identity).where(Identity.id == identity_id).with_for_update())
            if lock
            else self.s.get(Identity, identity_id)
        )
        if ident is None:
            raise NotFoundError(f"identity {identity_id} does not exist in gallery {self.g.shown}")
        return ident

    # ------------------------------------------------------------------ management
    def delete_identity(self, identity_id: int) -> Result:
        """Erase an identity completely: every row that refers to it or to its tracklets, in
        every table (found through the schema's foreign keys, so a table added later is
        covered too), and its crop files.

        The files are removed once the transaction committed (a rolled-back delete keeps
        them); ``Result.files`` counts them.
        """
        res = Result(identity=identity_id)
        self._identity(identity_id, lock=True)
        tids = list(self.s.scalars(select(Tracklet.id).where(Tracklet.identity_id == identity_id)))
        self._erase(_table(Tracklet), tids, res)
        self._erase(_table(Identity), [identity_id], res)
        self.changes.intervals_removed.update(tids)
        self.changes.removed_identities.add(identity_id)
        return res

    def merge_identities(
        self,
        keep: int,
        other: int,
        *,
        force: bool = False,
        exemplars: int = 5,
        embed: EmbedFn | None = None,
    ) -> Result:
        """Move everything of ``other`` into ``keep`` and delete ``other``; reselect ``keep``'s
        exemplars (at most ``exemplars`` per model version).

        Refused when both were seen by one camera at the same time (one person cannot be in
        two places of one view at once) unless ``force``.
        """
        if keep == other:
            raise InputError(f"cannot merge identity {keep} with itself")
        res = Result(identity=keep)
        a, b = self._identity(keep, lock=True), self._identity(other, lock=True)
        if not force:
            self._check_no_overlap(keep, other)
        tids = list(self.s.scalars(select(Tracklet.id).where(Tracklet.identity_id == other)))
        res.add(
            "tracklets",
            _rowcount(
                self.s.execute(
                    update(Tracklet).where(Tracklet.identity_id == other).values(identity_id=keep)
                )
            ),
        )
        res.add(
            "exemplars",
            _rowcount(
                self.s.execute(
                    update(Exemplar).where(Exemplar.identity_id == other).values(identity_id=keep)
                )
            ),
        )
        self._move_other_references(other, keep, res)
        a.name = a.name or b.name
        a.flagged = bool(a.flagged or b.flagged)
        self.s.delete(b)
        self.s.flush()
        self.refresh_identity(keep)
        self._moved(tids)
        self.changes.removed_identities.add(other)
        res.update(self.reselect_exemplars(keep, exemplars, embed))
        return res

    def split_identity(
        self,
        identity_id: int,
        tracklet_ids: Iterable[int],
        *,
        exemplars: int = 5,
        embed: EmbedFn | None = None,
    ) -> Result:
        """Move the given tracklets of an identity into a new one (``Result.identity``)."""
        ids = sorted({int(t) for t in tracklet_ids})
        if not ids:
            raise InputError("split needs at least one tracklet id (--tracklets ...)")
        res = Result()
        self._identity(identity_id, lock=True)
        owned = set(self.s.scalars(select(Tracklet.id).where(Tracklet.identity_id == identity_id)))
        foreign = [t for t in ids if t not in owned]
        if foreign:
            raise NotFoundError(
                f"tracklet(s) {foreign} do not belong to identity {identity_id} "
                f"(its tracklets: {sorted(owned)})"
            )
        if set(ids) == owned:
            raise InputError(
                f"split would move every tracklet of identity {identity_id}; "
                "nothing would remain (use rename instead)"
            )
        new = self.create_identity()
        res.identity = new
        res.add(
            "tracklets",
            _rowcount(
                self.s.execute(update(Tracklet).where(Tracklet.id.in_(ids)).values(identity_id=new))
            ),
        )
        res.add(
            "exemplars",
            _rowcount(
                self.s.execute(
                    update(Exemplar)
                    .where(Exemplar.identity_id == identity_id, Exemplar.tracklet_id.in_(ids))
                    .values(identity_id=new)
                )
            ),
        )
        self.refresh_identity(identity_id)
        self.refresh_identity(new)
        self._moved(ids)
        res.update(self.reselect_exemplars(identity_id, exemplars, embed))
        res.update(self.reselect_exemplars(new, exemplars, embed))
        return res

    def purge(
        self, cutoff: datetime, *, exemplars: int = 5, embed: EmbedFn | None = None
    ) -> Result:
        """Erase tracklets (with sightings, crops, exemplars) stored before ``cutoff``.

        Identities left without tracklets and not updated since the cutoff go too; the
        others get their times and exemplars refreshed. Sources started before the cutoff
        with no tracklet left go as well.
        """
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=timezone.utc)
        res = Result()
        s = self.s
        old = s.execute(
            select(Tracklet.id, Tracklet.identity_id).where(Tracklet.created_at < cutoff)
        ).all()
        touched = {i for _, i in old if i is not None}
        tids = [t for t, _ in old]
        self._erase(_table(Tracklet), tids, res)
        self.changes.intervals_removed.update(tids)
        left = set(
            s.scalars(
                select(Tracklet.identity_id).where(Tracklet.identity_id.is_not(None)).distinct()
            )
        )
        gone = [
            i
            for i in s.scalars(select(Identity.id).where(Identity.updated_at < cutoff))
            if i not in left
        ]
        gone += [i for i in touched if i not in left and i not in gone]
        self._erase(_table(Identity), gone, res)
        self.changes.removed_identities.update(gone)
        for i in sorted(touched - set(gone)):
            if s.get(Identity, i) is not None:
                self.refresh_identity(i)
                res.update(self.reselect_exemplars(i, exemplars, embed))
        used = select(Tracklet.source_id).distinct()
        srcs = list(
            s.scalars(select(Source.id).where(Source.started_at < cutoff, Source.id.not_in(used)))
        )
        self._erase(_table(Source), srcs, res)
        return res

    def reselect_exemplars(
        self, identity_id: int, keep: int = 5, embed: EmbedFn | None = None
    ) -> Result:
        """Keep at most ``keep`` diverse exemplars per model version of an identity (after a
        merge, split or purge changed its tracklets). An identity left with tracklets but no
        vector has its crops embedded again through ``embed``, if given."""
        res = Result(identity=identity_id)
        self.s.flush()
        versions = sorted(
            set(
                self.s.scalars(
                    select(Exemplar.model_version).where(Exemplar.identity_id == identity_id)
                )
            )
        )
        if not versions:
            self._embed_from_crops(identity_id, keep, embed, res)
        for version in versions:
            _, dropped, _ = self._select_exemplars(identity_id, version, None, keep)
            res.add("exemplars_dropped", dropped)
        return res

    def _embed_from_crops(
        self, identity_id: int, keep: int, embed: EmbedFn | None, res: Result
    ) -> None:
        import cv2

        crops = self.s.execute(
            select(Crop.path, Crop.tracklet_id)
            .join(Tracklet, Tracklet.id == Crop.tracklet_id)
            .where(Tracklet.identity_id == identity_id)
            .order_by(Crop.tracklet_id, Crop.frame)
        ).all()
        if not crops or embed is None or self.g.crops_dir is None:
            if crops:
                log.warning(
                    "identity %d has no exemplar vector and no model to embed its "
                    "%d crops; it cannot be matched until re-embedded",
                    identity_id,
                    len(crops),
                )
            return
        images, owners = [], []
        for path, tracklet_id in crops:
            img = cv2.imread(str(self._crop_file(path)))
            if img is not None:
                images.append(img)
                owners.append(tracklet_id)
        if not images:
            return
        vecs, version = embed(images)
        _, _, added = self._select_exemplars(identity_id, version, ex.as_matrix(vecs), keep, owners)
        res.add("exemplars_embedded", added)

    def _check_no_overlap(self, a: int, b: int) -> None:
        ta, tb = _table(Tracklet).alias("ta"), _table(Tracklet).alias("tb")
        hit = self.s.execute(
            select(ta.c.camera_id)
            .where(
                ta.c.identity_id == a,
                tb.c.identity_id == b,
                ta.c.camera_id == tb.c.camera_id,
                ta.c.first_ts <= tb.c.last_ts,
                tb.c.first_ts <= ta.c.last_ts,
            )
            .limit(1)
        ).scalar_one_or_none()
        if hit is not None:
            raise InputError(
                f"identities {a} and {b} were seen at the same time on camera "
                f"{self._camera_name(hit)!r}: they are two people (use --force to merge "
                "anyway)"
            )

    def _move_other_references(self, old: int, new: int, res: Result) -> None:
        """Re-point rows of tables other than tracklets/exemplars that refer to ``old``."""
        for table, col in _referencing(_table(Identity)):
            if table.name in ("tracklets", "exemplars"):
                continue
            res.add(
                table.name,
                _rowcount(self.s.execute(update(table).where(col == old).values({col.name: new}))),
            )

    def _moved(self, tids: Sequence[int]) -> None:
        """Tell caches that these tracklets now belong to another identity."""
        if not tids:
            return
        self.changes.intervals_removed.update(tids)
        rows = self.s.execute(
            select(
                Tracklet.id, Tracklet.identity_id, Camera.name, Tracklet.first_ts, Tracklet.last_ts
            )
            .join(Camera, Camera.id == Tracklet.camera_id)
            .where(Tracklet.id.in_(list(tids)), Tracklet.provisional.is_(False))
        ).all()
        self.changes.intervals_added += [
            Interval(int(r[0]), int(r[1]), str(r[2]), float(r[3]), float(r[4]))
            for r in rows
            if r[1] is not None
        ]

    def _erase(self, table: Table, ids: list[Any], res: Result) -> None:
        """Delete rows ``ids`` of ``table`` and, first, every row referring to them; crop
        files of erased crop rows are removed once the transaction committed."""
        if not ids:
            return
        pk = next(iter(table.primary_key.columns))
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            for child, col in _referencing(table):
                if child is table:
                    continue
                cpk = next(iter(child.primary_key.columns))
                self._erase(child, list(self.s.scalars(select(cpk).where(col.in_(chunk)))), res)
            if table.name == Crop.__tablename__ and self.g.crops_dir is not None:
                for path in self.s.scalars(select(Crop.path).where(Crop.id.in_(chunk))):
                    f = self._crop_file(path)
                    if f.exists() and f not in self._to_remove:
                        self._to_remove[f] = None
                        res.files += 1
            res.add(table.name, _rowcount(self.s.execute(delete(table).where(pk.in_(chunk)))))

    def _crop_file(self, rel: str) -> Path:
        """A crop row's file, refusing anything outside the crop folder (rows are data)."""
        if self.g.crops_dir is None:
            raise InputError("no crop folder is known (config key gallery.crops_dir)")
        root = self.g.crops_dir.resolve()
        p = (root / rel).resolve()
        if root not in p.parents:
            raise InputError(f"crop row points outside the crop folder: {rel!r}")
        return p

    # ------------------------------------------------------------------ exemplars
    def add_exemplars(
        self,
        identity_id: int,
        vectors: Any,
        model_version: str,
        tracklet_id: int | None = None,
        keep: int = 5,
    ) -> np.ndarray:
        """Offer new embeddings of an identity; keep at most ``keep`` diverse ones in total.

        Existing and new vectors compete in one farthest-point selection, so the stored set
        stays bounded and spread out. Returns the identity's exemplars after the change
        (float32, (k, D)), which attached caches receive once the batch commits.
        """
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        new = ex.as_matrix(vectors)
        self._identity(identity_id)
        final, _, _ = self._select_exemplars(
            identity_id, model_version, new, keep, [tracklet_id] * len(new)
        )
        return final

    def _select_exemplars(
        self,
        identity_id: int,
        model_version: str,
        new: np.ndarray | None,
        keep: int,
        owners: Sequence[int | None] = (),
    ) -> tuple[np.ndarray, int, int]:
        """The one exemplar selection: the stored vectors of one model version and ``new``
        ones (of tracklets ``owners``) compete in a farthest-point selection (L1, the
        geometry of the dichotomy classifier); ``keep`` survive, the others are dropped or
        not stored. Returns (the identity's exemplars now, rows dropped, rows added)."""
        rows = list(
            self.s.scalars(
                select(Exemplar)
                .where(Exemplar.identity_id == identity_id, Exemplar.model_version == model_version)
                .order_by(Exemplar.id)
            )
        )
        dim = int(new.shape[1]) if new is not None else (rows[0].dim if rows else 0)
        old = (
            np.stack([ex.decode(r.vector, r.dim, r.dtype) for r in rows])
            if rows
            else np.zeros((0, dim), np.float32)
        )
        if new is None:
            new = np.zeros((0, old.shape[1]), np.float32)
        if old.shape[1] != new.shape[1]:
            raise DatabaseError(
                f"gallery {self.g.shown}: model version {model_version!r} has "
                f"{old.shape[1]}-d exemplars, got {new.shape[1]}-d vectors"
            )
        allv = np.concatenate([old, new])
        chosen = sorted(ex.farthest_point_selection(allv, keep))
        chosen_set = set(chosen)
        drop = [r.id for i, r in enumerate(rows) if i not in chosen_set]
        if drop:
            self.s.execute(delete(Exemplar).where(Exemplar.id.in_(drop)))
        dtypes = {i: ex.storage_dtype(allv[i], self.g.cfg.exemplar_dtype) for i in chosen}
        add = [
            {
                "identity_id": identity_id,
                "tracklet_id": owners[i - len(rows)],
                "model_version": model_version,
                "dim": int(new.shape[1]),
                "dtype": dtypes[i],
                "vector": ex.encode(allv[i], dtypes[i]),
                "created_at": utcnow(),
            }
            for i in chosen
            if i >= len(rows)
        ]
        _insert_many(self.s, Exemplar, add)
        # what the database now holds (after the storage dtype round trip)
        final = (
            np.stack(
                [
                    ex.decode(ex.encode(allv[i], dtypes[i]), new.shape[1], dtypes[i])
                    if i >= len(rows)
                    else allv[i]
                    for i in chosen
                ]
            )
            if chosen
            else np.zeros((0, new.shape[1]), np.float32)
        )
        self.changes.exemplars[(identity_id, model_version)] = final
        return final, len(drop), len(add)


class Gallery:
    """An open gallery database. Use ``Gallery.open``; close it (or use ``with``)."""

    def __init__(
        self, engine: Engine, shown: str, cfg: GalleryConfig, sqlite_file: Path | None
    ) -> None:
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
    def open(
        cls,
        url_or_path: str,
        cfg: GalleryConfig | None = None,
        crops_dir: Path | str | None = None,
        create: bool = True,
    ) -> Gallery:
        """Open (creating if needed) a gallery and migrate its schema to the newest version.

        ``url_or_path``: a file path (SQLite, WAL) or any SQLAlchemy URL
        (``postgresql+psycopg://user@host/db``). ``crops_dir``: where crop JPEGs go; default:
        ``cfg.crops_dir``, else the folder recorded in the database, else ``crops/`` beside a
        SQLite file. ``create=False``: a SQLite file must exist already (read-only commands).
        Raises ``DatabaseError`` naming the redacted database on any failure.
        """
        cfg = cfg or GalleryConfig()
        engine, shown, sqlite_file = create_gallery_engine(
            str(url_or_path), cfg.busy_timeout_s, create
        )
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
                log.warning(
                    "gallery %s: crops were recorded under %s, now using %s",
                    self.shown,
                    recorded,
                    path,
                )
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
        # an upsert: two processes starting on one new server gallery both record it
        # (a get-then-add would let the second fail on the primary key)
        from sqlalchemy.dialects import postgresql, sqlite

        pg = session.get_bind().dialect.name == "postgresql"
        stmt = (postgresql.insert(Meta) if pg else sqlite.insert(Meta)).values(
            key="crops_dir", value=str(self.crops_dir)
        )
        session.execute(
            stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value})
        )
        self._crops_dir_recorded = True

    def warn_no_crops(self) -> None:
        if not self._warned_no_crops:
            log.warning(
                "gallery %s: no crop folder configured (config key gallery.crops_dir);"
                " crops are not saved",
                self.shown,
            )
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
            except OSError as e:  # ids only in logs: a crop path names a person's picture
                log.warning(
                    "gallery %s: could not remove a crop file: %s",
                    self.shown,
                    e.strerror or type(e).__name__,
                )
        if uow._to_remove and self.crops_dir is not None:
            _prune_empty_dirs({p.parent for p in uow._to_remove}, self.crops_dir.resolve())
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

    def assign(
        self,
        tracklet_id: int,
        identity_id: int,
        score: float | None = None,
        provisional: bool = False,
    ) -> None:
        with self.batch() as u:
            u.assign(tracklet_id, identity_id, score, provisional)

    def add_exemplars(
        self,
        identity_id: int,
        vectors: Any,
        model_version: str,
        tracklet_id: int | None = None,
        keep: int = 5,
    ) -> np.ndarray:
        with self.batch() as u:
            return u.add_exemplars(identity_id, vectors, model_version, tracklet_id, keep)

    def delete_identity(self, identity_id: int) -> int:
        """Erase an identity completely (``UnitOfWork.delete_identity``); returns the number
        of crop files removed."""
        with self.batch() as u:
            return u.delete_identity(identity_id).files

    def set_identity(
        self, identity_id: int, *, name: str | None = None, flagged: bool | None = None
    ) -> None:
        with self.batch() as u:
            u.set_identity(identity_id, name=name, flagged=flagged)

    # ------------------------------------------------------------------ reads
    def exemplars(self, model_version: str) -> tuple[np.ndarray, np.ndarray]:
        """All exemplars of one model version: (identity ids int64 (N,), vectors float32 (N, D))."""
        with self.read() as s:
            rows = s.execute(
                select(Exemplar.identity_id, Exemplar.vector, Exemplar.dim, Exemplar.dtype)
                .where(Exemplar.model_version == model_version)
                .order_by(Exemplar.identity_id, Exemplar.id)
            ).all()
        if not rows:
            return np.zeros((0,), np.int64), np.zeros((0, 0), np.float32)
        dims = {r.dim for r in rows}
        if len(dims) != 1:
            raise DatabaseError(
                f"gallery {self.shown}: model version {model_version!r} has "
                f"exemplars of several sizes {sorted(dims)}"
            )
        ids = np.array([r.identity_id for r in rows], np.int64)
        vecs = np.stack([ex.decode(r.vector, r.dim, r.dtype) for r in rows])
        return ids, vecs

    def model_versions(self) -> list[str]:
        with self.read() as s:
            return list(s.scalars(select(Exemplar.model_version).distinct()))

    def recorded_tracklets(
        self, keys: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], tuple[int, int | None, float | None]]:
        """Which of these (source id, track id) tracklets are stored already: each found one
        -> (tracklet id, identity id, score). A tracklet is unique per source and track id, so
        a consumer that may see a batch twice (the distributed matcher, on redelivery)
        records only the others, and answers for these with what was decided then."""
        wanted: dict[int, set[int]] = defaultdict(set)
        for source_id, track_id in keys:
            wanted[int(source_id)].add(int(track_id))
        out: dict[tuple[int, int], tuple[int, int | None, float | None]] = {}
        with self.read() as s:
            for source_id, tracks in wanted.items():
                ordered = sorted(tracks)
                for i in range(0, len(ordered), 500):
                    rows = s.execute(
                        select(
                            Tracklet.track_id, Tracklet.id, Tracklet.identity_id, Tracklet.score
                        ).where(
                            Tracklet.source_id == source_id,
                            Tracklet.track_id.in_(ordered[i : i + 500]),
                        )
                    ).all()
                    for track_id, tid, identity_id, score in rows:
                        out[(source_id, int(track_id))] = (
                            int(tid),
                            None if identity_id is None else int(identity_id),
                            None if score is None else float(score),
                        )
        return out

    def intervals(self, since: float | None = None) -> list[Interval]:
        """Time spans of all (non-provisional) assigned tracklets, for the one-place rule."""
        q = (
            select(
                Tracklet.id, Tracklet.identity_id, Camera.name, Tracklet.first_ts, Tracklet.last_ts
            )
            .join(Camera, Camera.id == Tracklet.camera_id)
            .where(Tracklet.identity_id.is_not(None), Tracklet.provisional.is_(False))
        )
        if since is not None:
            q = q.where(Tracklet.last_ts >= since)
        with self.read() as s:
            return [Interval(r[0], r[1] or 0, r[2], r[3], r[4]) for r in s.execute(q)]

    def identities(self) -> list[IdentitySummary]:
        """Every identity with the cameras it was seen in, first/last seen and counts."""
        with self.read() as s:
            return self._summaries(s, None)

    def sightings(
        self, camera: str | None = None, identity_id: int | None = None, chunk: int = 5000
    ) -> Iterator[Sighting]:
        """All sightings in (camera, frame, track) order, as the CSV/JSONL export rows."""
        q = (
            select(
                Camera.name,
                SightingRow.frame,
                SightingRow.timestamp,
                SightingRow.x1,
                SightingRow.y1,
                SightingRow.x2,
                SightingRow.y2,
                SightingRow.confidence,
                Tracklet.track_id,
                Tracklet.identity_id,
                Tracklet.score,
                Identity.name,
                Tracklet.id,
            )
            .join(Tracklet, Tracklet.id == SightingRow.tracklet_id)
            .join(Camera, Camera.id == Tracklet.camera_id)
            .outerjoin(Identity, Identity.id == Tracklet.identity_id)
            .order_by(Camera.name, SightingRow.frame, Tracklet.track_id)
        )
        if camera is not None:
            q = q.where(Camera.name == camera)
        if identity_id is not None:
            q = q.where(Tracklet.identity_id == identity_id)
        with self.read() as s:
            for r in s.execute(q.execution_options(yield_per=chunk)):
                yield Sighting(
                    camera=r[0],
                    frame=r[1],
                    timestamp=r[2],
                    bbox=(r[3], r[4], r[5], r[6]),
                    confidence=r[7],
                    track=r[8],
                    identity=r[9],
                    score=r[10],
                    name=r[11],
                    tracklet=r[12],
                )

    def export_sightings(
        self, out: TextIO, fmt: str = "csv", identity_id: int | None = None
    ) -> int:
        """Write every sighting (or one identity's, for a data-subject request) to ``out`` as
        CSV or JSON lines, in the one export format (``gallery.export``). Returns rows."""
        if fmt not in FORMATS:
            raise InputError(f"export format {fmt!r}: choose csv or jsonl")
        if identity_id is not None:
            with self.read() as s:
                if s.get(Identity, identity_id) is None:
                    raise NotFoundError(
                        f"identity {identity_id} does not exist in gallery {self.shown}"
                    )
        rows = self.sightings(identity_id=identity_id)
        n = write_rows(rows, csv_out=out) if fmt == "csv" else write_rows(rows, jsonl_out=out)
        log.info("exported %d sighting rows", n)
        return n

    def identity_ids(self, flagged: bool | None = None) -> set[int]:
        """Ids of every identity; ``flagged=True``: only those on the watch list (False: the
        others). One cheap query, e.g. for a live stream's alerts."""
        q = select(Identity.id)
        if flagged is not None:
            q = q.where(Identity.flagged.is_(flagged))
        with self.read() as s:
            return {int(i) for i in s.scalars(q)}

    def identity_names(self, identity_ids: Iterable[int]) -> dict[int, str | None]:
        """The name (None if unnamed) of each of these identities that exists."""
        ids = sorted({int(i) for i in identity_ids})
        out: dict[int, str | None] = {}
        with self.read() as s:
            for i in range(0, len(ids), 500):
                out.update(
                    (int(r[0]), r[1])
                    for r in s.execute(
                        select(Identity.id, Identity.name).where(Identity.id.in_(ids[i : i + 500]))
                    )
                )
        return out

    def tracklet_spans(self, identity_id: int | None = None) -> list[TrackletSpan]:
        """Every assigned tracklet (provisional ones too) with its camera, time span and first
        frame, in (identity, start) order: the report's timelines and video links
        (``identity_id``: that identity's only)."""
        q = (
            select(
                Tracklet.id,
                Tracklet.identity_id,
                Camera.name,
                Tracklet.track_id,
                Tracklet.first_ts,
                Tracklet.last_ts,
                Tracklet.first_frame,
            )
            .join(Camera, Camera.id == Tracklet.camera_id)
            .where(Tracklet.identity_id.is_not(None))
            .order_by(Tracklet.identity_id, Tracklet.first_ts, Tracklet.id)
        )
        if identity_id is not None:
            q = q.where(Tracklet.identity_id == identity_id)
        with self.read() as s:
            return [
                TrackletSpan(
                    int(r[0]), int(r[1] or 0), r[2], int(r[3]), float(r[4]), float(r[5]), int(r[6])
                )
                for r in s.execute(q)
            ]

    def camera_presence(self, identity_ids: Iterable[int]) -> list[CameraPresence]:
        """Per identity and camera: first/last seen, sightings and tracklets, in (identity,
        first seen) order (what a search hit shows)."""
        ids = sorted({int(i) for i in identity_ids})
        per: list[Any] = []
        counts: dict[tuple[int, str], int] = {}
        with self.read() as s:
            for i in range(0, len(ids), 500):
                chunk = ids[i : i + 500]
                per += s.execute(
                    select(
                        Tracklet.identity_id,
                        Camera.name,
                        func.min(Tracklet.first_ts),
                        func.max(Tracklet.last_ts),
                        func.count(Tracklet.id),
                    )
                    .join(Camera, Camera.id == Tracklet.camera_id)
                    .where(Tracklet.identity_id.in_(chunk))
                    .group_by(Tracklet.identity_id, Camera.name)
                ).all()
                counts.update(
                    ((int(r[0] or 0), r[1]), int(r[2]))
                    for r in s.execute(
                        select(Tracklet.identity_id, Camera.name, func.count(SightingRow.id))
                        .join(Camera, Camera.id == Tracklet.camera_id)
                        .join(SightingRow, SightingRow.tracklet_id == Tracklet.id)
                        .where(Tracklet.identity_id.in_(chunk))
                        .group_by(Tracklet.identity_id, Camera.name)
                    )
                )
        found = [
            CameraPresence(
                int(iid), cam, float(lo), float(hi), counts.get((int(iid), cam), 0), int(ntr)
            )
            for iid, cam, lo, hi, ntr in per
        ]
        return sorted(found, key=lambda c: (c.identity_id, c.first_seen, c.camera))

    def crops(
        self,
        identity_id: int | None = None,
        tracklet_id: int | None = None,
        *,
        identity_ids: Iterable[int] | None = None,
    ) -> list[CropInfo]:
        """Crop files (with their camera and time), e.g. for the report's identity page
        (``identity_ids``: of these identities only, e.g. one page of thumbnails)."""
        q = _crop_query().order_by(Camera.name, Crop.tracklet_id, Crop.frame)
        if identity_id is not None:
            q = q.where(Tracklet.identity_id == identity_id)
        if identity_ids is not None:
            q = q.where(Tracklet.identity_id.in_(sorted({int(i) for i in identity_ids})))
        if tracklet_id is not None:
            q = q.where(Crop.tracklet_id == tracklet_id)
        return self._crop_rows(q)

    def _crop_rows(self, q: Any) -> list[CropInfo]:
        with self.read() as s:
            rows = s.execute(q).all()
        base = self.crops_dir
        return [
            CropInfo(
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                r[5],
                (base / r[6]) if base is not None else None,
                r[6],
                r[7],
            )
            for r in rows
        ]

    def crop(self, crop_id: int) -> CropInfo | None:
        """One crop row (None when there is none, e.g. its identity was erased)."""
        found = self._crop_rows(_crop_query().where(Crop.id == int(crop_id)))
        return found[0] if found else None

    def identity_page(
        self,
        offset: int = 0,
        limit: int = 50,
        *,
        camera: str | None = None,
        since: float | None = None,
        until: float | None = None,
        flagged: bool | None = None,
        ids: Iterable[int] | None = None,
    ) -> tuple[int, list[IdentitySummary]]:
        """(how many match, one page of them): identities with at least one tracklet
        (``camera``: in that camera; ``since``/``until``: seen then), most recently seen
        first. Summaries as ``identities()`` gives them, over all cameras and times."""
        match = (
            select(Tracklet.identity_id.label("iid"), func.max(Tracklet.last_ts).label("last"))
            .where(Tracklet.identity_id.is_not(None))
            .group_by(Tracklet.identity_id)
        )
        if camera is not None:
            match = match.join(Camera, Camera.id == Tracklet.camera_id).where(Camera.name == camera)
        if since is not None:
            match = match.where(Tracklet.last_ts >= since)
        if until is not None:
            match = match.where(Tracklet.first_ts <= until)
        if ids is not None:
            match = match.where(Tracklet.identity_id.in_(sorted({int(i) for i in ids})))
        sub = match.subquery()
        base = select(sub.c.iid, sub.c.last)
        if flagged is not None:
            base = base.join(Identity, Identity.id == sub.c.iid).where(
                Identity.flagged.is_(flagged)
            )
        with self.read() as s:
            total = int(s.scalar(select(func.count()).select_from(base.subquery())) or 0)
            page = [
                int(r[0])
                for r in s.execute(
                    base.order_by(sub.c.last.desc(), sub.c.iid.desc())
                    .offset(max(0, offset))
                    .limit(max(0, limit))
                )
            ]
            summaries = self._summaries(s, page)
        return total, summaries

    def _summaries(self, s: Session, ids: list[int] | None) -> list[IdentitySummary]:
        """``IdentitySummary`` of each of ``ids`` that exists, in the order given; ``None``:
        every identity, by id."""
        if ids is not None and not ids:
            return []
        if ids is None:
            found = list(s.scalars(select(Identity).order_by(Identity.id)))
            ids = [i.id for i in found]
            which = Tracklet.identity_id.is_not(None)
        else:
            found = list(s.scalars(select(Identity).where(Identity.id.in_(ids))))
            which = Tracklet.identity_id.in_(ids)
        rows = {i.id: i for i in found}
        per = s.execute(
            select(
                Tracklet.identity_id,
                Camera.name,
                func.count(Tracklet.id),
                func.min(Tracklet.first_ts),
                func.max(Tracklet.last_ts),
            )
            .join(Camera, Camera.id == Tracklet.camera_id)
            .where(which)
            .group_by(Tracklet.identity_id, Camera.name)
        ).all()
        counts = dict(
            s.execute(
                select(Tracklet.identity_id, func.count(SightingRow.id))
                .join(SightingRow, SightingRow.tracklet_id == Tracklet.id)
                .where(which)
                .group_by(Tracklet.identity_id)
            ).all()
        )
        cams: dict[int, list[str]] = defaultdict(list)
        ntr: dict[int, int] = defaultdict(int)
        lo: dict[int, float] = {}
        hi: dict[int, float] = {}
        for iid_, cam, n, a, b in per:
            iid = int(iid_ or 0)
            cams[iid].append(cam)
            ntr[iid] += n
            lo[iid] = a if iid not in lo else min(lo[iid], a)
            hi[iid] = b if iid not in hi else max(hi[iid], b)
        return [
            IdentitySummary(
                id=i,
                name=rows[i].name,
                flagged=bool(rows[i].flagged),
                cameras=sorted(cams.get(i, [])),
                first_seen=lo.get(i, rows[i].first_seen),
                last_seen=hi.get(i, rows[i].last_seen),
                sightings=int(counts.get(i, 0)),
                tracklets=ntr.get(i, 0),
                created_at=rows[i].created_at,
            )
            for i in ids
            if i in rows
        ]

    def camera_names(self) -> list[str]:
        """Every camera of the gallery, by name."""
        with self.read() as s:
            return sorted(s.scalars(select(Camera.name)))

    def counts(self) -> dict[str, int]:
        """Row counts per table (tests, status lines)."""
        out = {}
        with self.read() as s:
            for name, model in (
                ("cameras", Camera),
                ("sources", Source),
                ("identities", Identity),
                ("tracklets", Tracklet),
                ("sightings", SightingRow),
                ("exemplars", Exemplar),
                ("crops", Crop),
            ):
                out[name] = int(s.scalar(select(func.count()).select_from(model)) or 0)
        return out

    def orphan_crop_files(self) -> list[Path]:
        """Files under the crop folder that no crop row refers to (left by a crash)."""
        if self.crops_dir is None or not self.crops_dir.is_dir():
            return []
        with self.read() as s:
            known = set(s.scalars(select(Crop.path)))
        return sorted(
            p
            for p in self.crops_dir.rglob("*.jpg")
            if p.relative_to(self.crops_dir).as_posix() not in known
        )


def _crop_query() -> Any:
    """Crop rows with their tracklet's identity, camera, time and track id."""
    return (
        select(
            Crop.id,
            Crop.tracklet_id,
            Tracklet.identity_id,
            Camera.name,
            Crop.frame,
            SightingRow.timestamp,
            Crop.path,
            Tracklet.track_id,
        )
        .join(Tracklet, Tracklet.id == Crop.tracklet_id)
        .join(Camera, Camera.id == Tracklet.camera_id)
        .outerjoin(
            SightingRow,
            (SightingRow.tracklet_id == Crop.tracklet_id) & (SightingRow.frame == Crop.frame),
        )
    )


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


def _prune_empty_dirs(dirs: Iterable[Path], root: Path) -> None:
    """Remove now-empty tracklet/camera folders below the crop root (deepest first, so
    emptied parents go too)."""
    for folder in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        while folder != root and root in folder.parents:
            try:
                folder.rmdir()
            except OSError:
                break
            folder = folder.parent


def _table(model: type[Base]) -> Table:
    return cast(Table, model.__table__)


def _rowcount(result: Any) -> int:
    """Rows an UPDATE/DELETE touched (a ``CursorResult``'s rowcount)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _referencing(target: Table) -> list[tuple[Table, Any]]:
    """Every (table, column) in the schema with a foreign key to ``target``'s primary key."""
    found = []
    for table in Base.metadata.sorted_tables:
        for fk in table.foreign_keys:
            if fk.column.table is target:
                found.append((table, fk.parent))
    return found
