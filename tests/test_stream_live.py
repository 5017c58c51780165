"""`reid stream` end to end against real RTSP cameras on loopback.

The cameras stream the generated demo scene (people HOG finds) in a loop; `reid stream` runs
as a subprocess, exactly as an operator starts it, with a small randomly initialised ReID
model (the checks here are about the live machinery and the gallery's consistency, not
about recognition accuracy, which the pipeline's own tests cover).
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest
from rtsp_server import RtspTestServer, ensure_gst_rtsp, free_port

pytestmark = pytest.mark.timeout(300)

SECRET = "Xq7pw0rd"  # camera password that must never be shown anywhere


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """camera -> printf pattern of the scene's JPEG frames (the RTSP server loops them)."""
    import cv2

    from reid_pipeline.datasets.scene import demo_scene_spec, render_scene

    ensure_gst_rtsp()
    root = tmp_path_factory.mktemp("scene")
    videos = render_scene(demo_scene_spec(), root)
    out = {}
    for cam, video in videos.items():
        folder = root / cam
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
        assert i > 50
        out[cam] = str(folder / "%05d.jpg")
    return out


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random-init model checkpoint and a config tuned for a quick, slow-CPU run."""
    import torch
    import yaml

    from reid_pipeline.config import load_config
    from reid_pipeline.embed.model import ReIDModel, save_checkpoint

    root = tmp_path_factory.mktemp("model")
    model_cfg = {"backbone": "osnet_x0_25", "embed_dim": 64, "height": 128, "width": 64}
    torch.manual_seed(0)
    model = ReIDModel("osnet_x0_25", num_classes=1, embed_dim=64, height=128, width=64)
    cfg = load_config(overrides={f"model.{k}": v for k, v in model_cfg.items()})
    ckpt = save_checkpoint(root / "tiny.pt", model.eval(), cfg)
    data = {
        "device": "cpu",
        "detector": {"kind": "hog"},
        "model": {**model_cfg, "checkpoint": str(ckpt)},
        "tracker": {"track_buffer": 6, "max_crops": 4, "min_length": 2},
        "stream": {
            "open_timeout_s": 3,
            "read_timeout_s": 2,
            "probe_s": 0.3,
            "reconnect_initial_s": 0.3,
            "reconnect_max_s": 1.0,
            "status_every_s": 1,
            "provisional_every": 3,
        },
    }
    path = root / "live.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def reid_stream(args: list[str], config: Path, out: Path) -> subprocess.Popen[str]:
    env = dict(os.environ, REID_NO_PROGRESS="1", PYTHONUNBUFFERED="1")
    cmd = [
        sys.executable,
        "-m",
        "reid_pipeline",
        "stream",
        *args,
        "--config",
        str(config),
        "--out",
        str(out),
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=out
    )


def wait_for_file_text(
    path: Path, needle: str, timeout: float, proc: subprocess.Popen[str]
) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.3)
    return False


def check_gallery(db: Path) -> dict[str, int]:
    """The gallery invariants a live run must keep, whatever happened to its cameras."""
    con = sqlite3.connect(str(db))
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        tracklets = con.execute(
            "SELECT t.id, c.name, t.source_id, t.track_id, t.first_frame, t.last_frame, "
            "t.first_ts, t.last_ts, t.identity_id FROM tracklets t "
            "JOIN cameras c ON c.id = t.camera_id"
        ).fetchall()
        seen = set()
        spans: dict[tuple[int, str], list[tuple[float, float]]] = defaultdict(list)
        for tid, cam, sid, track, f0, f1, t0, t1, ident in tracklets:
            assert (sid, track) not in seen  # a restarted run never reuses a track id
            seen.add((sid, track))
            assert f0 <= f1 and t0 <= t1
            rows = con.execute(
                "SELECT min(frame), max(frame), count(*) FROM sightings WHERE tracklet_id = ?",
                (tid,),
            ).fetchone()
            assert rows[2] >= 1 and rows[0] == f0 and rows[1] == f1
            if ident is not None:
                spans[(ident, cam)].append((t0, t1))
        for (ident, cam), sp in spans.items():  # one person, one place of a camera at a time
            sp.sort()
            for (_a0, a1), (b0, _b1) in itertools.pairwise(sp):
                assert b0 > a1, f"identity {ident} twice in camera {cam} at once"
        n_ident = con.execute("SELECT count(*) FROM identities").fetchone()[0]
        orphan = con.execute(
            "SELECT count(*) FROM identities i WHERE NOT EXISTS "
            "(SELECT 1 FROM tracklets t WHERE t.identity_id = i.id)"
        ).fetchone()[0]
        assert orphan == 0
        frames = dict(
            con.execute(
                "SELECT c.name, max(s.frames_processed) FROM sources s "
                "JOIN cameras c ON c.id = s.camera_id GROUP BY c.name"
            )
        )
        return {
            "tracklets": len(tracklets),
            "identities": n_ident,
            **{f"frames_{k}": int(v or 0) for k, v in frames.items()},
        }
    finally:
        con.close()


def assert_no_secret(*texts: str, folder: Path | None = None) -> None:
    for t in texts:
        assert SECRET not in t
    if folder is not None:
        for p in folder.rglob("*"):
            if p.is_file():
                assert SECRET.encode() not in p.read_bytes(), f"credential in {p}"


def events_of(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def cameras(scene: dict[str, str]) -> Iterator[tuple[RtspTestServer, RtspTestServer]]:
    lobby = RtspTestServer(scene["lobby"], path="/lobby", width=480, height=272).start()
    street = RtspTestServer(
        scene["street"], path="/street", width=480, height=272, user="viewer", password=SECRET
    ).start()
    try:
        yield lobby, street
    finally:
        lobby.stop()
        street.stop()


def test_stream_restarts_dead_camera_sigterm_then_sigkill_keeps_commits(
    cameras: tuple[RtspTestServer, RtspTestServer], config: Path, tmp_path: Path
) -> None:
    lobby, street = cameras
    dead = f"rtsp://admin:{SECRET}@127.0.0.1:{free_port()}/nothing"
    out = tmp_path / "run"
    out.mkdir()
    proc = reid_stream(
        [
            lobby.url,
            street.url,
            dead,
            "--camera",
            "lobby",
            "--camera",
            "street",
            "--camera",
            "door",
            "--watch",
            "1",
        ],
        config,
        out,
    )
    events = out / "events.jsonl"
    try:
        # running: both live cameras produce events while 'door' never answers
        assert wait_for_file_text(events, '"camera": "street"', 150, proc), "no street event"
        restarts = []
        for _ in range(3):  # the street camera loses power three times
            street.stop()
            time.sleep(1.5)
            street.start()
            restarts.append(time.time())
            time.sleep(4.0)
        # recovery: the street camera's people are identified again after the last restart
        deadline = time.monotonic() + 90
        while (
            time.monotonic() < deadline
            and proc.poll() is None
            and not any(
                e["camera"] == "street" and e["captured"] > restarts[-1] for e in events_of(events)
            )
        ):
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr[-3000:]
    assert "stopped (SIGTERM)" in stdout
    evs = events_of(events)
    assert {"lobby", "street"} <= {e["camera"] for e in evs}
    for e in evs:
        assert e["status"] in ("new", "known") and e["kind"] in ("provisional", "confirmed")
        assert e["latency_s"] >= 0 and e["captured"] <= e["timestamp"]
        assert e["alert"] == (e["identity"] == 1)
    assert any(e["alert"] for e in evs)  # identity 1 is the first one created: watched
    assert any(e["camera"] == "street" and e["captured"] > restarts[-1] for e in evs), stdout[
        -3000:
    ]
    # the street camera was seen reconnecting and came back: sightings after the last restart
    assert "camera 'street' (rtsp://***@127.0.0.1" in stderr and "stream stopped" in stderr
    assert "camera 'door'" in stderr and "connection refused" in stderr
    stats = check_gallery(out / "reid.db")
    assert stats["identities"] >= 2 and stats["tracklets"] >= 2
    con = sqlite3.connect(str(out / "reid.db"))
    late = con.execute(
        "SELECT count(*) FROM sightings s JOIN tracklets t ON t.id = s.tracklet_id "
        "JOIN cameras c ON c.id = t.camera_id WHERE c.name = 'street' "
        "AND s.timestamp > ?",
        (restarts[-1],),
    ).fetchone()[0]
    uris = [r[0] for r in con.execute("SELECT uri FROM sources")]
    con.close()
    assert late > 0, f"nothing from the street camera after it came back: {stdout[-3000:]}"
    assert any("***@127.0.0.1" in u for u in uris)
    m = [line for line in stdout.splitlines() if line.strip().startswith("street:")]
    assert m and int(m[-1].split(" reconnects")[0].rsplit(" ", 1)[-1]) >= 3
    # every confirmed event is in the gallery
    con = sqlite3.connect(str(out / "reid.db"))
    idents = {r[0] for r in con.execute("SELECT id FROM identities")}
    con.close()
    assert {e["identity"] for e in evs if e["kind"] == "confirmed"} <= idents
    assert_no_secret(stdout, stderr, folder=out)

    # the same command again on the same gallery, killed outright (SIGKILL) this time:
    # whatever it confirmed was committed and survives; numbering went on from the first run
    n_before = len(evs)
    proc = reid_stream([lobby.url, "--camera", "lobby"], config, out)
    try:
        deadline = time.monotonic() + 150
        while (
            proc.poll() is None
            and time.monotonic() < deadline
            and not any(e["kind"] == "confirmed" for e in events_of(events)[n_before:])
        ):
            time.sleep(0.3)
        proc.kill()  # no chance to clean up
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    confirmed = [e for e in events_of(events)[n_before:] if e["kind"] == "confirmed"]
    assert confirmed, "the second run confirmed nothing before it was killed"
    second = check_gallery(out / "reid.db")
    assert second["tracklets"] > stats["tracklets"]
    assert second["frames_lobby"] > stats["frames_lobby"]  # frame numbers went on
    con = sqlite3.connect(str(out / "reid.db"))
    stored = {
        (r[0], r[1])
        for r in con.execute(
            "SELECT c.name, t.track_id FROM tracklets t JOIN cameras c ON c.id = t.camera_id"
        )
    }
    con.close()
    for e in confirmed:  # a confirmed event means committed: it survived the kill
        assert (e["camera"], e["track"]) in stored


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def test_soak_four_streams_flat_memory(scene: dict[str, str], config: Path, tmp_path: Path) -> None:
    """A bounded soak (REID_SOAK_S seconds, default 60): 4 cameras, memory must stay flat."""
    soak_s = float(os.environ.get("REID_SOAK_S", "60"))
    servers = [
        RtspTestServer(
            scene["lobby" if i % 2 == 0 else "street"], path=f"/c{i}", width=480, height=272
        ).start()
        for i in range(4)
    ]
    out = tmp_path / "soak"
    out.mkdir()
    launched = time.monotonic()
    proc = reid_stream([s.url for s in servers] + ["--duration", str(soak_s)], config, out)
    samples: list[tuple[float, int]] = []
    streaming: list[int] = []  # RSS while the cameras stream (not the final flush)
    try:
        assert wait_for_file_text(out / "events.jsonl", '"camera"', 150, proc), "no events"
        t0 = time.monotonic()
        while proc.poll() is None:
            now = time.monotonic()
            samples.append((now - t0, _rss_kb(proc.pid)))
            if now - launched < soak_s - 1.0:
                streaming.append(samples[-1][1])
            time.sleep(1.0)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        for s in servers:
            s.stop()
    assert proc.returncode == 0, stderr[-3000:]
    # the steady state is what must stay flat: once --duration ends the stream closes every
    # open tracklet and embeds all their crops at once, a transient that is not a leak
    rss = [kb for kb in streaming if kb > 0]
    assert len(rss) >= 10, samples
    third = max(1, len(rss) // 3)
    warm, end = max(rss[third : 2 * third]), max(rss[-third:])
    # flat: after warm-up, growth stays under 40 MiB (tracker/gallery caches settle)
    assert end - warm < 40 * 1024, f"RSS grew {end - warm} kB: {samples}"
    per_camera = [ln for ln in stdout.splitlines() if "frames processed" in ln]
    assert len(per_camera) == 4 and all("dropped" in ln for ln in per_camera)
    check_gallery(out / "reid.db")
