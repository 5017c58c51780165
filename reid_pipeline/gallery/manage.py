"""Gallery management: merge, split, rename, delete, purge by age, export.

A gallery of people is personal data, so these operations follow three rules:

- **One transaction each.** An operation either happens completely or not at all; a crash
  or a bad id halfway leaves the gallery as it was.
- **Erasure is total.** Deleting an identity removes every row that refers to it or to its
  tracklets, in every table (found through the schema's foreign keys, so a table added
  later is covered too), and the crop JPEGs on disk. Files cannot be rolled back, so they
  are first moved into a trash folder inside the crop folder, the transaction commits, and
  only then is the trash removed; if the transaction fails they are moved back.
- **Logs carry no personal content**: identity/tracklet ids and counts only; never a name,
  a crop path or a picture.

Exemplars (the few embedding vectors an identity is matched by) are recomputed after a
merge or split from the vectors of the identity's tracklets: farthest-point selection in
L1 distance (the geometry of the dichotomy classifier), per model version. When an identity
ends up with tracklets but no vector (a split that moved none), its crops are embedded
again through the ``embed`` callback, if one is given.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

import numpy as np
from sqlalchemy import Table, delete, func, select, update
from sqlalchemy.orm import Session

from reid_pipeline.errors import ConfigError, DatabaseError, InputError, NotFoundError
from reid_pipeline.gallery import exemplars as ex
from reid_pipeline.gallery.models import (
    Base,
    Camera,
    Crop,
    Exemplar,
    Identity,
    SightingRow,
    Source,
    Tracklet,
    utcnow,
)
from reid_pipeline.gallery.records import Interval

if TYPE_CHECKING:
    from reid_pipeline.config import Config
    from reid_pipeline.gallery import Gallery, UnitOfWork

log = logging.getLogger(__name__)

# (crops BGR uint8) -> (vectors (N, D) float32, model_version)
EmbedFn = Callable[[list[np.ndarray]], tuple[np.ndarray, str]]

EXPORT_FIELDS = ["identity", "name", "camera", "track", "tracklet", "frame", "timestamp",
                 "x1", "y1", "x2", "y2", "confidence", "score"]


@dataclass
class Result:
    """What an operation changed: row counts per table and files removed (ids only)."""

    identity: int | None = None
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0

    def add(self, table: str, n: int) -> None:
        if n:
            self.rows[table] = self.rows.get(table, 0) + n

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.rows.items())]
        return ", ".join(parts + [f"files={self.files}"])


@dataclass
class _Trash:
    """Crop files moved aside during an erasing transaction: (original, parked) pairs."""

    dir: Path
    moved: list[tuple[Path, Path]] = field(default_factory=list)


# ---------------------------------------------------------------- opening


def default_db(cfg: Config) -> str:
    """``gallery.db``, else the SQLite file ``reid process`` writes: ``<output.out>/reid.db``."""
    return cfg.gallery.db or str(Path(cfg.output.out) / "reid.db")


def open_existing(db: str, cfg: Config) -> Gallery:
    """Open a gallery that must already exist (reading or managing never creates one).

    ``Gallery.open`` creates a missing SQLite file, which is right for ``reid process`` but
    would turn a typo in ``reid report --db`` into an empty report; and a SQLite file that
    is some other program's database must not get our tables added to it.
    """
    import sqlite3

    from reid_pipeline.gallery import Gallery
    from reid_pipeline.gallery.engine import is_url

    if not db:
        raise ConfigError("config key 'gallery.db': no gallery database given (--db)")
    path: Path | None = None
    if not is_url(db):
        path = Path(db).expanduser()
    elif db.startswith("sqlite:///") and db[len("sqlite:///"):] not in ("", ":memory:"):
        path = Path(db[len("sqlite:///"):]).expanduser()
    if path is not None:
        if not path.exists():
            raise DatabaseError(f"database {str(path)!r} does not exist")
        if not path.is_file():
            raise DatabaseError(f"database {str(path)!r} is not a file")
        try:
            con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
            try:
                tables = {r[0] for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type='table'")}
            finally:
                con.close()
        except sqlite3.DatabaseError:
            raise DatabaseError(f"database {str(path)!r} is not a database file (or is corrupt)"
                                ) from None
        if "identities" not in tables:
            raise DatabaseError(f"database {str(path)!r} is not a reid gallery "
                                "(no identities table)")
    return Gallery.open(db, cfg.gallery)


# ---------------------------------------------------------------- duration parsing


def parse_age(text: str | float) -> timedelta:
    """``30d``, ``12h``, ``2w``, ``90m`` or a bare number of days -> a timedelta."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
    s = str(text).strip().lower()
    unit = s[-1] if s and s[-1] in units else "d"
    num = s[:-1] if s and s[-1] in units else s
    try:
        value = float(num)
    except ValueError:
        raise InputError(f"age {text!r}: expected a number with a unit, e.g. 30d, 12h, 2w") \
            from None
    if not value > 0:
        raise InputError(f"age {text!r}: must be positive")
    return timedelta(seconds=value * units[unit])


# ---------------------------------------------------------------- vectors


def decode_vector(row: Exemplar) -> np.ndarray:
    """An exemplar's stored bytes as a float32 vector."""
    return ex.decode(row.vector, row.dim, row.dtype)


# ---------------------------------------------------------------- the manager


class GalleryManager:
    """Management operations on one open ``Gallery`` (its database and crop folder).

    Each operation runs in one ``gallery.batch()`` unit of work, so attached in-memory
    caches hear about it only after it committed.
    """

    def __init__(self, gallery: Gallery, exemplars: int = 5,
                 embed: EmbedFn | None = None) -> None:
        self.g = gallery
        self.exemplars = exemplars
        self.embed = embed

    @property
    def crops_dir(self) -> Path | None:
        return self.g.crops_dir

    # -- helpers
    @staticmethod
    def _identity(s: Session, ident: int) -> Identity:
        row = s.execute(select(Identity).where(Identity.id == ident).with_for_update()
                        ).scalar_one_or_none()
        if row is None:
            raise NotFoundError(f"identity {ident} does not exist in the gallery")
        return row

    @staticmethod
    def _refresh_times(s: Session, ident: Identity) -> None:
        lo, hi = s.execute(select(func.min(Tracklet.first_ts), func.max(Tracklet.last_ts))
                           .where(Tracklet.identity_id == ident.id)).one()
        ident.first_seen, ident.last_seen = lo, hi
        ident.updated_at = utcnow()

    @staticmethod
    def _moved(uow: UnitOfWork, tids: Sequence[int]) -> None:
        """Tell caches that these tracklets now belong to another identity."""
        if not tids:
            return
        uow.changes.intervals_removed.update(tids)
        rows = uow.s.execute(select(Tracklet.id, Tracklet.identity_id, Camera.name,
                                    Tracklet.first_ts, Tracklet.last_ts)
                             .join(Camera, Camera.id == Tracklet.camera_id)
                             .where(Tracklet.id.in_(list(tids)),
                                    Tracklet.provisional.is_(False))).all()
        uow.changes.intervals_added += [Interval(int(r[0]), int(r[1]), str(r[2]), float(r[3]),
                                                  float(r[4])) for r in rows if r[1] is not None]

    def _recompute_exemplars(self, uow: UnitOfWork, ident_id: int, res: Result) -> None:
        """Keep ``self.exemplars`` diverse vectors per model version; embed crops if none."""
        s = uow.s
        s.flush()
        q = select(Exemplar).where(Exemplar.identity_id == ident_id).order_by(Exemplar.id)
        rows = list(s.scalars(q))
        if not rows:
            self._embed_from_crops(uow, ident_id, res)
            rows = list(s.scalars(q))
        by_model: dict[str, list[Exemplar]] = {}
        for r in rows:
            by_model.setdefault(r.model_version, []).append(r)
        drop: list[int] = []
        for version, group in by_model.items():
            vecs = np.stack([decode_vector(r) for r in group])
            keep = sorted(ex.farthest_point_selection(vecs, self.exemplars))
            drop += [r.id for i, r in enumerate(group) if i not in set(keep)]
            uow.changes.exemplars[(ident_id, version)] = vecs[keep]
        if drop:
            s.execute(delete(Exemplar).where(Exemplar.id.in_(drop)))
            res.add("exemplars_dropped", len(drop))

    def _embed_from_crops(self, uow: UnitOfWork, ident_id: int, res: Result) -> None:
        import cv2

        crops = uow.s.execute(select(Crop.path, Crop.tracklet_id).join(
            Tracklet, Tracklet.id == Crop.tracklet_id).where(Tracklet.identity_id == ident_id)
            .order_by(Crop.tracklet_id, Crop.frame)).all()
        if not crops or self.embed is None or self.crops_dir is None:
            if crops:
                log.warning("identity %d has no exemplar vector and no model to embed its "
                            "%d crops; it cannot be matched until re-embedded", ident_id,
                            len(crops))
            return
        images, owners = [], []
        for path, tracklet_id in crops:
            img = cv2.imread(str(self._safe_path(path)))
            if img is not None:
                images.append(img)
                owners.append(tracklet_id)
        if not images:
            return
        vecs, version = self.embed(images)
        vecs = ex.as_matrix(vecs)
        dtype = self.g.cfg.exemplar_dtype
        chosen = ex.farthest_point_selection(vecs, self.exemplars)
        for i in chosen:
            uow.s.add(Exemplar(identity_id=ident_id, tracklet_id=owners[i],
                               model_version=version, dim=int(vecs.shape[1]), dtype=dtype,
                               vector=ex.encode(vecs[i], dtype), created_at=utcnow()))
        res.add("exemplars_embedded", len(chosen))

    def _safe_path(self, rel: str) -> Path:
        """A crop row's file, refusing anything outside the crop folder (rows are data)."""
        assert self.crops_dir is not None
        root = self.crops_dir.resolve()
        p = (root / rel).resolve()
        if root not in p.parents:
            raise InputError(f"crop row points outside the crop folder: {rel!r}")
        return p

    # -- operations
    def rename(self, ident: int, name: str | None) -> Result:
        """Give an identity a name (``None`` or empty clears it)."""
        with self.g.batch() as uow:
            row = self._identity(uow.s, ident)
            row.name = (name or "").strip() or None
            row.updated_at = utcnow()
        log.info("renamed identity %d", ident)
        return Result(identity=ident, rows={"identities": 1})

    def merge(self, keep: int, other: int, force: bool = False) -> Result:
        """Move everything of ``other`` into ``keep`` and delete ``other``.

        Refused when both were seen by one camera at the same time (one person cannot be in
        two places of one view at once) unless ``force``.
        """
        if keep == other:
            raise InputError(f"cannot merge identity {keep} with itself")
        res = Result(identity=keep)
        with self.g.batch() as uow:
            s = uow.s
            a, b = self._identity(s, keep), self._identity(s, other)
            if not force:
                self._check_no_overlap(s, keep, other)
            tids = list(s.scalars(select(Tracklet.id).where(Tracklet.identity_id == other)))
            res.add("tracklets", _rowcount(s.execute(
                update(Tracklet).where(Tracklet.identity_id == other).values(identity_id=keep))))
            res.add("exemplars", _rowcount(s.execute(
                update(Exemplar).where(Exemplar.identity_id == other).values(identity_id=keep))))
            self._move_other_references(s, other, keep, res)
            a.name = a.name or b.name
            a.flagged = bool(a.flagged or b.flagged)
            s.delete(b)
            s.flush()
            self._refresh_times(s, a)
            self._moved(uow, tids)
            uow.changes.removed_identities.add(other)
            self._recompute_exemplars(uow, keep, res)
        log.info("merged identity %d into %d (%s)", other, keep, res.summary())
        return res

    def _check_no_overlap(self, s: Session, a: int, b: int) -> None:
        ta, tb = _table(Tracklet).alias("ta"), _table(Tracklet).alias("tb")
        hit = s.execute(select(ta.c.camera_id).where(
            ta.c.identity_id == a, tb.c.identity_id == b, ta.c.camera_id == tb.c.camera_id,
            ta.c.first_ts <= tb.c.last_ts, tb.c.first_ts <= ta.c.last_ts).limit(1)
        ).scalar_one_or_none()
        if hit is not None:
            cam = s.get(Camera, hit)
            raise InputError(
                f"identities {a} and {b} were seen at the same time on camera "
                f"{cam.name if cam else hit!r}: they are two people (use --force to merge "
                "anyway)")

    def _move_other_references(self, s: Session, old: int, new: int, res: Result) -> None:
        """Re-point rows of tables other than tracklets/exemplars that refer to ``old``."""
        for table, col in _referencing(_table(Identity)):
            if table.name in ("tracklets", "exemplars"):
                continue
            res.add(table.name, _rowcount(s.execute(update(table).where(col == old)
                                          .values({col.name: new}))))

    def split(self, ident: int, tracklet_ids: Sequence[int]) -> Result:
        """Move the given tracklets of ``ident`` into a new identity (``Result.identity``)."""
        ids = sorted({int(t) for t in tracklet_ids})
        if not ids:
            raise InputError("split needs at least one tracklet id (--tracklets ...)")
        res = Result()
        with self.g.batch() as uow:
            s = uow.s
            src = self._identity(s, ident)
            owned = set(s.scalars(select(Tracklet.id).where(Tracklet.identity_id == ident)))
            foreign = [t for t in ids if t not in owned]
            if foreign:
                raise NotFoundError(f"tracklet(s) {foreign} do not belong to identity {ident} "
                                    f"(its tracklets: {sorted(owned)})")
            if set(ids) == owned:
                raise InputError(f"split would move every tracklet of identity {ident}; "
                                 "nothing would remain (use rename instead)")
            new = Identity(name=None, flagged=False, created_at=utcnow(), updated_at=utcnow())
            s.add(new)
            s.flush()
            res.identity = new.id
            res.add("tracklets", _rowcount(s.execute(
                update(Tracklet).where(Tracklet.id.in_(ids)).values(identity_id=new.id))))
            res.add("exemplars", _rowcount(s.execute(update(Exemplar).where(
                Exemplar.identity_id == ident, Exemplar.tracklet_id.in_(ids))
                .values(identity_id=new.id))))
            self._refresh_times(s, src)
            self._refresh_times(s, new)
            self._moved(uow, ids)
            self._recompute_exemplars(uow, ident, res)
            self._recompute_exemplars(uow, new.id, res)
        log.info("split %d tracklet(s) of identity %d into new identity %d (%s)", len(ids),
                 ident, res.identity, res.summary())
        return res

    def delete(self, ident: int) -> Result:
        """Erase one identity completely: every row about it and its crop files."""
        res = Result(identity=ident)
        with self._erasing(res) as (uow, trash):
            s = uow.s
            self._identity(s, ident)
            tids = list(s.scalars(select(Tracklet.id).where(Tracklet.identity_id == ident)))
            self._erase_rows(s, _table(Tracklet), tids, res, trash)
            self._erase_rows(s, _table(Identity), [ident], res, trash)
            uow.changes.intervals_removed.update(tids)
            uow.changes.removed_identities.add(ident)
        log.info("deleted identity %d (%s)", ident, res.summary())
        return res

    def purge(self, older_than: timedelta | datetime) -> Result:
        """Erase tracklets (with sightings, crops, exemplars) stored before the cutoff.

        Age is the wall-clock time a tracklet was stored (``created_at``): the moment the
        footage was turned into personal data. Identities left without tracklets and not
        updated since the cutoff go too; the others get their times and exemplars refreshed.
        """
        cutoff = older_than if isinstance(older_than, datetime) else utcnow() - older_than
        if cutoff.tzinfo is None:
            cutoff = cutoff.replace(tzinfo=timezone.utc)
        res = Result()
        with self._erasing(res) as (uow, trash):
            s = uow.s
            old = s.execute(select(Tracklet.id, Tracklet.identity_id)
                            .where(Tracklet.created_at < cutoff)).all()
            touched = {i for _, i in old if i is not None}
            tids = [t for t, _ in old]
            self._erase_rows(s, _table(Tracklet), tids, res, trash)
            uow.changes.intervals_removed.update(tids)
            left = set(s.scalars(select(Tracklet.identity_id).where(
                Tracklet.identity_id.is_not(None)).distinct()))
            gone = [i for i in s.scalars(select(Identity.id).where(Identity.updated_at < cutoff))
                    if i not in left]
            gone += [i for i in touched if i not in left and i not in gone]
            self._erase_rows(s, _table(Identity), gone, res, trash)
            uow.changes.removed_identities.update(gone)
            for i in sorted(touched - set(gone)):
                row = s.get(Identity, i)
                if row is not None:
                    self._refresh_times(s, row)
                    self._recompute_exemplars(uow, i, res)
            used = select(Tracklet.source_id).distinct()
            srcs = list(s.scalars(select(Source.id).where(Source.started_at < cutoff,
                                                          Source.id.not_in(used))))
            self._erase_rows(s, _table(Source), srcs, res, None)
        log.info("purged data stored before %s (%s)", cutoff.isoformat(timespec="seconds"),
                 res.summary())
        return res

    # -- erasure machinery
    @contextmanager
    def _erasing(self, res: Result) -> Iterator[tuple[UnitOfWork, _Trash | None]]:
        """A transaction whose crop files are moved to a trash folder and removed on commit."""
        trash = (_Trash(self.crops_dir / f".trash-{uuid.uuid4().hex}")
                 if self.crops_dir is not None else None)
        try:
            with self.g.batch() as uow:
                yield uow, trash
                uow.s.flush()
        except BaseException:
            if trash is not None:
                for orig, tmp in reversed(trash.moved):  # roll the files back with the rows
                    try:
                        orig.parent.mkdir(parents=True, exist_ok=True)
                        tmp.replace(orig)
                    except OSError:
                        log.error("could not restore a crop file from %s", trash.dir.name)
                shutil.rmtree(trash.dir, ignore_errors=True)
            raise
        if trash is not None:
            shutil.rmtree(trash.dir, ignore_errors=True)
            res.files = len(trash.moved)
            self._prune_empty_dirs({orig.parent for orig, _ in trash.moved})

    def _prune_empty_dirs(self, dirs: Iterable[Path]) -> None:
        from reid_pipeline.gallery.repository import _prune_empty

        assert self.crops_dir is not None
        root = self.crops_dir.resolve()
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            _prune_empty(d, root)  # deepest first, so emptied parents go too

    def _erase_rows(self, s: Session, table: Table, ids: list[Any], res: Result,
                    trash: _Trash | None) -> None:
        """Delete rows ``ids`` of ``table`` and, first, every row referring to them."""
        if not ids:
            return
        pk = next(iter(table.primary_key.columns))
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for child, col in _referencing(table):
                if child is table:
                    continue
                cpk = next(iter(child.primary_key.columns))
                child_ids = list(s.scalars(select(cpk).where(col.in_(chunk))))
                self._erase_rows(s, child, child_ids, res, trash)
            if table.name == Crop.__tablename__ and trash is not None:
                for (path,) in s.execute(select(Crop.path).where(Crop.id.in_(chunk))):
                    self._trash(path, trash)
            res.add(table.name, _rowcount(s.execute(delete(table).where(pk.in_(chunk)))))

    def _trash(self, rel: str, trash: _Trash) -> None:
        src = self._safe_path(rel)
        if not src.exists():
            return
        dst = trash.dir / f"{len(trash.moved):08d}{src.suffix}"
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.replace(dst)
        trash.moved.append((src, dst))

    # -- export
    def export(self, out: TextIO, fmt: str = "csv", identity: int | None = None) -> int:
        """Write every sighting (with its identity and camera) as CSV or JSON lines.

        For a data-subject request, ``identity`` limits it to one person. Returns rows.
        """
        if fmt not in ("csv", "jsonl"):
            raise InputError(f"export format {fmt!r}: choose csv or jsonl")
        n = 0
        with self.g.read() as s:
            if identity is not None and s.get(Identity, identity) is None:
                raise NotFoundError(f"identity {identity} does not exist in the gallery")
            q = (select(Tracklet.identity_id, Identity.name, Camera.name, Tracklet.track_id,
                        Tracklet.id, SightingRow.frame, SightingRow.timestamp, SightingRow.x1,
                        SightingRow.y1, SightingRow.x2, SightingRow.y2,
                        SightingRow.confidence, Tracklet.score)
                 .join(Tracklet, Tracklet.id == SightingRow.tracklet_id)
                 .join(Camera, Camera.id == Tracklet.camera_id)
                 .outerjoin(Identity, Identity.id == Tracklet.identity_id)
                 .order_by(Camera.name, SightingRow.timestamp, Tracklet.track_id))
            if identity is not None:
                q = q.where(Tracklet.identity_id == identity)
            writer = csv.writer(out) if fmt == "csv" else None
            if writer:
                writer.writerow(EXPORT_FIELDS)
            for row in s.execute(q.execution_options(yield_per=1000)):
                rec = dict(zip(EXPORT_FIELDS, row))
                if writer:
                    writer.writerow(["" if v is None else v for v in rec.values()])
                else:
                    out.write(json.dumps(rec) + "\n")
                n += 1
        log.info("exported %d sighting rows", n)
        return n

    def export_text(self, fmt: str = "csv", identity: int | None = None) -> str:
        buf = io.StringIO()
        self.export(buf, fmt, identity)
        return buf.getvalue()


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
