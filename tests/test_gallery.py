"""Gallery repository on SQLite and PostgreSQL: schema, idempotency, resume, exemplars,
summaries, erasure, and the exemplar cache staying in step with the database."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from gallery_helpers import make_tracklet

from reid_pipeline.errors import NotFoundError
from reid_pipeline.gallery import Gallery
from reid_pipeline.gallery.cache import ExemplarCache


@pytest.fixture
def gallery_options() -> dict[str, object]:
    """The shared ``gallery`` fixture (conftest.py), with exact float32 exemplars."""
    return {"exemplar_dtype": "float32"}


def test_migrated_schema_matches_the_models(gallery: Gallery) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from reid_pipeline.gallery.models import Base

    with gallery.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, Base.metadata)
    assert diff == []


def test_reprocessing_the_same_source_duplicates_nothing(gallery: Gallery) -> None:
    t1 = make_tracklet("lobby", 1, range(20))
    t2 = make_tracklet("lobby", 2, range(10, 30))
    ids = []
    for _ in range(2):  # the same run twice
        sid, start = gallery.begin_source("lobby", "sha:abc", "rtsp://admin:pw@cam/1")
        with gallery.batch() as uow:
            ids.append((uow.record_tracklet(sid, t1), uow.record_tracklet(sid, t2)))
            uow.finish_source(sid, 30)
    assert ids[0] == ids[1]
    counts = gallery.counts()
    assert counts == {
        "cameras": 1,
        "sources": 1,
        "identities": 0,
        "tracklets": 2,
        "sightings": 40,
        "exemplars": 0,
        "crops": 8,
    }
    start = gallery.begin_source("lobby", "sha:abc")
    assert start.done and start.resume_from_frame == 30
    files = sorted(p for p in gallery.crops_dir.rglob("*.jpg"))  # type: ignore[union-attr]
    assert len(files) == 8 and gallery.orphan_crop_files() == []
    # the URI is stored redacted
    from sqlalchemy import select

    from reid_pipeline.gallery.models import Camera, Source

    with gallery.read() as s:
        assert s.scalar(select(Camera.uri)) == "rtsp://***@cam/1"
        assert s.scalar(select(Source.uri)) == "rtsp://***@cam/1"


def test_a_longer_version_of_a_tracklet_adds_only_new_frames(gallery: Gallery) -> None:
    sid, _ = gallery.begin_source("door", "fp")
    a = gallery.record_tracklet(sid, make_tracklet("door", 7, range(10)))
    b = gallery.record_tracklet(sid, make_tracklet("door", 7, range(5, 25)))
    assert a == b
    assert gallery.counts()["sightings"] == 25
    sighting_frames = [s.frame for s in gallery.sightings(camera="door")]
    assert sighting_frames == list(range(25))
    assert {c.frame for c in gallery.crops(tracklet_id=a)} == {0, 5, 10, 15, 20}


def test_interrupted_source_resumes_and_leaves_no_half_tracklet(gallery: Gallery) -> None:
    start = gallery.begin_source("lobby", "fp-1")
    sid = start.source_id
    assert start == gallery.begin_source("lobby", "fp-1")  # same row, still at 0
    with gallery.batch() as uow:
        uow.record_tracklet(sid, make_tracklet("lobby", 1, range(40)))
        uow.set_progress(sid, 35)
    before = gallery.counts()
    # Ctrl-C in the middle of the next batch
    with pytest.raises(KeyboardInterrupt), gallery.batch() as uow:
        uow.record_tracklet(sid, make_tracklet("lobby", 2, range(30, 80)))
        uow.set_progress(sid, 75)
        raise KeyboardInterrupt
    assert gallery.counts() == before
    assert gallery.orphan_crop_files() == []  # the rolled-back batch's JPEGs are gone
    start = gallery.begin_source("lobby", "fp-1")
    assert (start.source_id, start.resume_from_frame, start.done) == (sid, 35, False)
    assert start.next_track_id == 2
    sid2, resume = start  # unpacks as the documented pair
    assert (sid2, resume) == (sid, 35)
    gallery.set_progress(sid, 20)  # never moves backwards
    assert gallery.begin_source("lobby", "fp-1").resume_from_frame == 35


def test_exemplars_stay_bounded_and_diverse(gallery: Gallery) -> None:
    rng = np.random.default_rng(0)
    iid = gallery.create_identity()
    centers = rng.normal(0, 5, (4, 16)).astype(np.float32)  # four distinct views
    for batch in range(6):  # many near-duplicates of the views arrive over time
        view = centers[batch % 4]
        vecs = view + rng.normal(0, 0.01, (10, 16)).astype(np.float32)
        kept = gallery.add_exemplars(iid, vecs, "m1", keep=4)
        assert len(kept) <= 4
    ids, stored = gallery.exemplars("m1")
    assert len(stored) == 4 and set(ids.tolist()) == {iid}
    nearest_view = np.abs(stored[:, None, :] - centers[None]).sum(-1).argmin(1)
    assert sorted(nearest_view.tolist()) == [0, 1, 2, 3]  # one of each view, no duplicates
    # another model version is kept apart
    gallery.add_exemplars(iid, rng.normal(size=(2, 8)), "m2", keep=4)
    assert gallery.exemplars("m2")[1].shape == (2, 8)
    assert len(gallery.exemplars("m1")[1]) == 4
    with pytest.raises(NotFoundError, match="identity 999"):
        gallery.add_exemplars(999, vecs, "m1")


def test_identities_summary_and_sightings_export(gallery: Gallery) -> None:
    s1, _ = gallery.begin_source("lobby", "a")
    s2, _ = gallery.begin_source("street", "b")
    with gallery.batch() as uow:
        t1 = uow.record_tracklet(s1, make_tracklet("lobby", 1, range(10)))
        t2 = uow.record_tracklet(s2, make_tracklet("street", 1, range(50, 60)))
        t3 = uow.record_tracklet(s2, make_tracklet("street", 2, range(5)))
        a = uow.create_identity(name="courier")
        b = uow.create_identity()
        uow.assign(t1, a, 0.9)
        uow.assign(t2, a, 0.8)
        uow.assign(t3, b, None)
    rows = {r.id: r for r in gallery.identities()}
    assert rows[a].cameras == ["lobby", "street"] and rows[a].name == "courier"
    assert rows[a].first_seen == 0.0 and rows[a].last_seen == pytest.approx(59 / 25)
    assert rows[a].sightings == 20 and rows[a].tracklets == 2
    assert rows[b].cameras == ["street"] and rows[b].sightings == 5
    exported = list(gallery.sightings())
    assert len(exported) == 25
    assert [(e.camera, e.frame) for e in exported] == sorted((e.camera, e.frame) for e in exported)
    first = exported[0]
    assert (first.camera, first.frame, first.track, first.identity) == ("lobby", 0, 1, a)
    assert first.score == pytest.approx(0.9) and first.bbox == (10.0, 20.0, 40.0, 100.0)
    # moving a tracklet to another identity updates both identities' first/last seen
    gallery.assign(t2, b, 0.7)
    rows = {r.id: r for r in gallery.identities()}
    assert rows[a].cameras == ["lobby"] and rows[a].last_seen == pytest.approx(9 / 25)


def _three_identities(gallery: Gallery) -> tuple[dict[str, int], dict[str, int]]:
    """a (named, flagged): lobby + street; b: one provisional street tracklet; c: nothing;
    plus one unassigned lobby tracklet. Returns identity ids and tracklet ids by role."""
    s1, _ = gallery.begin_source("lobby", "a")
    s2, _ = gallery.begin_source("street", "b")
    with gallery.batch() as uow:
        t = {
            "a1": uow.record_tracklet(s1, make_tracklet("lobby", 1, range(10))),
            "a2": uow.record_tracklet(s2, make_tracklet("street", 4, range(50, 60))),
            "b1": uow.record_tracklet(
                s2, make_tracklet("street", 5, range(70, 75)), provisional=True
            ),
            "free": uow.record_tracklet(s1, make_tracklet("lobby", 2, range(20, 25))),
        }
        i = {
            "a": uow.create_identity(name="courier", flagged=True),
            "b": uow.create_identity(),
            "c": uow.create_identity(),
        }
        uow.assign(t["a1"], i["a"], 0.9)
        uow.assign(t["a2"], i["a"], 0.8)
        uow.assign(t["b1"], i["b"], 0.5, provisional=True)
    return i, t


def test_read_methods_for_report_search_and_stream(gallery: Gallery) -> None:
    i, t = _three_identities(gallery)
    a, b, c = i["a"], i["b"], i["c"]
    # the live stream: every identity, and the flagged ones (re-read while it runs)
    assert gallery.identity_ids() == {a, b, c}
    assert gallery.identity_ids(flagged=True) == {a}
    assert gallery.identity_ids(flagged=False) == {b, c}
    gallery.set_identity(b, flagged=True)
    assert gallery.identity_ids(flagged=True) == {a, b}
    # the search: names and per-camera presence of the hits
    assert gallery.identity_names([a, b, 999]) == {a: "courier", b: None}
    assert gallery.identity_names([]) == {}
    pres = gallery.camera_presence([a, b, c, 999])
    assert [(p.identity_id, p.camera, p.sightings, p.tracklets) for p in pres] == [
        (a, "lobby", 10, 1),
        (a, "street", 10, 1),
        (b, "street", 5, 1),
    ]
    assert (pres[0].first_seen, pres[0].last_seen) == (0.0, pytest.approx(9 / 25))
    assert (pres[1].first_seen, pres[1].last_seen) == (pytest.approx(2.0), pytest.approx(59 / 25))
    assert gallery.camera_presence([]) == [] and gallery.camera_presence([c]) == []
    # the report: every assigned tracklet (provisional too) with its first frame
    spans = gallery.tracklet_spans()
    assert [(x.tracklet_id, x.identity_id, x.camera, x.track_id, x.first_frame) for x in spans] == [
        (t["a1"], a, "lobby", 1, 0),
        (t["a2"], a, "street", 4, 50),
        (t["b1"], b, "street", 5, 70),
    ]
    assert (spans[1].start, spans[1].end) == (pytest.approx(2.0), pytest.approx(59 / 25))
    # tracklet_pairs: crop files by (camera, tracker track id), unassigned tracklets too
    assert {(x.camera, x.track_id) for x in gallery.crops()} == {
        ("lobby", 1),
        ("street", 4),
        ("street", 5),
        ("lobby", 2),
    }


def test_export_sightings_is_the_one_format(gallery: Gallery, tmp_path: Path) -> None:
    import csv
    import io
    import json

    from reid_pipeline.errors import InputError
    from reid_pipeline.gallery.export import FIELDS
    from reid_pipeline.report.sightings import write_sightings

    i, t = _three_identities(gallery)
    buf = io.StringIO()
    assert gallery.export_sightings(buf, "csv") == 30
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert len(rows) == 30 and list(rows[0]) == FIELDS
    assert rows[0] == {
        "identity": str(i["a"]),
        "name": "courier",
        "camera": "lobby",
        "track": "1",
        "tracklet": str(t["a1"]),
        "frame": "0",
        "timestamp": "0.0",
        "x1": "10.0",
        "y1": "20.0",
        "x2": "40.0",
        "y2": "100.0",
        "confidence": "0.9",
        "score": "0.9",
    }
    free = [r for r in rows if r["tracklet"] == str(t["free"])]
    assert len(free) == 5 and all(r["identity"] == r["name"] == r["score"] == "" for r in free)
    # what `reid process` writes beside a run is byte for byte the same format
    csv_p, jsonl_p, n = write_sightings(gallery.sightings(), tmp_path)
    assert n == 30 and csv_p.read_bytes().decode() == buf.getvalue()
    buf = io.StringIO()
    assert gallery.export_sightings(buf, "jsonl", identity_id=i["b"]) == 5
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert all(list(x) == FIELDS for x in lines)
    assert {(x["identity"], x["name"], x["camera"], x["track"]) for x in lines} == {
        (i["b"], None, "street", 5)
    }
    assert [json.loads(x) for x in jsonl_p.read_text().splitlines()][0] == {
        k: (None if v == "" else v)
        for k, v in zip(
            FIELDS,
            [i["a"], "courier", "lobby", 1, t["a1"], 0, 0.0, 10.0, 20.0, 40.0, 100.0, 0.9, 0.9],
        )
    }
    assert gallery.export_sightings(io.StringIO(), "csv", identity_id=i["c"]) == 0
    with pytest.raises(InputError, match="xml"):
        gallery.export_sightings(io.StringIO(), "xml")
    with pytest.raises(NotFoundError, match="identity 999"):
        gallery.export_sightings(io.StringIO(), "csv", identity_id=999)


def test_delete_identity_erases_rows_and_files(gallery: Gallery) -> None:
    sid, _ = gallery.begin_source("lobby", "a")
    with gallery.batch() as uow:
        keep_t = uow.record_tracklet(sid, make_tracklet("lobby", 1, range(10)))
        gone_t = uow.record_tracklet(sid, make_tracklet("lobby", 2, range(10)))
        keep, gone = uow.create_identity(), uow.create_identity()
        uow.assign(keep_t, keep)
        uow.assign(gone_t, gone)
        uow.add_exemplars(keep, np.ones((2, 4)), "m")
        uow.add_exemplars(gone, np.zeros((2, 4)), "m")
    gone_files = [c.path for c in gallery.crops(identity_id=gone)]
    assert gone_files and all(p is not None and p.exists() for p in gone_files)
    assert gallery.delete_identity(gone) == len(gone_files)
    assert not any(p is not None and p.exists() for p in gone_files)
    assert [r.id for r in gallery.identities()] == [keep]
    c = gallery.counts()
    assert (c["tracklets"], c["sightings"], c["crops"], c["exemplars"]) == (1, 10, 2, 1)
    assert gallery.orphan_crop_files() == []
    with pytest.raises(NotFoundError):
        gallery.delete_identity(gone)


def test_exemplar_cache_follows_commits_only(gallery: Gallery) -> None:
    rng = np.random.default_rng(1)
    a = gallery.create_identity()
    gallery.add_exemplars(a, rng.normal(size=(3, 8)), "m", keep=3)
    cache = ExemplarCache(gallery, "m", device="cpu")
    other = ExemplarCache(gallery, "other-model", device="cpu")

    def db_view() -> dict[int, np.ndarray]:
        ids, vecs = gallery.exemplars("m")
        return {int(i): vecs[ids == i] for i in np.unique(ids)}

    def same(x: dict[int, np.ndarray], y: dict[int, np.ndarray]) -> bool:
        def canon(v: np.ndarray) -> np.ndarray:
            return v[np.lexsort(v.T[::-1])]

        return x.keys() == y.keys() and all(
            np.allclose(canon(x[k]), canon(y[k]), atol=1e-6) for k in x
        )

    assert same(cache.snapshot(), db_view())
    with pytest.raises(RuntimeError), gallery.batch() as uow:
        b = uow.create_identity()
        uow.add_exemplars(b, rng.normal(size=(2, 8)), "m")
        raise RuntimeError("rolled back")
    assert same(cache.snapshot(), db_view()) and cache.num_identities == 1
    for _ in range(30):  # many identities, replacements and removals: growth and compaction
        with gallery.batch() as uow:
            b = uow.create_identity()
            uow.add_exemplars(b, rng.normal(size=(4, 8)), "m", keep=2)
            uow.add_exemplars(a, rng.normal(size=(2, 8)), "m", keep=3)
        if b % 3 == 0:
            gallery.delete_identity(b)
    assert same(cache.snapshot(), db_view())
    assert same(ExemplarCache(gallery, "m").snapshot(), cache.snapshot())
    valid = cache.identity_ids >= 0
    assert int(valid.sum()) == len(cache) == sum(len(v) for v in db_view().values())
    assert len(other) == 0  # other model versions are not mixed in


def test_crop_folder_is_recorded_for_later_readers(tmp_path: Path) -> None:
    from gallery_helpers import pg_schema

    from reid_pipeline.config import GalleryConfig

    with pg_schema() as url:
        with Gallery.open(url, GalleryConfig(), tmp_path / "my-crops") as g:
            sid, _ = g.begin_source("cam/with slash", "fp")
            g.record_tracklet(sid, make_tracklet("cam/with slash", 1, range(5)))
        with Gallery.open(url, GalleryConfig()) as g:  # a report opening it later
            assert g.crops_dir == (tmp_path / "my-crops").resolve()
            (crop,) = g.crops()
            assert crop.path is not None and crop.path.is_file()
            assert crop.relpath.startswith("cam_with_slash/")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_processes_opening_a_fresh_gallery_at_once(backend: str, tmp_path: Path) -> None:
    """Both migrate-on-open calls succeed; the schema is created once."""
    from concurrent.futures import ThreadPoolExecutor
    from contextlib import ExitStack

    from gallery_helpers import pg_schema

    from reid_pipeline.config import GalleryConfig

    with ExitStack() as stack:
        url = (
            str(tmp_path / "fresh.db") if backend == "sqlite" else stack.enter_context(pg_schema())
        )

        def open_and_write(i: int) -> int:
            with Gallery.open(url, GalleryConfig(), tmp_path / "crops") as g:
                return g.ensure_camera(f"cam{i}")

        with ThreadPoolExecutor(4) as pool:
            ids = list(pool.map(open_and_write, range(4)))
        assert sorted(ids) == [1, 2, 3, 4]


def test_fp16_storage_round_trip_and_overflow_guard(tmp_path: Path) -> None:
    from reid_pipeline.config import GalleryConfig

    with Gallery.open(str(tmp_path / "g.db"), GalleryConfig(exemplar_dtype="float16")) as g:
        iid = g.create_identity()
        small = np.array([[0.1, -2.5, 3.0, 0.0]], np.float32)
        huge = np.array([[1e6, 0.0, 0.0, 0.0]], np.float32)  # beyond fp16: kept as fp32
        g.add_exemplars(iid, np.concatenate([small, huge]), "m", keep=5)
        _, vecs = g.exemplars("m")
        got = vecs[np.argsort(vecs[:, 0])]
        assert np.allclose(got, np.concatenate([small, huge]), rtol=1e-3)
        assert np.isfinite(vecs).all()
        g.set_identity(iid, name="courier", flagged=True)
        (row,) = g.identities()
        assert (row.name, row.flagged) == ("courier", True)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_older_gallery_is_migrated_on_open_with_its_data(backend: str, tmp_path: Path) -> None:
    from contextlib import ExitStack

    from alembic import command
    from alembic.config import Config as AlembicConfig
    from gallery_helpers import pg_schema
    from sqlalchemy import inspect

    from reid_pipeline.config import GalleryConfig
    from reid_pipeline.gallery.engine import MIGRATIONS_DIR, create_gallery_engine

    with ExitStack() as stack:
        url = str(tmp_path / "old.db") if backend == "sqlite" else stack.enter_context(pg_schema())
        engine, _, _ = create_gallery_engine(url, 5.0)
        acfg = AlembicConfig()
        acfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        with engine.begin() as conn:  # a gallery made by the first release
            acfg.attributes["connection"] = conn
            command.upgrade(acfg, "0001")
            conn.exec_driver_sql(
                "INSERT INTO cameras (name, uri, created_at) "
                "VALUES ('lobby', '', CURRENT_TIMESTAMP)"
            )
        assert "ix_tracklets_created" not in {
            i["name"] for i in inspect(engine).get_indexes("tracklets")
        }
        engine.dispose()
        with Gallery.open(url, GalleryConfig(), tmp_path / "crops") as g:
            assert g.ensure_camera("lobby") == 1  # the old row is still there
            names = {i["name"] for i in inspect(g.engine).get_indexes("tracklets")}
            assert "ix_tracklets_created" in names
            with g.engine.connect() as conn:
                from alembic.runtime.migration import MigrationContext

                assert MigrationContext.configure(conn).get_current_revision() == "0002"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_writers_registering_the_same_camera_and_source(backend: str, tmp_path: Path) -> None:
    """Two processes starting on one camera at once end up with one row each, not an error."""
    import threading
    import time
    from contextlib import ExitStack

    from gallery_helpers import pg_schema

    from reid_pipeline.config import GalleryConfig

    with ExitStack() as stack:
        url = str(tmp_path / "w.db") if backend == "sqlite" else stack.enter_context(pg_schema())
        a = stack.enter_context(Gallery.open(url, GalleryConfig(), tmp_path / "crops"))
        b = stack.enter_context(Gallery.open(url, GalleryConfig(), tmp_path / "crops"))
        # round 1 races on the new camera, round 2 (camera known) on the new source
        for n, fp in enumerate(("fp-1", "fp-2"), start=1):
            got: dict[str, object] = {}
            inside = threading.Event()

            def first(
                fp: str = fp, got: dict[str, object] = got, inside: threading.Event = inside
            ) -> None:
                with a.batch() as uow:
                    got["a"] = uow.begin_source("gate", fp).source_id
                    inside.set()
                    time.sleep(0.5)  # still uncommitted while the other one starts

            t = threading.Thread(target=first)
            t.start()
            inside.wait(5)
            got["b"] = b.begin_source("gate", fp).source_id
            t.join()
            assert got["a"] == got["b"]
            assert (a.counts()["cameras"], a.counts()["sources"]) == (1, n)
