"""Benchmark of the operator console (``reid serve``, ``reid stream --serve``).

    uv run python -m reid_pipeline.bench.serve [--identities 10000] [--requests 300]
        [--live-seconds 30] [--json out.json]

Part 1, the API on a synthetic gallery (SQLite) of ``--identities`` identities (one or two
cameras each, 6 sightings, one crop, 3 exemplars of the bundled default model's version):
``reid serve``'s app under uvicorn on loopback, requests from an HTTP client, p50/p99 of
identity pages (API and HTML, filtered and not), one identity, crops, and search by photo
(crop mode: embedding + scoring against every exemplar).

Part 2, live (needs the test RTSP camera, ``tests/rtsp_server.py``, i.e. GStreamer under
the system Python): ``reid stream --serve`` on the demo scene's lobby camera (480x272,
10 fps, HOG, a small random ReID model), once with nobody watching and once with two
clients reading the MJPEG tile (one as fast as frames come, one slow: 1 frame/s with
``--slow-reader``) and one reading the event feed. Reported: the pipeline's processed
frame rate and frame lag both times (``stream_summary.json``), the tile's frame rate at
the client, and event latency to the client: from a confirmed event's capture time
(``captured``) and from its emission (``timestamp``) to its arrival.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def pct(xs: list[float]) -> dict[str, float | int | None]:
    if not xs:
        return {"n": 0, "p50": None, "p99": None}
    a = np.asarray(xs) * 1000.0
    return {
        "n": len(xs),
        "p50": round(float(np.percentile(a, 50)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
    }


# ---------------------------------------------------------------- part 1: API


def build_gallery(db: Path, n: int, version: str, dim: int, seed: int = 0) -> None:
    from reid_pipeline.config import GalleryConfig
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.types import TrackedBox, Tracklet

    rng = np.random.default_rng(seed)
    t0 = 1_790_000_000.0
    with Gallery.open(str(db), GalleryConfig(crop_quality=70)) as g:
        src = {c: g.begin_source(c, f"synthetic-{c}").source_id for c in ("lobby", "street")}
        done = 0
        while done < n:
            with g.batch() as uow:
                for _ in range(min(500, n - done)):
                    i = done
                    iid = uow.create_identity(name=f"person {i}" if i % 10 == 0 else None)
                    for k, cam in enumerate(("lobby", "street") if i % 2 else ("lobby",)):
                        f0 = 20 * i + 7 * k
                        boxes = [
                            TrackedBox(
                                cam,
                                f0 + j,
                                t0 + (f0 + j) / 10.0,
                                (4.0, 4.0, 36.0, 90.0),
                                0.9,
                                i + 1,
                            )
                            for j in range(3)
                        ]
                        crop = rng.integers(0, 255, (64, 32, 3), dtype=np.uint8) if k == 0 else None
                        tr = Tracklet(
                            cam,
                            i + 1,
                            boxes,
                            [crop] if crop is not None else [],
                            [f0] if crop is not None else [],
                            True,
                        )
                        tid = uow.record_tracklet(src[cam], tr, identity_id=iid, score=0.9)
                        if k == 0:
                            v = rng.standard_normal((3, dim)).astype(np.float32)
                            uow.add_exemplars(
                                iid,
                                v / np.linalg.norm(v, axis=1, keepdims=True),
                                version,
                                tid,
                                keep=3,
                            )
                    done += 1


def bench_api(n: int, requests: int, work: Path) -> dict[str, Any]:
    import cv2
    import httpx

    from reid_pipeline.config import load_config
    from reid_pipeline.gallery.manage import open_existing
    from reid_pipeline.pipeline.build import build_model
    from reid_pipeline.serve.app import create_app
    from reid_pipeline.serve.server import BackgroundServer
    from reid_pipeline.utils import resolve_device

    cfg = load_config(overrides={"device": "cpu", "detector.kind": "hog"})
    model = build_model(cfg, resolve_device("cpu"))
    db = work / "reid.db"
    t = time.perf_counter()
    build_gallery(db, n, model.model_version, int(model.embed_dim))
    built_s = time.perf_counter() - t
    port = _free_port()
    out: dict[str, Any] = {"identities": n, "build_s": round(built_s, 1)}
    with open_existing(str(db), cfg) as g:
        app = create_app(g, cfg)
        server = BackgroundServer(app, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        rnd = random.Random(0)
        photo = cv2.imencode(
            ".jpg", np.random.default_rng(1).integers(0, 255, (128, 64, 3), dtype=np.uint8)
        )[1].tobytes()
        try:
            with httpx.Client(base_url=base, timeout=60) as c:
                first = c.get("/api/identities", params={"limit": 50}).json()
                assert first["total"] == n, first["total"]
                crop_url = first["items"][0]["thumbnail"]

                def timed(fn: Any, k: int) -> list[float]:
                    fn()  # warm
                    xs = []
                    for _ in range(k):
                        t0 = time.perf_counter()
                        r = fn()
                        xs.append(time.perf_counter() - t0)
                        assert r.status_code == 200, (r.status_code, r.text[:200])
                    return xs

                out["api_identities_page"] = pct(
                    timed(
                        lambda: c.get(
                            "/api/identities",
                            params={"offset": rnd.randrange(0, n - 50), "limit": 50},
                        ),
                        requests,
                    )
                )
                out["api_identities_camera_time"] = pct(
                    timed(
                        lambda: c.get(
                            "/api/identities",
                            params={
                                "camera": "street",
                                "since": 1_790_000_000.0 + rnd.randrange(0, 2 * n),
                                "limit": 50,
                            },
                        ),
                        requests,
                    )
                )
                out["api_identity"] = pct(
                    timed(lambda: c.get(f"/api/identities/{rnd.randrange(1, n + 1)}"), requests)
                )
                out["page_identities_html"] = pct(
                    timed(
                        lambda: c.get("/identities", params={"page": rnd.randrange(1, n // 50)}),
                        requests,
                    )
                )
                out["crop_jpeg"] = pct(timed(lambda: c.get(crop_url), requests))
                out["api_search_crop"] = pct(
                    timed(
                        lambda: c.post(
                            "/api/search",
                            files={"photo": ("q.jpg", photo, "image/jpeg")},
                            data={"mode": "crop", "top": "10"},
                        ),
                        max(20, requests // 10),
                    )
                )
        finally:
            server.stop()
    return out


# ---------------------------------------------------------------- part 2: live


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scene_frames(work: Path) -> str:
    import cv2

    from reid_pipeline.datasets.scene import demo_scene_spec, render_scene

    video = render_scene(demo_scene_spec(), work / "scene")["lobby"]
    folder = work / "scene" / "lobby_frames"
    folder.mkdir()
    cap = cv2.VideoCapture(str(video))
    i = 0
    while True:
        ok, img = cap.read()
        if not ok:
            break
        cv2.imwrite(str(folder / f"{i:05d}.jpg"), img)
        i += 1
    cap.release()
    return str(folder / "%05d.jpg")


def _live_config(work: Path) -> Path:
    import torch
    import yaml

    from reid_pipeline.config import load_config
    from reid_pipeline.embed.model import ReIDModel, save_checkpoint

    model_cfg = {"backbone": "osnet_x0_25", "embed_dim": 64, "height": 128, "width": 64}
    torch.manual_seed(0)
    model = ReIDModel("osnet_x0_25", num_classes=1, embed_dim=64, height=128, width=64)
    ckpt = save_checkpoint(
        work / "tiny.pt",
        model.eval(),
        load_config(overrides={f"model.{k}": v for k, v in model_cfg.items()}),
    )
    data = {
        "device": "cpu",
        "detector": {"kind": "hog"},
        "model": {**model_cfg, "checkpoint": str(ckpt)},
        "tracker": {"track_buffer": 6, "max_crops": 4, "min_length": 2},
        "stream": {"status_every_s": 0, "provisional_every": 3},
        "serve": {"tile_fps": 10},
    }
    path = work / "live.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _run_stream(
    url: str, cfg: Path, out: Path, seconds: float, watch: bool, slow: bool
) -> dict[str, Any]:
    import httpx

    port = _free_port()
    env = dict(os.environ, REID_NO_PROGRESS="1", PYTHONUNBUFFERED="1")
    out.mkdir(parents=True)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reid_pipeline",
            "stream",
            url,
            "--camera",
            "lobby",
            "--watch",
            "1",
            "--serve",
            f"127.0.0.1:{port}",
            "--config",
            str(cfg),
            "--out",
            str(out),
            "--duration",
            str(seconds),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    base = f"http://127.0.0.1:{port}"
    res: dict[str, Any] = {"watched": watch}
    stop = threading.Event()
    tile_frames: list[float] = []
    slow_frames: list[float] = []
    ev_capture: list[float] = []
    ev_emit: list[float] = []

    def read_mjpeg(sink: list[float], delay: float) -> None:
        try:
            with httpx.stream("GET", base + "/media/live/lobby/stream.mjpeg", timeout=10) as r:
                buf = b""
                for chunk in r.iter_bytes():
                    buf += chunk
                    while b"\r\n\r\n" in buf and b"--frame" in buf:
                        head, _, rest = buf.partition(b"\r\n\r\n")
                        length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                        if len(rest) < length + 2:
                            break
                        buf = rest[length + 2 :]
                        sink.append(time.time())
                        if delay:
                            time.sleep(delay)
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            return

    def read_events() -> None:
        try:
            with httpx.stream("GET", base + "/api/events", timeout=30) as r:
                for line in r.iter_lines():
                    if line.startswith("data: "):
                        now = time.time()
                        d = json.loads(line[6:])
                        if d["kind"] == "confirmed":
                            ev_capture.append(now - d["captured"])
                            ev_emit.append(now - d["timestamp"])
                    if stop.is_set():
                        return
        except httpx.HTTPError:
            return

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    threads = []
    if watch:
        threads = [
            threading.Thread(target=read_events, daemon=True),
            threading.Thread(target=read_mjpeg, args=(tile_frames, 0.0), daemon=True),
        ]
        if slow:
            threads.append(
                threading.Thread(target=read_mjpeg, args=(slow_frames, 1.0), daemon=True)
            )
        for t in threads:
            t.start()
    proc.wait(timeout=seconds + 180)
    stop.set()
    summary = json.loads((out / "stream_summary.json").read_text())
    cam = summary["cameras"][0]
    res["pipeline_fps"] = round(summary["frames"] / summary["seconds"], 2)
    res["camera_fps_in"] = cam.get("fps")
    res["dropped"] = cam.get("dropped")
    res["frame_lag_ms"] = {
        k: (round(v * 1000, 1) if isinstance(v, float) else v)
        for k, v in summary["lag"].items()
        if k in ("n", "p50", "p99")
    }
    if watch:
        span = (tile_frames[-1] - tile_frames[0]) if len(tile_frames) > 1 else 0.0
        res["tile_fps_client"] = round((len(tile_frames) - 1) / span, 2) if span else 0.0
        res["slow_client_frames"] = len(slow_frames)
        res["event_latency_capture_to_client"] = pct(ev_capture)
        res["event_latency_emit_to_client"] = pct(ev_emit)
    if proc.returncode not in (0, None):
        res["exit"] = proc.returncode
    return res


def bench_live(seconds: float, work: Path, slow: bool) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from rtsp_server import RtspTestServer, ensure_gst_rtsp  # the test camera (GStreamer)

    ensure_gst_rtsp()
    frames = _scene_frames(work)
    cfg = _live_config(work)
    with RtspTestServer(frames, path="/lobby", width=480, height=272) as cam:
        alone = _run_stream(cam.url, cfg, work / "alone", seconds, watch=False, slow=False)
        watched = _run_stream(cam.url, cfg, work / "watched", seconds, watch=True, slow=slow)
    return {"unwatched": alone, "watched": watched}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--identities", type=int, default=10_000)
    p.add_argument("--requests", type=int, default=300)
    p.add_argument("--live-seconds", type=float, default=30.0)
    p.add_argument("--no-live", action="store_true")
    p.add_argument("--slow-reader", action="store_true", help="add a client reading 1 tile frame/s")
    p.add_argument("--json", default="")
    a = p.parse_args(argv)
    os.environ.setdefault("REID_NO_PROGRESS", "1")
    res: dict[str, Any] = {"cpu_count": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="reid-bench-serve-") as tmp:
        work = Path(tmp)
        (work / "api").mkdir()
        res["api"] = bench_api(a.identities, a.requests, work / "api")
        print(json.dumps({"api": res["api"]}, indent=1), flush=True)
        if not a.no_live:
            res["live"] = bench_live(a.live_seconds, work, a.slow_reader)
            print(json.dumps({"live": res["live"]}, indent=1), flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
