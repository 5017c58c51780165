"""Every way the gallery database can be wrong ends in one DatabaseError naming it."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest
from gallery_helpers import make_tracklet

from reid_pipeline.config import GalleryConfig
from reid_pipeline.errors import DatabaseError
from reid_pipeline.gallery import Gallery

FAST = GalleryConfig(busy_timeout_s=0.3)


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_locked_database_names_the_file_and_keeps_committed_rows(tmp_path: Path) -> None:
    db = tmp_path / "reid.db"
    with Gallery.open(str(db), FAST) as g:
        sid, _ = g.begin_source("lobby", "fp")
        g.record_tracklet(sid, make_tracklet("lobby", 1, range(10)))
        other = _hold_write_lock(db)
        try:
            t0 = time.monotonic()
            with pytest.raises(DatabaseError) as err:
                g.record_tracklet(sid, make_tracklet("lobby", 2, range(10)))
            waited = time.monotonic() - t0
        finally:
            other.rollback()
            other.close()
        msg = str(err.value)
        assert str(db) in msg and "locked" in msg and "gallery.busy_timeout_s" in msg
        assert "\n" not in msg
        assert 0.25 <= waited < 5  # it waited the busy timeout, not forever
        assert g.orphan_crop_files() == []  # the failed batch's crops were removed
        assert g.counts()["tracklets"] == 1  # nothing committed was lost
        g.record_tracklet(sid, make_tracklet("lobby", 2, range(10)))  # works once released
        assert g.counts()["tracklets"] == 2


def test_locked_new_database_fails_at_open(tmp_path: Path) -> None:
    db = tmp_path / "new.db"
    sqlite3.connect(str(db)).close()  # an empty SQLite file, schema not yet created
    other = _hold_write_lock(db)
    try:
        with pytest.raises(DatabaseError, match="is locked"):
            Gallery.open(str(db), FAST)
    finally:
        other.close()


def test_reading_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    db = tmp_path / "reid.db"
    Gallery.open(str(db), FAST).close()
    other = _hold_write_lock(db)
    try:  # WAL: a report can read while `reid process` writes
        with Gallery.open(str(db), FAST, create=False) as g:
            assert g.identities() == []
    finally:
        other.close()


def test_file_that_is_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "notes.db"
    bad.write_text("these are not the tables you are looking for\n" * 20)
    with pytest.raises(DatabaseError, match="notes.db is not a database"):
        Gallery.open(str(bad), FAST)
    garbage = tmp_path / "trunc.db"
    garbage.write_bytes(b"SQLite format 3\x00" + b"\xff" * 50)  # right magic, broken body
    with pytest.raises(DatabaseError, match="trunc.db"):
        Gallery.open(str(garbage), FAST)


def test_unreachable_postgres_is_named_with_credentials_hidden() -> None:
    url = "postgresql+psycopg://alice:s3cret@127.0.0.1:9/test"  # port 9: nothing listens
    with pytest.raises(DatabaseError) as err:
        Gallery.open(url, FAST)
    msg = str(err.value)
    assert "unreachable" in msg and "127.0.0.1:9" in msg
    assert "s3cret" not in msg and "alice" not in msg and "***@" in msg


@pytest.mark.parametrize(
    "url, expect",
    [
        ("nosuchdb+driver://x/y", "unsupported database driver"),
        ("postgresql+psycopg://u:pw@127.0.0.1:notaport/test", "not a valid database URL"),
        ("", "no path or URL"),
    ],
)
def test_bad_urls(url: str, expect: str) -> None:
    with pytest.raises(DatabaseError, match=expect) as err:
        Gallery.open(url, FAST)
    assert "pw" not in str(err.value)


def test_unwritable_locations(tmp_path: Path) -> None:
    afile = tmp_path / "plain-file"
    afile.write_text("x")
    with pytest.raises(DatabaseError, match="cannot create its folder"):
        Gallery.open(str(afile / "sub" / "reid.db"), FAST)  # parent path is a file
    with pytest.raises(DatabaseError, match="is a folder"):
        Gallery.open(str(tmp_path), FAST)
    with pytest.raises(DatabaseError, match="reid.db"):
        Gallery.open("/proc/reid.db", FAST)  # not writable, even for root


def test_missing_database_is_not_created_by_readers(tmp_path: Path) -> None:
    with pytest.raises(DatabaseError, match="does not exist"):
        Gallery.open(str(tmp_path / "typo.db"), FAST, create=False)
    assert not (tmp_path / "typo.db").exists()


def test_database_on_a_read_only_file(tmp_path: Path) -> None:
    """A read-only copy (e.g. an archived run) can be read; a write names the database."""
    db = tmp_path / "ro.db"
    with Gallery.open(str(db), FAST) as g:
        g.ensure_camera("lobby")
    uri = f"sqlite:///file:{db}?mode=ro&uri=true"
    with Gallery.open(uri, FAST) as g:
        assert g.identities() == []
        with pytest.raises(DatabaseError, match="read-only|readonly"):
            g.ensure_camera("street")


def test_another_programs_sqlite_file_is_left_alone(tmp_path: Path) -> None:
    db = tmp_path / "app.db"
    con = sqlite3.connect(str(db))
    con.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    with pytest.raises(DatabaseError, match="not a reid gallery.*invoices"):
        Gallery.open(str(db), FAST)
    con = sqlite3.connect(str(db))
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    con.close()
    assert tables == {"invoices"}
