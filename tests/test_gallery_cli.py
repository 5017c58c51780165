"""`reid gallery identities`: the table of who was seen where and when, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from gallery_helpers import make_tracklet, pg_schema

from reid_pipeline.cli import main
from reid_pipeline.commands.gallery import format_time
from reid_pipeline.config import GalleryConfig
from reid_pipeline.gallery import Gallery


def _fill(g: Gallery) -> None:
    s1, _ = g.begin_source("lobby", "a")
    s2, _ = g.begin_source("street", "b")
    with g.batch() as u:
        t1 = u.record_tracklet(s1, make_tracklet("lobby", 1, range(100)))
        t2 = u.record_tracklet(s2, make_tracklet("street", 1, range(4000, 4100)))
        a = u.create_identity("courier")
        u.assign(t1, a)
        u.assign(t2, a)
        b = u.create_identity()
        u.assign(u.record_tracklet(s2, make_tracklet("street", 2, range(10))), b)


def test_identities_table_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "reid.db"
    with Gallery.open(str(db), GalleryConfig()) as g:
        _fill(g)
    assert main(["gallery", "identities", "--db", str(db)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "id",
        "name",
        "cameras",
        "first",
        "seen",
        "last",
        "seen",
        "sightings",
        "tracklets",
    ]
    assert out[2].split() == ["1", "courier", "lobby,street", "0:00:00.0", "0:02:44.0", "200", "2"]
    assert out[3].split() == ["2", "street", "0:00:00.0", "0:00:00.4", "10", "1"]
    assert "2 identities" in out[-1] and "1 seen in more than one camera" in out[-1]


def test_identities_table_postgres_and_default_db(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pg_schema() as url:
        with Gallery.open(url, GalleryConfig(), tmp_path / "crops") as g:
            _fill(g)
        assert main(["gallery", "identities", "--set", f"gallery.db={url}"]) == 0
        assert "courier" in capsys.readouterr().out
    # no --db: the default <output.out>/reid.db, which must exist
    assert main(["gallery", "identities", "--set", f"output.out={tmp_path}/none"]) == 2
    assert "none/reid.db" in capsys.readouterr().err


def test_identities_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["gallery", "identities", "--db", str(tmp_path / "typo.db")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "typo.db" in err and "does not exist" in err
    assert not (tmp_path / "typo.db").exists()
    url = "postgresql://bob:hunter2@127.0.0.1:9/test"
    assert main(["gallery", "identities", "--db", url]) == 2
    err = capsys.readouterr().err.strip()
    assert "unreachable" in err and "hunter2" not in err and len(err.splitlines()) == 1
    assert main(["gallery"]) == 2  # no action: usage


def test_format_time() -> None:
    assert format_time(None) == "-"
    assert format_time(3725.25) == "1:02:05.2"
    assert format_time(1_700_000_000.0) == "2023-11-14 22:13:20"
