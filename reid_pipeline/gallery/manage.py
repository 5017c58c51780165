"""Gallery management: merge, split, rename, delete, purge by age, export.

A gallery of people is personal data, so these operations follow three rules:

- **One transaction each.** An operation either happens completely or not at all; a crash
  or a bad id halfway leaves the gallery as it was.
- **Erasure is total.** Deleting an identity removes every row that refers to it or to its
  tracklets, in every table (found through the schema's foreign keys, so a table added
  later is covered too), and the crop JPEGs on disk. Files cannot be rolled back, so they
  are removed only once the transaction committed (a failed delete keeps them all).
- **Logs carry no personal content**: identity/tracklet ids and counts only; never a name,
  a crop path or a picture.

Exemplars (the few embedding vectors an identity is matched by) are reselected after a
merge or split from the vectors of the identity's tracklets: farthest-point selection in
L1 distance (the geometry of the dichotomy classifier), per model version. When an identity
ends up with tracklets but no vector (a split that moved none), its crops are embedded
again through the ``embed`` callback, if one is given.

The SQL of every operation is the gallery's own (``UnitOfWork.delete_identity``,
``merge_identities``, ``split_identity``, ``purge``, ``reselect_exemplars`` and
``Gallery.export_sightings`` in ``repository.py``); ``GalleryManager`` runs each in one
``gallery.batch()`` and logs what it changed.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from reid_pipeline.errors import ConfigError, DatabaseError, InputError
from reid_pipeline.gallery.models import utcnow
from reid_pipeline.gallery.records import Result
from reid_pipeline.gallery.repository import EmbedFn

if TYPE_CHECKING:
    from reid_pipeline.config import Config
    from reid_pipeline.gallery import Gallery

__all__ = ["EmbedFn", "GalleryManager", "Result", "open_existing", "parse_age"]

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- opening


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
    elif db.startswith("sqlite:///") and db[len("sqlite:///") :] not in ("", ":memory:"):
        path = Path(db[len("sqlite:///") :]).expanduser()
    if path is not None:
        if not path.exists():
            raise DatabaseError(f"database {str(path)!r} does not exist")
        if not path.is_file():
            raise DatabaseError(f"database {str(path)!r} is not a file")
        try:
            con = sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True)
            try:
                tables = {
                    r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
                }
            finally:
                con.close()
        except sqlite3.DatabaseError:
            raise DatabaseError(
                f"database {str(path)!r} is not a database file (or is corrupt)"
            ) from None
        if "identities" not in tables:
            raise DatabaseError(
                f"database {str(path)!r} is not a reid gallery (no identities table)"
            )
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
        raise InputError(
            f"age {text!r}: expected a number with a unit, e.g. 30d, 12h, 2w"
        ) from None
    if not value > 0:
        raise InputError(f"age {text!r}: must be positive")
    return timedelta(seconds=value * units[unit])


# ---------------------------------------------------------------- the manager


class GalleryManager:
    """Management operations on one open ``Gallery`` (its database and crop folder).

    Each operation runs in one ``gallery.batch()`` unit of work, so attached in-memory
    caches hear about it only after it committed.
    """

    def __init__(self, gallery: Gallery, exemplars: int = 5, embed: EmbedFn | None = None) -> None:
        self.g = gallery
        self.exemplars = exemplars
        self.embed = embed

    @property
    def crops_dir(self) -> Path | None:
        return self.g.crops_dir

    def rename(self, ident: int, name: str | None) -> Result:
        """Give an identity a name (``None`` or empty clears it)."""
        with self.g.batch() as uow:
            uow.set_identity(ident, name=(name or "").strip())
        log.info("renamed identity %d", ident)
        return Result(identity=ident, rows={"identities": 1})

    def merge(self, keep: int, other: int, force: bool = False) -> Result:
        """Move everything of ``other`` into ``keep`` and delete ``other``.

        Refused when both were seen by one camera at the same time (one person cannot be in
        two places of one view at once) unless ``force``.
        """
        with self.g.batch() as uow:
            res = uow.merge_identities(
                keep, other, force=force, exemplars=self.exemplars, embed=self.embed
            )
        log.info("merged identity %d into %d (%s)", other, keep, res.summary())
        return res

    def split(self, ident: int, tracklet_ids: Sequence[int]) -> Result:
        """Move the given tracklets of ``ident`` into a new identity (``Result.identity``)."""
        with self.g.batch() as uow:
            res = uow.split_identity(
                ident, tracklet_ids, exemplars=self.exemplars, embed=self.embed
            )
        log.info(
            "split %d tracklet(s) of identity %d into new identity %d (%s)",
            len(set(tracklet_ids)),
            ident,
            res.identity,
            res.summary(),
        )
        return res

    def delete(self, ident: int) -> Result:
        """Erase one identity completely: every row about it and its crop files."""
        with self.g.batch() as uow:
            res = uow.delete_identity(ident)
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
        with self.g.batch() as uow:
            res = uow.purge(cutoff, exemplars=self.exemplars, embed=self.embed)
        log.info(
            "purged data stored before %s (%s)", cutoff.isoformat(timespec="seconds"), res.summary()
        )
        return res

    def export(self, out: TextIO, fmt: str = "csv", identity: int | None = None) -> int:
        """Write every sighting (with its identity and camera) as CSV or JSON lines.

        For a data-subject request, ``identity`` limits it to one person. Returns rows.
        """
        return self.g.export_sightings(out, fmt, identity)

    def export_text(self, fmt: str = "csv", identity: int | None = None) -> str:
        buf = io.StringIO()
        self.export(buf, fmt, identity)
        return buf.getvalue()
