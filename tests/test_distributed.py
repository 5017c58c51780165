"""The distributed mode against a real NATS JetStream server and a real PostgreSQL.

Four generated videos (the demo's people through four cameras; detections from the
scene's ground truth, so the test measures the stream and the matcher, not HOG), the demo's
ReID weights, one config. ``reid worker`` and ``reid matcher`` run as subprocesses, exactly
as an operator starts them; each test has its own subject prefix (so its own streams) and
its own PostgreSQL schema. Checked:

* two workers with two cameras each + one matcher = one ``reid process`` over the four
  videos: the same tracklets, the same number of identities, the same grouping;
* the matcher SIGKILLed mid-run and restarted: no tracklet lost, none recorded twice;
* a worker SIGKILLed mid-run and restarted: it resumes where the matcher committed;
* the NATS server killed and restarted mid-run: everyone reconnects, nothing is lost;
* a ``reid process`` SIGKILLed mid-run, then the same command: the same result;
* malformed payloads and another model version: dead-lettered, counted, matcher unharmed;
* an unreachable broker or database: a one-line error naming it, credentials hidden;
* a live RTSP camera through a worker (the live driver without a gallery of its own).
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gallery_helpers import pg_schema

from reid_pipeline.bench.distributed import (
    backlog,
    child_env,
    delete_streams,
    overrides_args,
    reid_cmd,
    render_site,
    site_overrides,
    stats,
    worker_overrides,
)
from reid_pipeline.config import load_config
from reid_pipeline.config.distributed import DistributedConfig
from reid_pipeline.distributed.broker import Names
from reid_pipeline.gallery import Gallery

BROKER = os.environ.get("REID_TEST_NATS_URL", "nats://127.0.0.1:4222")
CAMERAS = ["lobby1", "street1", "lobby2", "street2"]
TIMEOUT = 120.0
# workers commit every 20 boxes: many small messages, so kills land mid-stream
STREAMING = {"gallery.batch_size": 20}


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _start_nats(port: int, store: Path) -> subprocess.Popen[bytes]:
    exe = shutil.which("nats-server") or "/usr/sbin/nats-server"
    proc = subprocess.Popen(
        [exe, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not _port_open("127.0.0.1", port):
        assert proc.poll() is None and time.monotonic() < deadline, "nats-server did not start"
        time.sleep(0.1)
    return proc


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The machine's NATS server (127.0.0.1:4222, JetStream), started here if absent."""
    proc = None
    if BROKER == "nats://127.0.0.1:4222" and not _port_open("127.0.0.1", 4222):
        proc = _start_nats(4222, tmp_path_factory.mktemp("nats"))
    yield BROKER
    if proc is not None:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return render_site(tmp_path_factory.mktemp("site"), cameras=len(CAMERAS))


def _groups(db: str) -> tuple[set[frozenset[tuple[str, int]]], dict[str, int]]:
    """Identities as sets of tracklets (camera, first frame), and the row counts."""
    with Gallery.open(db) as g:
        by: dict[int, set[tuple[str, int]]] = {}
        for s in g.tracklet_spans():
            by.setdefault(s.identity_id, set()).add((s.camera, s.first_frame))
        return {frozenset(v) for v in by.values()}, g.counts()


def _duplicates(db: str) -> int:
    """Boxes recorded twice (same camera, frame and place): a tracklet stored twice."""
    from sqlalchemy import text

    with Gallery.open(db) as g, g.engine.connect() as c:
        return int(
            c.execute(
                text(
                    "select count(*) from (select t.camera_id, s.frame, s.x1, s.y1 from "
                    "sightings s join tracklets t on t.id = s.tracklet_id "
                    "group by 1, 2, 3, 4 having count(*) > 1) d"
                )
            ).scalar()
            or 0
        )


@pytest.fixture(scope="module")
def reference(site: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One ``reid process`` over the four videos (in process, SQLite)."""
    from reid_pipeline.pipeline.recorded import process_videos

    out = tmp_path_factory.mktemp("reference")
    cfg = load_config(
        None, {**site_overrides(), **worker_overrides(site, CAMERAS), "output.out": str(out)}
    )
    process_videos(cfg, [(str(site["videos"][c]), c) for c in CAMERAS])
    groups, counts = _groups(str(out / "reid.db"))
    assert len(groups) == 4 and counts["tracklets"] == 16, (groups, counts)
    return {"groups": groups, "counts": counts}


class Cluster:
    """One matcher and its workers on a fresh prefix and PostgreSQL schema."""

    def __init__(self, broker: str, db: str, out: Path, site: dict[str, Any], **extra: Any):
        self.broker, self.db, self.out, self.site = broker, db, out, site
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        self.names = Names.of(DistributedConfig(prefix=self.prefix))
        self.common = {
            **site_overrides(),
            "distributed.broker": broker,
            "distributed.prefix": self.prefix,
            "distributed.ack_wait_s": 3,
            "distributed.begin_timeout_s": 60,
            "distributed.status_every_s": 0,
            **extra,
        }
        self.procs: list[subprocess.Popen[str]] = []
        self.matcher: subprocess.Popen[str] | None = None
        out.mkdir(parents=True, exist_ok=True)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[str]:
        log = open(self.out / f"{name}.log", "a")  # noqa: SIM115 - closed with the process
        p = subprocess.Popen(args, env=child_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
        log.close()
        self.procs.append(p)
        return p

    def log(self, name: str) -> str:
        path = self.out / f"{name}.log"
        return path.read_text() if path.is_file() else ""

    def start_matcher(self, wait: bool = True, **extra: Any) -> subprocess.Popen[str]:
        """The matcher; ``wait``: until it answers (workers need not wait: they ask again)."""
        o = {**self.common, **extra}
        self.matcher = self._spawn(
            "matcher",
            reid_cmd("matcher", "--db", self.db, "--out", str(self.out), *overrides_args(o)),
        )
        if not wait:
            return self.matcher
        deadline = time.monotonic() + TIMEOUT
        while self.stats(1.0) is None:
            assert self.matcher.poll() is None, self.log("matcher")
            assert time.monotonic() < deadline, self.log("matcher")
            time.sleep(0.3)
        return self.matcher

    def start_worker(self, name: str, cams: list[str], **extra: Any) -> subprocess.Popen[str]:
        o = {**self.common, **STREAMING, **worker_overrides(self.site, cams), **extra}
        args = [str(self.site["videos"][c]) for c in cams]
        for c in cams:
            args += ["--camera", c]
        return self._spawn(name, reid_cmd("worker", *args, *overrides_args(o)))

    def stats(self, timeout: float = 5.0) -> dict[str, Any] | None:
        return stats(self.broker, self.prefix, timeout)

    def wait(self, proc: subprocess.Popen[str], name: str) -> None:
        try:
            rc = proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"{name} did not finish:\n{self.log(name)}") from None
        assert rc == 0, f"{name} exited {rc}:\n{self.log(name)}"

    def drained(self) -> dict[str, Any]:
        """Wait until the matcher committed everything in the stream; its counters."""
        deadline = time.monotonic() + TIMEOUT
        while self.stats(1.0) is None or backlog(self.broker, self.names.stream) != 0:
            assert self.matcher is not None and self.matcher.poll() is None, self.log("matcher")
            assert time.monotonic() < deadline, self.log("matcher")
            time.sleep(0.2)
        st = self.stats()
        assert st is not None
        return st

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
        delete_streams(self.broker, self.prefix)


@contextmanager
def cluster(broker: str, tmp_path: Path, site: dict[str, Any], **extra: Any) -> Iterator[Cluster]:
    with pg_schema() as db:
        c = Cluster(broker, db, tmp_path, site, **extra)
        try:
            yield c
        finally:
            c.close()


def _stream_count(broker: str, stream: str) -> int:
    return backlog(broker, stream)


# ------------------------------------------------------------------ the tests


def test_two_workers_give_the_identities_of_one_process(
    broker: str, site: dict[str, Any], reference: dict[str, Any], tmp_path: Path
) -> None:
    with cluster(broker, tmp_path, site) as c:
        c.start_matcher(wait=False)
        w1 = c.start_worker("w1", CAMERAS[:2])
        w2 = c.start_worker("w2", CAMERAS[2:])
        c.wait(w1, "w1")
        c.wait(w2, "w2")
        st = c.drained()
        groups, counts = _groups(c.db)
        assert counts["tracklets"] == reference["counts"]["tracklets"]
        assert counts["sightings"] == reference["counts"]["sightings"]
        assert counts["identities"] == reference["counts"]["identities"]
        assert groups == reference["groups"]
        assert st["tracklets"] == counts["tracklets"] and st["dead_letters_total"] == 0
        assert st["messages"] > 8  # the workers streamed (gallery.batch_size 20), not one go
        # every decision was published as an event, the first of each identity as "new"
        events = _stream_count(broker, c.names.events_stream)
        assert events == st["events"] == counts["tracklets"]
        with Gallery.open(c.db) as g:
            assert {s.camera for s in g.tracklet_spans()} == set(CAMERAS)
            assert all(r.status == "done" for r in _sources(g))
        assert "4 tracklets" in c.log("w1") and "published" in c.log("w1")


def _sources(g: Gallery) -> list[Any]:
    from sqlalchemy import select

    from reid_pipeline.gallery.models import Source

    with g.read() as s:
        return list(s.scalars(select(Source)))


_ENGINES: dict[str, Any] = {}


def _progress(db: str) -> dict[str, tuple[int, str]]:
    """camera -> (frames committed, status), read cheaply (polled while processes run)."""
    from sqlalchemy import create_engine, text

    url = db if "://" in db else f"sqlite:///{db}"
    if url not in _ENGINES:
        _ENGINES[url] = create_engine(url)
    try:
        with _ENGINES[url].connect() as c:
            rows = c.execute(
                text(
                    "select c.name, s.frames_processed, s.status from sources s "
                    "join cameras c on c.id = s.camera_id"
                )
            ).all()
    except Exception:  # noqa: BLE001 - not created yet
        return {}
    return {r[0]: (int(r[1]), str(r[2])) for r in rows}


def _tracklet_count(db: str) -> int:
    from sqlalchemy import create_engine, text

    url = db if "://" in db else f"sqlite:///{db}"
    if url not in _ENGINES:
        _ENGINES[url] = create_engine(url)
    try:
        with _ENGINES[url].connect() as c:
            return int(c.execute(text("select count(*) from tracklets")).scalar() or 0)
    except Exception:  # noqa: BLE001 - not created yet
        return 0


def _wait_for(cond: Any, what: str, timeout: float = TIMEOUT, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


def test_matcher_killed_mid_run_loses_nothing_and_records_nothing_twice(
    broker: str, site: dict[str, Any], reference: dict[str, Any], tmp_path: Path
) -> None:
    with cluster(broker, tmp_path, site, **{"distributed.fetch_batch": 1}) as c:
        m1 = c.start_matcher(wait=False)
        w1 = c.start_worker("w1", CAMERAS[:2])
        w2 = c.start_worker("w2", CAMERAS[2:])
        _wait_for(lambda: _tracklet_count(c.db) >= 2, "a first commit")
        m1.send_signal(signal.SIGKILL)
        m1.wait(10)
        killed_at = _tracklet_count(c.db)
        assert 0 < killed_at < 16
        c.start_matcher(wait=False)
        c.wait(w1, "w1")
        c.wait(w2, "w2")
        c.drained()
        groups, counts = _groups(c.db)
        assert counts["tracklets"] == reference["counts"]["tracklets"]
        assert counts["sightings"] == reference["counts"]["sightings"]
        assert _duplicates(c.db) == 0
        assert groups == reference["groups"]


def test_worker_killed_mid_run_resumes_where_the_matcher_committed(
    broker: str, site: dict[str, Any], reference: dict[str, Any], tmp_path: Path
) -> None:
    # a stream of 2 messages at most: with the matcher held still, the worker's third
    # publish is refused and its pipeline waits (back-pressure) - there it is killed
    with cluster(broker, tmp_path, site, **{"distributed.max_backlog": 2}) as c:
        m = c.start_matcher(wait=False)
        w1 = c.start_worker("w1", CAMERAS[:2], **{"distributed.max_inflight": 1})
        _wait_for(lambda: len(_progress(c.db)) == 2, "worker 1's begin", every=0.02)
        m.send_signal(signal.SIGSTOP)
        try:
            _wait_for(lambda: backlog(broker, c.names.stream) == 2, "a full stream")
            time.sleep(1.0)
            assert w1.poll() is None and backlog(broker, c.names.stream) == 2  # it waits
            w1.send_signal(signal.SIGKILL)
            w1.wait(10)
        finally:
            m.send_signal(signal.SIGCONT)
        assert "published" not in c.log("w1")  # it died mid-run
        w2 = c.start_worker("w2", CAMERAS[2:])
        w1b = c.start_worker("w1-again", CAMERAS[:2])
        c.wait(w1b, "w1-again")
        c.wait(w2, "w2")
        c.drained()
        text = c.log("w1-again")
        assert "resumed at" in text, text
        groups, counts = _groups(c.db)
        assert _duplicates(c.db) == 0
        # the same tracklets (a resumed source re-tracks from its commit point, which never
        # cuts a tracklet not yet committed) and the same identities
        assert counts["tracklets"] == reference["counts"]["tracklets"]
        assert counts["sightings"] == reference["counts"]["sightings"]
        assert groups == reference["groups"]
        assert all(s == "done" for _, s in _progress(c.db).values())


def _subject_count(broker: str, stream: str, subject: str) -> int:
    import nats

    from reid_pipeline.distributed.broker import pending

    async def count() -> int:
        nc = await nats.connect(broker)
        try:
            return await pending(nc.jetstream(), stream, subject)
        finally:
            await nc.close()

    return asyncio.run(count())


def test_nats_server_restarted_mid_run(
    site: dict[str, Any], reference: dict[str, Any], tmp_path: Path
) -> None:
    """A broker of the test's own (another port, its own store), killed and restarted while
    the workers publish and the matcher commits."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = tmp_path / "js"
    nats = _start_nats(port, store)
    url = f"nats://127.0.0.1:{port}"
    try:
        with cluster(
            url,
            tmp_path / "run",
            site,
            **{"distributed.fetch_batch": 1, "distributed.publish_timeout_s": 60},
        ) as c:
            c.start_matcher(wait=False)
            w1 = c.start_worker("w1", CAMERAS[:2])
            w2 = c.start_worker("w2", CAMERAS[2:])
            # the broker goes as soon as every source is registered: the workers publish
            # their first tracklets into the outage
            _wait_for(lambda: len(_progress(c.db)) == 4, "the workers' begin", every=0.02)
            # the second worker to register is at the start of its work when the broker
            # goes; the first may have published everything by then (the short clips take a
            # few seconds) and then has nothing to reconnect for
            nats.send_signal(signal.SIGKILL)
            nats.wait(10)
            time.sleep(1.0)
            nats = _start_nats(port, store)
            c.wait(w1, "w1")
            c.wait(w2, "w2")
            # not c.drained(): nats-server 2.9 does not fsync its store, so after a SIGKILL
            # the work-queue stream can keep messages whose acks the restarted consumer
            # already has (they are never delivered again). What counts is the gallery
            want = reference["counts"]["tracklets"]
            _wait_for(lambda: _groups(c.db)[1]["tracklets"] >= want, "every tracklet committed")
            time.sleep(2.0)  # a redelivery, if any, would land now
            groups, counts = _groups(c.db)
            assert counts["tracklets"] == want
            assert _duplicates(c.db) == 0
            assert groups == reference["groups"]
            assert "reconnected" in c.log("matcher")
            assert any("reconnected" in c.log(name) for name in ("w1", "w2"))
    finally:
        nats.terminate()
        nats.wait(10)


def test_process_killed_mid_run_resumes_to_the_same_result(
    site: dict[str, Any], reference: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    o = {
        **site_overrides(),
        **worker_overrides(site, CAMERAS),
        **STREAMING,
        "output.out": str(out),
        "detector.batch": 2,
    }
    args = [str(site["videos"][c]) for c in CAMERAS]
    for cam in CAMERAS:
        args += ["--camera", cam]
    cmd = reid_cmd("process", *args, *overrides_args(o))
    db = str(out / "reid.db")
    p = subprocess.Popen(cmd, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _wait_for(
        lambda: any(f > 0 for f, _ in _progress(db).values()) or p.poll() is not None,
        "a first commit",
    )
    p.send_signal(signal.SIGKILL)
    p.wait(10)
    at_kill = _progress(db)
    assert at_kill and any(s != "done" for _, s in at_kill.values()), at_kill
    done = subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resumed at" in done.stdout, done.stdout
    groups, counts = _groups(db)
    assert _duplicates(db) == 0
    assert counts["tracklets"] == reference["counts"]["tracklets"]
    assert counts["sightings"] == reference["counts"]["sightings"]
    assert groups == reference["groups"]


def test_two_process_runs_writing_one_postgresql_gallery_keep_it_consistent(
    site: dict[str, Any], reference: dict[str, Any], tmp_path: Path
) -> None:
    """Two ``reid process`` processes (not threads), two cameras each, writing one
    PostgreSQL gallery at the same time: both finish, every tracklet and sighting is there
    once, and each process keeps its own cameras' identities consistent. (They do not see
    each other's new identities - that is what ``reid matcher`` is for - so a person seen
    by both halves may be two identities: the count is at least the reference's.) No
    identity is in two places of one camera at once."""
    with pg_schema() as db:
        procs = []
        for k, cams in enumerate((CAMERAS[:2], CAMERAS[2:])):
            o = {
                **site_overrides(),
                **worker_overrides(site, cams),
                **STREAMING,
                "output.out": str(tmp_path / f"run{k}"),
                "gallery.db": db,
                "gallery.crops_dir": str(tmp_path / "crops"),  # one crop store for one gallery
            }
            args = [str(site["videos"][c]) for c in cams]
            for cam in cams:
                args += ["--camera", cam]
            cmd = reid_cmd("process", *args, *overrides_args(o))
            procs.append(
                subprocess.Popen(
                    cmd,
                    env=child_env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT * 2)
            assert p.returncode == 0, out[-3000:]
        groups, counts = _groups(db)
        assert _duplicates(db) == 0
        assert counts["tracklets"] == reference["counts"]["tracklets"]
        assert counts["sightings"] == reference["counts"]["sightings"]
        assert all(st == "done" for _, st in _progress(db).values())
        # the one-place rule: no identity in two places of one camera at the same time
        with Gallery.open(db) as g:
            spans = sorted(g.tracklet_spans(), key=lambda t: (t.identity_id, t.camera, t.start))
        for x, y in zip(spans, spans[1:], strict=False):
            if (x.identity_id, x.camera) == (y.identity_id, y.camera):
                assert y.start > x.end, (x, y)
        assert len(groups) >= len(reference["groups"])


def _bad_messages(version: str) -> list[tuple[str, bytes]]:
    """(reason, message) pairs the matcher must refuse."""
    from reid_pipeline.distributed.wire import encode_batch
    from reid_pipeline.pipeline.engine import FinishedBatch, FinishedTracklet, SourceProgress
    from reid_pipeline.types import TrackedBox, Tracklet

    boxes = [TrackedBox("lobby1", f, f / 10, (10, 10, 40, 100), 0.9, 1) for f in range(5)]
    crop = np.full((40, 20, 3), 128, np.uint8)
    t = Tracklet("lobby1", 1, boxes, [crop, crop], [0, 4])
    ft = FinishedTracklet("lobby1", 1, t, np.ones((2, 128), np.float32))
    sp = SourceProgress("lobby1", 1, 5)
    good = encode_batch(FinishedBatch((ft,), (sp,), version))[0].pack()
    other = encode_batch(FinishedBatch((ft,), (sp,), "resnet50-0123456789ab"))[0].pack()
    nan = FinishedTracklet("lobby1", 1, t, np.full((2, 128), np.nan, np.float32))
    with_nan = encode_batch(FinishedBatch((nan,), (sp,), version))[0]
    return [
        ("malformed", b"\x80\x04\x95 not a pickle you will ever load"),
        ("malformed", good[: len(good) // 2]),  # truncated
        ("malformed", good[:-10] + b"0123456789"),  # payload does not match its hash
        ("malformed", with_nan.pack()),  # NaN vectors
        ("model_version", other),
    ]


def test_bad_messages_are_dead_lettered_and_counted(
    broker: str, site: dict[str, Any], tmp_path: Path
) -> None:
    import nats

    from reid_pipeline.pipeline.build import build_model

    cfg = load_config(None, site_overrides())
    import torch

    version = build_model(cfg, torch.device("cpu")).model_version
    bad = _bad_messages(version)
    with cluster(broker, tmp_path, site) as c:
        c.start_matcher()

        async def inject() -> list[Any]:
            nc = await nats.connect(broker)
            js = nc.jetstream()
            for _, data in bad:
                await js.publish(c.names.tracklets("lobby1"), data)
            await js.publish(c.names.tracklets("lobby1"), b"")  # empty
            await nc.close()
            return []

        asyncio.run(inject())
        st = c.drained()
        assert st["dead_letters"] == {"malformed": 5, "model_version": 1}, st
        assert _stream_count(broker, c.names.dlq_stream) == 6

        async def reasons() -> list[str]:
            nc = await nats.connect(broker)
            js = nc.jetstream()
            got = []
            for seq in range(1, 7):
                m = await js.get_msg(c.names.dlq_stream, seq)
                got.append((m.headers or {}).get("Reid-Reason", ""))
            await nc.close()
            return got

        assert sorted(asyncio.run(reasons())) == ["malformed"] * 5 + ["model_version"]
        # the matcher is unharmed: a real worker still gets its camera committed (here with
        # every payload through the object store, as big crops of HD cameras would go)
        w = c.start_worker("w", ["lobby1"], **{"distributed.inline_max_bytes": 0})
        c.wait(w, "w")
        st = c.drained()
        assert c.matcher is not None and c.matcher.poll() is None
        assert st["tracklets"] == 4 and _tracklet_count(c.db) == 4
        assert " 0 through the object store" not in c.log("w"), c.log("w")
        with Gallery.open(c.db, crops_dir=tmp_path / "crops") as g:
            assert g.counts()["crops"] > 0 and len(g.crops()) == g.counts()["crops"]
            assert all(ci.path is not None and ci.path.is_file() for ci in g.crops())


def _one_line_error(argv: list[str]) -> tuple[int, str]:
    from reid_pipeline.cli import main

    err = io.StringIO()
    with redirect_stderr(err):
        rc = main(argv)
    lines = [line for line in err.getvalue().splitlines() if line.startswith("error:")]
    assert rc != 0 and len(lines) == 1, err.getvalue()
    return rc, lines[0]


def test_unreachable_broker_and_database_are_one_line_errors(
    broker: str, site: dict[str, Any], tmp_path: Path
) -> None:
    model = overrides_args(site_overrides())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    dead_broker = f"nats://admin:s3cret@127.0.0.1:{dead}"
    video = str(site["videos"]["lobby1"])
    worker = ["worker", video, "--camera", "lobby1", "--broker", dead_broker, *model]
    worker += overrides_args(worker_overrides(site, ["lobby1"]))
    _, line = _one_line_error(worker)
    assert f"nats://***@127.0.0.1:{dead}" in line and "unreachable" in line
    assert "s3cret" not in line
    with pg_schema() as db:
        _, line = _one_line_error(["matcher", "--db", db, "--broker", dead_broker, *model])
        assert f"127.0.0.1:{dead}" in line and "s3cret" not in line
    dead_db = f"postgresql+psycopg://reid:s3cret@127.0.0.1:{dead}/reid"
    _, line = _one_line_error(["matcher", "--db", dead_db, "--broker", broker, *model])
    assert f"127.0.0.1:{dead}" in line and "s3cret" not in line and "***" in line


def test_live_camera_through_a_worker(broker: str, site: dict[str, Any], tmp_path: Path) -> None:
    """``reid worker rtsp://...`` runs the live driver with no gallery of its own: its
    tracklets reach the matcher's gallery and come back as events."""
    import cv2
    from rtsp_server import RtspTestServer, ensure_gst_rtsp

    ensure_gst_rtsp()
    frames = tmp_path / "frames"
    frames.mkdir()
    cap = cv2.VideoCapture(str(site["videos"]["lobby1"]))
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        cv2.imwrite(str(frames / f"{i:05d}.jpg"), img)
        i += 1
    cap.release()
    cam = RtspTestServer(
        str(frames / "%05d.jpg"), path="/gate", width=480, height=272, user="u", password="pw9"
    ).start()
    try:
        with cluster(broker, tmp_path / "run", site) as c:
            c.start_matcher(wait=False)
            o = {
                **c.common,
                "detector.kind": "hog",
                "stream.duration_s": 25,
                "stream.status_every_s": 0,
            }
            w = c._spawn("w", reid_cmd("worker", cam.url, "--camera", "gate", *overrides_args(o)))
            c.wait(w, "w")
            st = c.drained()
            assert st["tracklets"] >= 1 and st["events"] >= 1, (st, c.log("w"))
            with Gallery.open(c.db) as g:
                assert {s.camera for s in g.tracklet_spans()} == {"gate"}
                uris = {r.uri for r in _sources(g)}
            assert uris and all("pw9" not in u for u in uris), uris
            assert "pw9" not in c.log("w") + c.log("matcher")
    finally:
        cam.stop()
