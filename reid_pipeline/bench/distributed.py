"""Benchmarks of the distributed mode (issue 15): the matcher alone, workers, latency.

``python -m reid_pipeline.bench.distributed matcher --identities 1000 10000`` measures the
matcher's capacity: synthetic tracklets (random unit vectors, one camera per source) are
published to a fresh prefix as fast as the broker takes them while a ``MatcherService``
consumes them into a PostgreSQL gallery pre-filled with N identities; the figure is
tracklets decided and committed per second, and the latency from a tracklet's hand-over
to its commit (p50/p99).

``python -m reid_pipeline.bench.distributed workers --workers 1 2`` measures aggregate
frames/s of 1 and 2 ``reid worker`` processes (generated videos, detections from the
scene's ground truth so that the front's embedding and the stream carry the load) with one
``reid matcher``, plus the matcher's end-to-end latency.

``render_site`` makes the generated four-camera site the tests use too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any, cast

import numpy as np

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ the generated site


def site_spec(cameras: int = 4, people: int = 4, seed: int = 11, tail: int = 40) -> Any:
    """The demo's scene with ``cameras`` cameras (lobby/street styles and variants): every
    person walks once through every camera, two at a time, as in ``demo_scene_spec``."""
    from dataclasses import replace

    from reid_pipeline.datasets.scene import SceneSpec, Walk, demo_scene_spec

    base = demo_scene_spec(people, seed).cameras
    variants = [(1.0, 1.0, 1.0), (0.92, 0.9, 1.05), (1.08, 1.1, 0.95), (0.85, 0.95, 1.1)]
    cams = []
    for k in range(cameras):
        style = base[k % len(base)]
        gain, scale, gamma = variants[(k // len(base)) % len(variants)]
        cams.append(
            replace(
                style,
                name=f"{style.name}{k // len(base) + 1}",
                gain=style.gain * gain,
                person_height=int(style.person_height * scale),
                gamma=style.gamma * gamma,
            )
        )
    rng = np.random.default_rng(seed + 1)
    walks: dict[str, list[Walk]] = {}
    for ci, cam in enumerate(cams):
        order = [int(p) for p in rng.permutation(people)] if ci else list(range(people))
        ws, t = [], 0
        for k, p in enumerate(order):
            ws.append(Walk(p, t, 1 if (k // 2 + ci) % 2 == 0 else -1))
            t += 16 if k % 2 == 0 else 58
        walks[cam.name] = ws
    frames = max(w.start for ws in walks.values() for w in ws) + tail
    return SceneSpec(people=people, seed=seed, frames=frames, cameras=cams, walks=walks)


def render_site(out: Path, cameras: int = 4, people: int = 4, seed: int = 11) -> dict[str, Any]:
    """Videos ``<camera>.mp4``, ground truth ``gt.csv`` and a MOTChallenge ``<camera>.det.txt``
    per camera made from the ground truth (a perfect detector: the front's tracking,
    embedding and the stream carry the load, not HOG). Returns {"videos", "dets", "gt"}."""
    from reid_pipeline.datasets.scene import render_scene

    spec = site_spec(cameras, people, seed)
    out.mkdir(parents=True, exist_ok=True)
    videos = render_scene(spec, out)
    rows: dict[str, list[str]] = {c: [] for c in videos}
    with open(out / "gt.csv", newline="") as fh:
        for r in csv.DictReader(fh):
            x1, y1, x2, y2 = (int(r[k]) for k in ("x1", "y1", "x2", "y2"))
            if y2 - y1 < 8 or x2 - x1 < 4:
                continue
            rows[r["camera"]].append(f"{int(r['frame']) + 1},-1,{x1},{y1},{x2 - x1},{y2 - y1},0.95")
    dets = {}
    for cam, lines in rows.items():
        p = out / f"{cam}.det.txt"
        p.write_text("\n".join(lines) + "\n")
        dets[cam] = p
    return {"videos": videos, "dets": dets, "gt": out / "gt.csv", "frames": spec.frames}


def site_overrides() -> dict[str, Any]:
    """The config of the site runs: the demo's weights (every process); the workers add
    ``detector.kind=mot`` with the site's detections (``worker_overrides``)."""
    from reid_pipeline.demo.scenario import DEMO_OVERRIDES
    from reid_pipeline.demo.weights import DEMO_CHECKPOINT

    o = {k: v for k, v in DEMO_OVERRIDES.items() if not k.startswith("detector.")}
    return {
        **o,
        "model.checkpoint": str(DEMO_CHECKPOINT),
        "device": "cpu",
        "output.video": False,
        "output.html": False,
    }


def worker_overrides(site: dict[str, Any], cameras: list[str]) -> dict[str, Any]:
    """Detections of ``cameras`` from the site's ground truth, in camera order."""
    return {"detector.kind": "mot", "detector.mot_det": [str(site["dets"][c]) for c in cameras]}


def overrides_args(o: dict[str, Any]) -> list[str]:
    """``--set key=value`` arguments for a subprocess."""
    out = []
    for k, v in o.items():
        value = ",".join(str(x) for x in v) if isinstance(v, (list, tuple)) else v
        if isinstance(value, bool):
            value = "true" if value else "false"
        out += ["--set", f"{k}={value}"]
    return out


def reid_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "reid_pipeline", *args]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("REID_NO_PROGRESS", "1")
    env.setdefault("OMP_NUM_THREADS", "1")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


async def ask_stats(broker: str, prefix: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """The running matcher's counters (``<prefix>.stats``), or None when none answers."""
    import nats

    nc = await nats.connect(broker, max_reconnect_attempts=1, reconnect_time_wait=0.1)
    try:
        msg = await nc.request(f"{prefix}.stats", b"", timeout=timeout)
        return dict(json.loads(msg.data))
    except Exception:  # noqa: BLE001 - no matcher answers
        return None
    finally:
        await nc.close()


def stats(broker: str, prefix: str, timeout: float = 5.0) -> dict[str, Any] | None:
    return asyncio.run(ask_stats(broker, prefix, timeout))


async def _backlog(broker: str, stream: str) -> int:
    import nats

    nc = await nats.connect(broker, max_reconnect_attempts=1, reconnect_time_wait=0.1)
    try:
        info = await nc.jetstream().stream_info(stream)
        return int(info.state.messages)
    except Exception:  # noqa: BLE001 - no such stream
        return -1
    finally:
        await nc.close()


def backlog(broker: str, stream: str) -> int:
    """Messages waiting in the tracklet stream (-1: no such stream)."""
    return asyncio.run(_backlog(broker, stream))


async def _delete_streams(broker: str, prefix: str) -> None:
    import nats

    from reid_pipeline.config.distributed import DistributedConfig
    from reid_pipeline.distributed.broker import Names

    n = Names.of(DistributedConfig(prefix=prefix))
    nc = await nats.connect(broker, max_reconnect_attempts=1, reconnect_time_wait=0.1)
    js = nc.jetstream()
    for s in (n.stream, n.events_stream, n.dlq_stream, f"OBJ_{n.crops_bucket}"):
        with contextlib.suppress(Exception):  # already gone
            await js.delete_stream(s)
    await nc.close()


def delete_streams(broker: str, prefix: str) -> None:
    """Remove every stream of ``prefix`` (a test's or a benchmark's, afterwards)."""
    asyncio.run(_delete_streams(broker, prefix))


# ------------------------------------------------------------------ the matcher alone


def _fill_gallery(gallery: Any, identities: int, dim: int, version: str, seed: int) -> Any:
    """``identities`` identities with 3 exemplars each (random unit vectors) written in one
    transaction through the gallery's own methods; returns their centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    with gallery.batch() as tx:
        for i in range(identities):
            iid = tx.create_identity()
            noise = rng.normal(scale=0.05, size=(3, dim)).astype(np.float32)
            tx.add_exemplars(iid, centres[i] + noise, version, keep=3)
    return centres


def bench_matcher(
    identities: int,
    tracklets: int,
    *,
    broker: str,
    db: str,
    fetch_batch: int = 64,
    cameras: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Matcher capacity against a gallery of ``identities`` (see the module docstring)."""
    import dataclasses

    import torch

    from reid_pipeline.config import load_config
    from reid_pipeline.distributed.matcher import MatcherService
    from reid_pipeline.distributed.worker import RemoteBack
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.pipeline.build import build_matcher
    from reid_pipeline.pipeline.engine import FinishedBatch, FinishedTracklet, SourceProgress
    from reid_pipeline.types import TrackedBox, Tracklet

    prefix = f"bench{uuid.uuid4().hex[:8]}"
    o = {
        **site_overrides(),
        "gallery.db": db,
        "distributed.broker": broker,
        "distributed.prefix": prefix,
        "distributed.fetch_batch": fetch_batch,
        "distributed.max_inflight": 64,
        "distributed.status_every_s": 0,
    }
    cfg = load_config(None, o)
    from reid_pipeline.pipeline.build import build_model

    model = build_model(cfg, torch.device("cpu"))
    version = model.model_version
    dim = int(model.embed_dim) if hasattr(model, "embed_dim") else 128
    gallery = Gallery.open(db, cfg.gallery)
    t0 = time.perf_counter()
    centres = _fill_gallery(gallery, identities, dim, version, seed)
    fill_s = time.perf_counter() - t0
    _, matcher = build_matcher(cfg, model, gallery, torch.device("cpu"))
    rng = np.random.default_rng(seed + 1)
    service = MatcherService(cfg, gallery, matcher, version)

    # one source per camera, registered through the matcher's begin (as a worker would)
    class Src:
        def __init__(self, cam: str) -> None:
            self.camera, self.uri, self.fps, self.frame_count = (
                cam,
                f"synthetic://{cam}",
                10.0,
                None,
            )

        def fingerprint(self) -> str:
            return f"bench-{prefix}-{self.camera}"

    result: dict[str, Any] = {}

    async def main() -> None:
        task = asyncio.create_task(service.run())
        await asyncio.wait_for(service.ready.wait(), 30)
        loop = asyncio.get_running_loop()
        pub_cfg = dataclasses.replace(cfg)
        back = await loop.run_in_executor(None, lambda: RemoteBack(pub_cfg, version))
        starts = [
            await loop.run_in_executor(None, back.begin, cast(Any, Src(f"c{k}")))
            for k in range(cameras)
        ]
        # tracklets: 10 boxes, 4 crops (32x16), each near a gallery identity or a new person
        crop = np.zeros((32, 16, 3), np.uint8)
        batches = []
        per = 8  # tracklets per message (a worker's commit)
        track = {st.source_id: st.next_track_id for st in starts}
        frame = {st.source_id: 0 for st in starts}
        for k in range(0, tracklets, per):
            st = starts[(k // per) % cameras]
            fts = []
            for _ in range(min(per, tracklets - k)):
                f0 = frame[st.source_id]
                boxes = [
                    TrackedBox(st.camera, f0 + j, (f0 + j) / 10.0, (10, 10, 40, 100), 0.9, 0)
                    for j in range(10)
                ]
                c = centres[int(rng.integers(len(centres)))] if rng.random() < 0.7 else None
                base = c if c is not None else rng.normal(size=dim).astype(np.float32)
                vec = (base + rng.normal(scale=0.05, size=(4, dim))).astype(np.float32)
                t = Tracklet(
                    st.camera, track[st.source_id], boxes, [crop] * 4, [f0, f0 + 3, f0 + 6, f0 + 9]
                )
                fts.append(FinishedTracklet(st.camera, st.source_id, t, vec))
                track[st.source_id] += 1
                frame[st.source_id] += 12  # one after the other: the one-place rule is quiet
            sp = SourceProgress(st.camera, st.source_id, frame[st.source_id])
            batches.append(FinishedBatch(tuple(fts), (sp,), version))
        n_before = service.stats.tracklets
        t1 = time.perf_counter()

        def publish_all() -> None:
            for b in batches:
                back.commit(b)
            back.flush()

        await loop.run_in_executor(None, publish_all)
        pub_s = time.perf_counter() - t1
        while service.stats.tracklets - n_before < tracklets:
            await asyncio.sleep(0.05)
        total_s = time.perf_counter() - t1
        service.stop.set()
        await task
        await loop.run_in_executor(None, back.close)
        st_ = service.stats.to_dict()
        result.update(
            identities=identities,
            tracklets=tracklets,
            fetch_batch=fetch_batch,
            fill_s=round(fill_s, 1),
            publish_s=round(pub_s, 2),
            seconds=round(total_s, 2),
            tracklets_per_s=round(tracklets / total_s, 1),
            commits=st_["commits"],
            latency_p50_ms=round(st_["latency_s"]["p50"] * 1000, 1),
            latency_p99_ms=round(st_["latency_s"]["p99"] * 1000, 1),
            commit_p50_ms=round(st_["commit_s"]["p50"] * 1000, 1),
            identities_after=len(gallery.identity_ids()),
        )

    try:
        asyncio.run(main())
    finally:
        gallery.close()
        delete_streams(broker, prefix)
    return result


# ------------------------------------------------------------------ workers


def bench_workers(
    n_workers: int,
    site: dict[str, Any],
    *,
    broker: str,
    db: str,
    out: Path,
) -> dict[str, Any]:
    """``n_workers`` ``reid worker`` processes sharing the site's cameras, one ``reid
    matcher``: aggregate frames/s (sum of frames / wall time of the slowest worker)."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    cams = sorted(site["videos"])
    common = {
        **site_overrides(),
        "distributed.broker": broker,
        "distributed.prefix": prefix,
        "distributed.status_every_s": 0,
    }
    env = child_env()
    out.mkdir(parents=True, exist_ok=True)
    matcher = subprocess.Popen(
        reid_cmd("matcher", "--db", db, "--out", str(out), *overrides_args(common)),
        env=env,
        stdout=open(out / f"matcher-{prefix}.log", "w"),  # noqa: SIM115
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 120
        while stats(broker, prefix, 1.0) is None:
            if matcher.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"matcher did not start: {(out / f'matcher-{prefix}.log').read_text()}"
                )
            time.sleep(0.5)
        groups = [cams[k::n_workers] for k in range(n_workers)]
        frames_total = 0
        t0 = time.perf_counter()
        procs = []
        for g in groups:
            o = {**common, **worker_overrides(site, g)}
            args: list[str] = []
            for c in g:
                args += [str(site["videos"][c])]
            for c in g:
                args += ["--camera", c]
            procs.append(
                subprocess.Popen(
                    reid_cmd("worker", *args, *overrides_args(o)),
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
        outs = [p.communicate(timeout=1800)[0] for p in procs]
        wall = time.perf_counter() - t0
        for p, text in zip(procs, outs):
            if p.returncode != 0:
                raise RuntimeError(f"worker failed:\n{text}")
            for line in text.splitlines():
                if line.startswith("speed:"):
                    frames_total += int(line.split()[1])
        # the matcher is done when the stream is empty
        from reid_pipeline.config.distributed import DistributedConfig
        from reid_pipeline.distributed.broker import Names

        stream = Names.of(DistributedConfig(prefix=prefix)).stream
        while backlog(broker, stream) > 0:
            time.sleep(0.1)
        drained = time.perf_counter() - t0
        st = stats(broker, prefix) or {}
        return {
            "workers": n_workers,
            "cameras": len(cams),
            "frames": frames_total,
            "wall_s": round(wall, 2),
            "frames_per_s": round(frames_total / wall, 1),
            "drained_s": round(drained, 2),
            "tracklets": st.get("tracklets"),
            "tracklets_per_s": round((st.get("tracklets") or 0) / drained, 2),
            "latency_p50_ms": round((st.get("latency_s") or {}).get("p50", 0) * 1000, 1),
            "latency_p99_ms": round((st.get("latency_s") or {}).get("p99", 0) * 1000, 1),
            "worker_seconds": [
                line for text in outs for line in text.splitlines() if line.startswith("speed:")
            ],
        }
    finally:
        matcher.terminate()
        try:
            matcher.wait(30)
        except subprocess.TimeoutExpired:
            matcher.kill()
        delete_streams(broker, prefix)


# ------------------------------------------------------------------ CLI


class _PgSchema:
    """A fresh PostgreSQL schema for one run (dropped afterwards); ``url`` is the gallery.
    Made with ``psql`` (SQL stays in ``gallery``; this is a benchmark script)."""

    def __init__(self, admin_url: str) -> None:
        self.name = f"bench_{uuid.uuid4().hex[:10]}"
        self.libpq = admin_url.replace("postgresql+psycopg://", "postgresql://")
        self._psql(f'CREATE SCHEMA "{self.name}"')
        self.url = f"{admin_url}?options=-csearch_path%3D{self.name}"

    def _psql(self, sql: str) -> None:
        subprocess.run(["psql", self.libpq, "-q", "-c", sql], check=True, capture_output=True)

    def close(self) -> None:
        self._psql(f'DROP SCHEMA "{self.name}" CASCADE')


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reid_pipeline.bench.distributed")
    p.add_argument("what", choices=["matcher", "workers"])
    p.add_argument("--broker", default="nats://127.0.0.1:4222")
    p.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    p.add_argument("--identities", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--tracklets", type=int, default=2000)
    p.add_argument("--fetch-batch", type=int, default=64)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--cameras", type=int, default=4)
    p.add_argument("--out", default="runs/bench-distributed")
    p.add_argument("--json", default="")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("REID_NO_PROGRESS", "1")
    results: list[dict[str, Any]] = []
    out = Path(a.out)
    if a.what == "matcher":
        for n in a.identities:
            pg = _PgSchema(a.pg)
            try:
                r = bench_matcher(
                    n, a.tracklets, broker=a.broker, db=pg.url, fetch_batch=a.fetch_batch
                )
            finally:
                pg.close()
            print(json.dumps(r), flush=True)
            results.append(r)
    else:
        site = render_site(out / "site", cameras=a.cameras)
        for w in a.workers:
            pg = _PgSchema(a.pg)
            try:
                r = bench_workers(w, site, broker=a.broker, db=pg.url, out=out)
            finally:
                pg.close()
            print(json.dumps(r), flush=True)
            results.append(r)
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
