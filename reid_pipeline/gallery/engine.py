"""Opening the gallery database: URL/path resolution, SQLite settings, migrations, errors.

Why a module of its own: every way a database can be wrong for the user (bad URL,
unreachable server, locked or corrupt file, read-only folder) must end in one clear
``DatabaseError`` naming the (redacted) database, and that mapping is shared by opening,
reading and writing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from reid_pipeline.errors import DatabaseError
from reid_pipeline.gallery.models import Base
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def is_url(url_or_path: str) -> bool:
    """A string with a scheme (``postgresql+psycopg://...``, ``sqlite:///x``) is a URL."""
    return "://" in url_or_path


def explain(exc: BaseException, shown: str, busy_timeout_s: float | None = None) -> str:
    """Turn a driver exception into a one-line, user-actionable reason."""
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    low = str(orig).lower()
    if "database is locked" in low or "database table is locked" in low:
        waited = (
            f" (waited {busy_timeout_s:g}s, config key gallery.busy_timeout_s)"
            if busy_timeout_s is not None
            else ""
        )
        return f"database {shown} is locked by another writer{waited}"
    if "file is not a database" in low or "file is encrypted" in low:
        return f"database {shown} is not a database file (or is corrupt)"
    if "readonly" in low or "read-only" in low:
        return f"database {shown} is read-only: {text}"
    if "unable to open database file" in low:
        return f"database {shown} cannot be opened (missing folder or no permission)"
    if "disk image is malformed" in low or "malformed" in low:
        return f"database {shown} is corrupt: {text}"
    if "does not exist" in low and ("database" in low or "role" in low):
        return f"database {shown}: {redact_url(text.split('FATAL:')[-1].strip())}"
    if any(
        k in low
        for k in (
            "connection refused",
            "could not connect",
            "connection failed",
            "timeout expired",
            "name or service not known",
            "could not translate host",
            "no route to host",
        )
    ):
        return f"database {shown} is unreachable: {redact_url(text)}"
    return f"database {shown}: {redact_url(text)}"


@contextmanager
def db_errors(shown: str, busy_timeout_s: float | None = None) -> Iterator[None]:
    """Re-raise SQLAlchemy/driver failures as ``DatabaseError`` naming the database."""
    try:
        yield
    except SQLAlchemyError as e:
        raise DatabaseError(explain(e, shown, busy_timeout_s)) from e


def _sqlite_settings(engine: Engine, busy_timeout_s: float) -> None:
    """WAL, foreign keys, busy timeout; explicit BEGIN so write batches take the lock early.

    pysqlite's implicit transactions start a write lazily, which can fail with 'database is
    locked' *without* waiting when a read must be upgraded; ``BEGIN IMMEDIATE`` for write
    units of work waits the busy timeout instead and never half-applies.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        mode = cur.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; durable at checkpoints
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sqlite_path(path_str: str, create: bool = True) -> tuple[URL, Path, str]:
    p = Path(path_str).expanduser()
    shown = str(p)
    if p.is_dir():
        raise DatabaseError(f"database {shown} is a folder, not a database file")
    if not p.exists() and not create:
        raise DatabaseError(f"database {shown} does not exist")
    if not p.exists():
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise DatabaseError(
                f"database {shown}: cannot create its folder: {e.strerror or e}"
            ) from None
        if not os.access(p.parent, os.W_OK):
            raise DatabaseError(
                f"database {shown} cannot be created: folder {str(p.parent)!r} is not writable"
            )
    else:
        with open(p, "rb") as fh:
            head = fh.read(16)
        if head and not head.startswith(b"SQLite format 3\x00"):
            raise DatabaseError(f"database {shown} is not a database file (or is corrupt)")
    return URL.create("sqlite", database=str(p.resolve())), p.resolve(), shown


def create_gallery_engine(
    url_or_path: str, busy_timeout_s: float, create: bool = True
) -> tuple[Engine, str, Path | None]:
    """Build an engine for a bare path (SQLite) or any SQLAlchemy URL.

    ``create=False``: a SQLite file must already exist (read-only commands must not leave an
    empty database behind a typo).

    Returns (engine, shown, sqlite_file) where ``shown`` is the redacted name used in every
    message and ``sqlite_file`` is the database file for SQLite (None for servers).
    """
    if not url_or_path or not str(url_or_path).strip():
        raise DatabaseError("database: no path or URL given (config key gallery.db)")
    sqlite_file: Path | None = None
    if is_url(url_or_path):
        shown = redact_url(url_or_path)
        try:
            url = make_url(url_or_path)
        except (ArgumentError, ValueError) as e:
            raise DatabaseError(f"database {shown} is not a valid database URL: {e}") from None
        if url.drivername in ("postgresql", "postgres"):
            url = url.set(drivername="postgresql+psycopg")  # the driver we ship
        if (
            url.get_backend_name() == "sqlite"
            and url.database not in (None, "", ":memory:")
            and not url.query
            and not url.database.startswith("file:")
        ):
            # a plain sqlite:///path gets the same checks as a bare path; URI-style ones
            # (sqlite:///file:x?mode=ro&uri=true) are passed through untouched
            url, sqlite_file, _ = _sqlite_path(url.database, create)
    else:
        url, sqlite_file, shown = _sqlite_path(url_or_path, create)

    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    try:
        backend = url.get_backend_name()
    except Exception:  # noqa: BLE001 - any failure here means a bad URL
        raise DatabaseError(f"database {shown} is not a valid database URL") from None
    if backend == "sqlite":
        kwargs["connect_args"] = {"timeout": busy_timeout_s, "check_same_thread": False}
    elif backend == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": max(1, int(min(busy_timeout_s, 10) or 5))}
    try:
        engine = create_engine(url, **kwargs)
    except NoSuchModuleError:
        raise DatabaseError(
            f"database {shown}: unsupported database driver "
            f"{url.drivername!r} (use sqlite or postgresql+psycopg)"
        ) from None
    except (ArgumentError, ImportError, TypeError, ValueError) as e:
        raise DatabaseError(f"database {shown} is not a valid database URL: {e}") from None
    if backend == "sqlite":
        _sqlite_settings(engine, busy_timeout_s)
    return engine, shown, sqlite_file


@contextmanager
def _sqlite_open_lock(engine: Engine) -> Iterator[None]:
    """Serialise first opens of one SQLite file across threads and processes.

    The SQLite counterpart of PostgreSQL's advisory lock below: switching a fresh file to
    WAL and migrating it from several connections at once can leave one waiting out the busy
    timeout. An exclusive ``flock`` on ``<db>-lock`` is held only while ``migrate`` runs;
    where it cannot be created (read-only folder) opening proceeds without it.
    """
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        yield
        return
    try:
        import fcntl

        fh = open(f"{path}-lock", "a+")  # noqa: SIM115 - held for the with-block
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield
    finally:
        fh.close()  # releases the lock


def migrate(engine: Engine, shown: str, busy_timeout_s: float) -> None:
    """Bring the schema to the newest Alembic revision (a no-op when already there)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    acfg = AlembicConfig()
    acfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(acfg).get_current_head()
    with db_errors(shown, busy_timeout_s), _sqlite_open_lock(engine):
        # read first: an up-to-date gallery opens without taking the write lock, so a report
        # can open it while a long `reid process` is writing (or from a read-only copy)
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
            if current is None and conn.dialect.name == "sqlite":
                # a SQLite file is one application's database: never add our tables to
                # another program's file (a server database may host many applications)
                from sqlalchemy import inspect

                foreign = set(inspect(conn).get_table_names()) - set(Base.metadata.tables)
                if foreign:
                    raise DatabaseError(
                        f"database {shown} is not a reid gallery (it has "
                        f"other tables: {', '.join(sorted(foreign)[:5])})"
                    )
        if current == head:
            return
        log.info("gallery %s: migrating schema %s -> %s", shown, current, head)
        with engine.execution_options(sqlite_immediate=True).begin() as conn:
            if conn.dialect.name == "postgresql":
                # two processes opening a fresh gallery at once: the second waits here and
                # then finds the schema at head (SQLite gets the same from BEGIN IMMEDIATE)
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7368124)")
            acfg.attributes["connection"] = conn
            command.upgrade(acfg, "head")
    log.debug("gallery %s schema at head", shown)
