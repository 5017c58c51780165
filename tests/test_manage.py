"""Gallery management: merge/split/rename/delete/purge/export on SQLite and PostgreSQL.

Every test checks the whole database for orphans (a row whose foreign key points nowhere)
and the crop folder for orphan files (a JPEG no row names, or a row naming no JPEG), and
that each operation is one transaction (a failure halfway changes nothing, files included).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import create_engine, event, func, select, text, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from reid_pipeline.config import GalleryConfig
from reid_pipeline.errors import InputError, NotFoundError
from reid_pipeline.gallery import Gallery
from reid_pipeline.gallery.manage import GalleryManager, parse_age
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

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET_NAME = "Jane Secret-Doe"
DIM = 16


@pytest.fixture(params=["sqlite", "postgresql"])
def opened(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gallery]:
    """An empty, migrated gallery: a SQLite file, or a private schema in PostgreSQL `test`."""
    crops = tmp_path / "crops"
    if request.param == "sqlite":
        g = Gallery.open(str(tmp_path / "reid.db"), GalleryConfig(exemplar_dtype="float32"), crops)
        yield g
        g.close()
        return
    schema = f"t_manage_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    g = Gallery.open(
        f"{PG_URL}?options=-csearch_path%3D{schema}", GalleryConfig(exemplar_dtype="float32"), crops
    )
    try:
        yield g
    finally:
        g.close()
        with admin.connect() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def _jpeg(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), rng.integers(0, 255, (32, 16, 3), dtype=np.uint8))


def populate(engine: Engine, crops: Path) -> dict[str, int]:
    """Three identities over two cameras; identity 1 has 3 tracklets, 2 has 2, 3 has 1.

    Returns ids by role. Each tracklet has 4 sightings, 2 crops (files on disk) and 2 exemplars.
    """
    rng = np.random.default_rng(0)
    with Session(engine) as s, s.begin():
        cams = [Camera(name="lobby"), Camera(name="street")]
        s.add_all(cams)
        s.flush()
        srcs = [Source(camera_id=c.id, fingerprint=f"fp{c.id}") for c in cams]
        s.add_all(srcs)
        idents = [Identity(name=SECRET_NAME if i == 0 else None) for i in range(3)]
        s.add_all(idents)
        s.flush()
        plan = [
            (0, 0, 0.0),
            (0, 1, 50.0),
            (0, 0, 200.0),
            (1, 0, 100.0),
            (1, 1, 300.0),
            (2, 1, 0.0),
        ]  # (identity index, camera index, start time)
        for tid, (who, cam, t0) in enumerate(plan, start=1):
            tr = Tracklet(
                camera_id=cams[cam].id,
                source_id=srcs[cam].id,
                track_id=tid,
                first_frame=int(t0 * 10),
                last_frame=int(t0 * 10) + 30,
                first_ts=t0,
                last_ts=t0 + 3.0,
                identity_id=idents[who].id,
                score=0.9,
            )
            s.add(tr)
            s.flush()
            for k in range(4):
                s.add(
                    SightingRow(
                        tracklet_id=tr.id,
                        frame=tr.first_frame + 10 * k,
                        timestamp=t0 + k,
                        x1=1,
                        y1=2,
                        x2=30,
                        y2=80,
                        confidence=0.8,
                    )
                )
            for k in range(2):
                rel = f"{cams[cam].name}/{tr.id}_{k}.jpg"
                _jpeg(crops / rel, tid * 10 + k)
                s.add(Crop(tracklet_id=tr.id, frame=tr.first_frame + 10 * k, path=rel))
                vec = (rng.normal(size=DIM) + 5 * who).astype(np.float32)
                s.add(
                    Exemplar(
                        identity_id=idents[who].id,
                        tracklet_id=tr.id,
                        model_version="test-v1",
                        dim=DIM,
                        dtype="float32",
                        vector=vec.tobytes(),
                    )
                )
        s.flush()
        for i in idents:
            lo = min(t0 for who, _, t0 in plan if idents[who] is i)
            hi = max(t0 for who, _, t0 in plan if idents[who] is i) + 3.0
            i.first_seen, i.last_seen = lo, hi
        return {"a": idents[0].id, "b": idents[1].id, "c": idents[2].id}


def orphans(engine: Engine, crops: Path) -> list[str]:
    """Every dangling foreign key in any table, and every crop file/row without its pair."""
    problems = []
    with engine.connect() as c:
        for table in Base.metadata.sorted_tables:
            for fk in table.foreign_keys:
                parent = fk.column.table
                q = (
                    select(func.count())
                    .select_from(table)
                    .where(fk.parent.is_not(None), fk.parent.not_in(select(fk.column)))
                )
                n = c.execute(q).scalar_one()
                if n:
                    problems.append(f"{n} {table.name}.{fk.parent.name} -> {parent.name}")
        rows = {p for (p,) in c.execute(select(Crop.path))}
    files = {p.relative_to(crops).as_posix() for p in crops.rglob("*") if p.is_file()}
    problems += [f"file without row: {f}" for f in sorted(files - rows)]
    problems += [f"row without file: {r}" for r in sorted(rows - files)]
    problems += [f"leftover dir: {d}" for d in crops.rglob(".trash*")]
    return problems


def counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as c:
        return {
            t.name: c.execute(select(func.count()).select_from(t)).scalar_one()
            for t in Base.metadata.sorted_tables
        }


@pytest.fixture
def gallery(opened: Gallery) -> tuple[GalleryManager, Engine, Path, dict[str, int]]:
    crops = opened.crops_dir
    assert crops is not None
    crops.mkdir(parents=True, exist_ok=True)
    ids = populate(opened.engine, crops)
    mgr = GalleryManager(opened, exemplars=3)
    assert orphans(opened.engine, crops) == []
    return mgr, opened.engine, crops, ids


def test_delete_erases_every_row_and_file(gallery, caplog) -> None:
    mgr, engine, crops, ids = gallery
    before = counts(engine)
    with caplog.at_level(logging.DEBUG, logger="reid_pipeline"):
        res = mgr.delete(ids["a"])
    after = counts(engine)
    assert after["identities"] == before["identities"] - 1
    assert after["tracklets"] == before["tracklets"] - 3
    assert after["sightings"] == before["sightings"] - 12
    assert after["crops"] == before["crops"] - 6
    assert after["exemplars"] == before["exemplars"] - 6
    assert res.files == 6
    assert orphans(engine, crops) == []
    with Session(engine) as s:
        assert s.get(Identity, ids["a"]) is None
        assert (
            s.scalar(
                select(func.count()).select_from(Tracklet).where(Tracklet.identity_id == ids["a"])
            )
            == 0
        )
    assert not list(crops.rglob("1_*.jpg"))
    # logs: ids and counts only - no name, no crop path
    assert SECRET_NAME not in caplog.text and ".jpg" not in caplog.text
    assert f"deleted identity {ids['a']}" in caplog.text
    with pytest.raises(NotFoundError, match="identity 999"):
        mgr.delete(999)


def test_delete_is_atomic_files_included(gallery) -> None:
    mgr, engine, crops, ids = gallery
    before = counts(engine)
    files_before = sorted(p.read_bytes() for p in crops.rglob("*.jpg"))

    def failing(conn, cursor, statement, *a) -> None:  # the last step: the identity row
        if re.match(r"\s*DELETE FROM identities\b", statement, re.IGNORECASE):
            raise RuntimeError("disk full")

    event.listen(engine, "before_cursor_execute", failing)
    try:
        with pytest.raises(RuntimeError, match="disk full"):
            mgr.delete(ids["a"])
    finally:
        event.remove(engine, "before_cursor_execute", failing)
    assert counts(engine) == before
    assert sorted(p.read_bytes() for p in crops.rglob("*.jpg")) == files_before
    assert orphans(engine, crops) == []


def test_merge_moves_tracklets_and_recomputes_exemplars(gallery, caplog) -> None:
    mgr, engine, crops, ids = gallery
    # a and b were both on 'lobby' but never at the same time: a merge is allowed
    with caplog.at_level(logging.INFO, logger="reid_pipeline"):
        res = mgr.merge(ids["b"], ids["a"])
    assert SECRET_NAME not in caplog.text
    with Session(engine) as s:
        assert s.get(Identity, ids["a"]) is None
        kept = s.get(Identity, ids["b"])
        assert kept is not None and kept.name == SECRET_NAME  # the only name travels
        assert (kept.first_seen, kept.last_seen) == (0.0, 303.0)
        trs = s.scalars(select(Tracklet).where(Tracklet.identity_id == ids["b"])).all()
        assert len(trs) == 5
        ex = s.scalars(select(Exemplar).where(Exemplar.identity_id == ids["b"])).all()
        assert len(ex) == 3  # 10 candidates reduced to the configured 3 diverse ones
        # diverse: both former identities' looks are represented (their vectors differ by 5)
        means = sorted(round(float(np.frombuffer(e.vector, np.float32).mean())) for e in ex)
        assert means[0] <= 1 and means[-1] >= 4
    assert res.rows["tracklets"] == 3
    assert counts(engine)["identities"] == 2
    assert orphans(engine, crops) == []


def test_merge_refuses_simultaneous_identities_and_bad_ids(gallery) -> None:
    mgr, engine, crops, ids = gallery
    # make c's tracklet (street, 0..3 s) overlap a's street tracklet
    with Session(engine) as s, s.begin():
        s.execute(
            update(Tracklet)
            .where(Tracklet.identity_id == ids["c"])
            .values(first_ts=49.0, last_ts=51.0)
        )
    before = counts(engine)
    with pytest.raises(InputError, match="same time on camera 'street'"):
        mgr.merge(ids["a"], ids["c"])
    assert counts(engine) == before
    mgr.merge(ids["a"], ids["c"], force=True)
    assert counts(engine)["identities"] == before["identities"] - 1
    with pytest.raises(NotFoundError, match="identity 4242"):
        mgr.merge(ids["a"], 4242)
    with pytest.raises(InputError, match="itself"):
        mgr.merge(ids["a"], ids["a"])
    assert orphans(engine, crops) == []


def test_split_moves_tracklets_into_new_identity(gallery) -> None:
    mgr, engine, crops, ids = gallery
    with Session(engine) as s:
        tids = sorted(s.scalars(select(Tracklet.id).where(Tracklet.identity_id == ids["a"])))
    res = mgr.split(ids["a"], [tids[1]])
    new = res.identity
    assert new is not None and new not in ids.values()
    with Session(engine) as s:
        assert sorted(s.scalars(select(Tracklet.id).where(Tracklet.identity_id == new))) == [
            tids[1]
        ]
        assert sorted(s.scalars(select(Tracklet.id).where(Tracklet.identity_id == ids["a"]))) == [
            tids[0],
            tids[2],
        ]
        ex_new = s.scalars(select(Exemplar).where(Exemplar.identity_id == new)).all()
        assert {e.tracklet_id for e in ex_new} == {tids[1]} and len(ex_new) == 2
        ex_old = s.scalars(select(Exemplar).where(Exemplar.identity_id == ids["a"])).all()
        assert tids[1] not in {e.tracklet_id for e in ex_old} and len(ex_old) == 3
        n = s.get(Identity, new)
        assert n is not None and (n.first_seen, n.last_seen) == (50.0, 53.0)
        o = s.get(Identity, ids["a"])
        assert o is not None and (o.first_seen, o.last_seen) == (0.0, 203.0)
    assert orphans(engine, crops) == []

    before = counts(engine)
    with pytest.raises(NotFoundError, match="do not belong to identity"):
        mgr.split(ids["a"], [tids[1]])
    with pytest.raises(InputError, match="every tracklet"):
        mgr.split(ids["a"], [tids[0], tids[2]])
    with pytest.raises(NotFoundError, match="identity 777"):
        mgr.split(777, [1])
    assert counts(engine) == before


def test_split_without_exemplars_embeds_the_crops(gallery) -> None:
    mgr, engine, _crops, ids = gallery
    with Session(engine) as s, s.begin():
        tids = sorted(s.scalars(select(Tracklet.id).where(Tracklet.identity_id == ids["a"])))
        s.execute(
            update(Exemplar).where(Exemplar.tracklet_id == tids[2]).values(tracklet_id=None)
        )  # vectors of tracklet 3 not linked to it
    seen: list[int] = []

    def embed(images: list[np.ndarray]) -> tuple[np.ndarray, str]:
        seen.append(len(images))
        return np.stack([im.astype(np.float32).mean((0, 1)) for im in images]), "test-v1"

    mgr.embed = embed
    res = mgr.split(ids["a"], [tids[2]])
    assert seen == [2]  # the two crop JPEGs of the moved tracklet were read and embedded
    with Session(engine) as s:
        ex = s.scalars(select(Exemplar).where(Exemplar.identity_id == res.identity)).all()
        assert len(ex) == 2 and all(e.dim == 3 and e.tracklet_id == tids[2] for e in ex)


def test_rename(gallery, caplog) -> None:
    mgr, engine, _crops, ids = gallery
    with caplog.at_level(logging.INFO, logger="reid_pipeline"):
        mgr.rename(ids["c"], "  courier ")
    assert "courier" not in caplog.text
    with Session(engine) as s:
        assert s.get(Identity, ids["c"]).name == "courier"  # type: ignore[union-attr]
    mgr.rename(ids["c"], "")
    with Session(engine) as s:
        assert s.get(Identity, ids["c"]).name is None  # type: ignore[union-attr]
    with pytest.raises(NotFoundError):
        mgr.rename(31337, "x")


def test_purge_by_age(gallery) -> None:
    mgr, engine, crops, ids = gallery
    old = utcnow() - timedelta(days=40)
    with Session(engine) as s, s.begin():
        a_tids = sorted(s.scalars(select(Tracklet.id).where(Tracklet.identity_id == ids["a"])))
        # all of c and the first tracklet of a are old
        s.execute(
            update(Tracklet)
            .where((Tracklet.identity_id == ids["c"]) | (Tracklet.id == a_tids[0]))
            .values(created_at=old)
        )
        s.execute(update(Identity).values(updated_at=old, created_at=old))
        s.execute(update(Source).values(started_at=old))
    before = counts(engine)
    res = mgr.purge(parse_age("30d"))
    after = counts(engine)
    assert after["tracklets"] == before["tracklets"] - 2
    assert after["sightings"] == before["sightings"] - 8
    assert after["crops"] == before["crops"] - 4 and res.files == 4
    assert after["identities"] == before["identities"] - 1  # c had nothing newer
    with Session(engine) as s:
        assert s.get(Identity, ids["c"]) is None
        a = s.get(Identity, ids["a"])
        assert a is not None and a.first_seen == 50.0  # refreshed from what remains
        assert (
            s.scalar(
                select(func.count()).select_from(Exemplar).where(Exemplar.tracklet_id == a_tids[0])
            )
            == 0
        )
    assert after["sources"] == before["sources"]  # both sources still have tracklets
    assert orphans(engine, crops) == []
    assert mgr.purge(timedelta(days=30)).rows == {}  # idempotent


def test_export_csv_and_jsonl(gallery) -> None:
    mgr, _engine, _crops, ids = gallery
    csv_text = mgr.export_text("csv")
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("identity,name,camera") and len(lines) == 1 + 24
    assert SECRET_NAME in csv_text
    rows = [json.loads(x) for x in mgr.export_text("jsonl", identity=ids["b"]).splitlines()]
    assert len(rows) == 8 and {r["identity"] for r in rows} == {ids["b"]}
    assert {r["camera"] for r in rows} == {"lobby", "street"}
    with pytest.raises(InputError, match="xml"):
        mgr.export_text("xml")
    with pytest.raises(NotFoundError):
        mgr.export_text("csv", identity=5555)


def test_parse_age() -> None:
    assert parse_age("30d") == timedelta(days=30)
    assert parse_age("12h") == timedelta(hours=12)
    assert parse_age("2w") == timedelta(days=14)
    assert parse_age(7) == timedelta(days=7)
    for bad in ("abc", "-3d", "0"):
        with pytest.raises(InputError):
            parse_age(bad)


def test_the_orphan_check_itself_sees_orphans(gallery) -> None:
    """Guard against a vacuous checker: raw writes that bypass the keys are caught."""
    _, engine, crops, _ = gallery
    sqlite = engine.dialect.name == "sqlite"
    raw = engine.raw_connection()  # a DBAPI connection: switch key checks off for it alone
    try:
        cur = raw.cursor()
        cur.execute(
            "PRAGMA foreign_keys = OFF" if sqlite else "SET session_replication_role = replica"
        )
        cur.execute("DELETE FROM crops WHERE id = 1")
        cur.execute("UPDATE sightings SET tracklet_id = 98765 WHERE id = 1")
        raw.commit()
        cur.execute(
            "PRAGMA foreign_keys = ON" if sqlite else "SET session_replication_role = origin"
        )
    finally:
        raw.close()
    found = orphans(engine, crops)
    assert any(p.startswith("file without row") for p in found)
    assert any("sightings.tracklet_id -> tracklets" in p for p in found)


# ---------------------------------------------------------------- the command line


@pytest.fixture
def cli_db(tmp_path: Path) -> tuple[Path, Path, dict[str, int]]:
    db = tmp_path / "run" / "reid.db"
    with Gallery.open(str(db), GalleryConfig(exemplar_dtype="float32")) as g:
        assert g.crops_dir is not None
        ids = populate(g.engine, g.crops_dir)
        return db, g.crops_dir, ids


def test_cli_manage_commands(cli_db, capsys, monkeypatch) -> None:
    from reid_pipeline.cli import main

    db, _crops, ids = cli_db
    d = ["--db", str(db)]
    assert main(["gallery", "rename", str(ids["c"]), "courier", *d]) == 0
    assert main(["gallery", "export", "--format", "jsonl", "--identity", str(ids["c"]), *d]) == 0
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert len(rows) == 4 and {r["name"] for r in rows} == {"courier"}
    tids = sorted({r["tracklet"] for r in rows})

    assert main(["gallery", "merge", str(ids["a"]), str(ids["b"]), *d]) == 0
    assert f"merged identity {ids['b']} into {ids['a']}" in capsys.readouterr().out
    assert main(["gallery", "split", str(ids["c"]), "--tracklets", str(tids[0]), *d]) == 2
    assert "every tracklet" in capsys.readouterr().err

    # destructive commands refuse to run unattended without --yes (stdin is not a terminal)
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["gallery", "delete", str(ids["c"]), *d]) == 2
    err = capsys.readouterr().err
    assert "pass --yes" in err and len(err.strip().splitlines()) == 1
    with Gallery.open(str(db)) as g:
        assert g.counts()["identities"] == 2
    assert main(["gallery", "delete", str(ids["c"]), "--yes", *d]) == 0
    out_file = db.parent / "all.csv"
    assert main(["gallery", "export", "--out", str(out_file), *d]) == 0
    assert len(out_file.read_text().splitlines()) == 1 + 20  # 5 tracklets x 4 sightings left
    with Gallery.open(str(db)) as g:
        assert g.counts()["identities"] == 1
        assert g.orphan_crop_files() == []
    assert main(["gallery", "purge", "--older-than", "1h", "--yes", *d]) == 0
    assert "purged" in capsys.readouterr().out
    with Gallery.open(str(db)) as g:  # everything is younger than an hour: nothing went
        assert g.counts()["identities"] == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["delete", "999", "--yes"], "identity 999 does not exist"),
        (["merge", "1", "999"], "identity 999 does not exist"),
        (["rename", "999", "x"], "identity 999 does not exist"),
        (["split", "1", "--tracklets", "4"], r"tracklet\(s\) \[4\] do not belong to identity 1"),
        (["purge", "--yes"], "manage.older_than"),
        (["purge", "--older-than", "soon"], "manage.older_than"),
        (["export", "--identity", "999"], "identity 999 does not exist"),
    ],
)
def test_cli_bad_inputs(cli_db, capsys, args, message) -> None:
    from reid_pipeline.cli import main

    db, _, _ = cli_db
    with Gallery.open(str(db)) as g:
        before = g.counts()
    assert main(["gallery", *args, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err
    with Gallery.open(str(db)) as g:
        assert g.counts() == before


def test_cli_missing_database(tmp_path, capsys) -> None:
    from reid_pipeline.cli import main

    assert main(["gallery", "delete", "1", "--yes", "--db", str(tmp_path / "nope.db")]) == 2
    assert "nope.db' does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nope.db").exists()  # a typo never creates an empty gallery
