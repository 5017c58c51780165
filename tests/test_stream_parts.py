"""The live loop's parts: events file, watch list, cross-camera frame gathering, signals, CLI."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from rtsp_server import RtspTestServer, ensure_gst_rtsp, free_port

from reid_pipeline.cli import main
from reid_pipeline.commands.stream import camera_names, default_camera_name
from reid_pipeline.config import StreamConfig
from reid_pipeline.errors import ConfigError
from reid_pipeline.pipeline.live import (
    EventLog,
    Percentiles,
    StopFlag,
    StreamEvent,
    WatchList,
    gather,
)
from reid_pipeline.sources.rtsp import RtspSource

pytestmark = pytest.mark.timeout(120)


def event(**kw: object) -> StreamEvent:
    base: dict[str, object] = {
        "timestamp": 100.5,
        "camera": "gate",
        "identity": 3,
        "score": 0.91234,
        "status": "known",
        "kind": "confirmed",
        "alert": False,
        "track": 7,
        "captured": 100.0,
        "latency_s": 0.5,
    }
    base.update(kw)
    return StreamEvent(**base)  # type: ignore[arg-type]


def test_event_log_appends_flushed_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "events.jsonl"
    log = EventLog(path)
    log.write(event())
    # flushed at once: a reader (or a crash right now) sees the line
    first = json.loads(path.read_text().splitlines()[0])
    assert first["identity"] == 3 and first["score"] == 0.9123 and first["status"] == "known"
    assert set(first) == {
        "timestamp",
        "camera",
        "identity",
        "score",
        "status",
        "kind",
        "alert",
        "track",
        "captured",
        "latency_s",
    }
    log.write(event(identity=None, score=None, status="new", kind="provisional"))
    log.close()
    log2 = EventLog(path)  # a second run appends
    log2.write(event(camera="rtsp://u:pw@x/y", alert=True))
    log2.close()
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert len(lines) == 3 and lines[1]["identity"] is None and lines[2]["alert"] is True
    assert "pw" not in path.read_text()
    assert "ALERT" in event(alert=True).describe() and "identity 3" in event().describe()


def test_event_log_unwritable_is_a_clear_error(tmp_path: Path) -> None:
    from reid_pipeline.errors import OutputError

    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="events file"):
        EventLog(tmp_path / "file" / "events.jsonl")


def test_watch_list_reads_flags_from_the_gallery(tmp_path: Path) -> None:
    from reid_pipeline.gallery import Gallery

    with Gallery.open(str(tmp_path / "g.db")) as g:
        a = g.create_identity("a")
        b = g.create_identity("b", flagged=True)
        wl = WatchList([a + 100], g, refresh_s=0.0)
        assert b in wl and a + 100 in wl and a not in wl and None not in wl
        with g.batch() as u:
            u.set_identity(a, flagged=True)
        assert a in wl and wl.ids == {a, b, a + 100}


def test_percentiles() -> None:
    p = Percentiles()
    assert p.summary()["p50"] is None
    for v in range(1, 101):
        p.add(v / 100)
    s = p.summary()
    assert s["n"] == 100 and abs(s["p50"] - 0.505) < 1e-6 and s["p99"] > 0.98


def test_gather_batches_cameras_and_is_not_held_back_by_a_dead_one() -> None:
    ensure_gst_rtsp()
    cfg = StreamConfig(
        open_timeout_s=2.0,
        read_timeout_s=2.0,
        probe_s=0.3,
        reconnect_initial_s=0.2,
        reconnect_max_s=1.0,
        queue_size=4,
    )
    with RtspTestServer() as s1, RtspTestServer() as s2:
        srcs = [
            RtspSource(s1.url, "a", cfg),
            RtspSource(s2.url, "b", cfg),
            RtspSource(f"rtsp://127.0.0.1:{free_port()}/dead", "dead", cfg),
        ]
        ready, stop = threading.Event(), threading.Event()
        for s in srcs:
            s.notify = ready
            s.start()
        try:
            t0 = time.monotonic()
            while not (srcs[0].state.value == "live" and srcs[1].state.value == "live"):
                assert time.monotonic() - t0 < 15
                time.sleep(0.05)
            both = 0
            steps = 0
            t0 = time.monotonic()
            while steps < 20:
                t = time.monotonic()
                frames = gather(srcs, 2, 0.2, ready, stop)
                assert time.monotonic() - t < 0.2 + 0.2 + 0.1  # idle wait + batch wait, bounded
                if frames:
                    steps += 1
                    cams = {f.camera for f in frames}
                    assert "dead" not in cams
                    both += cams == {"a", "b"}
            assert both >= 10, both  # most steps carry both live cameras in one batch
            assert time.monotonic() - t0 < 10
        finally:
            for s in srcs:
                s.close()


def test_stop_flag_catches_sigterm() -> None:
    stop = StopFlag()
    restore = stop.install_signals()
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert stop and stop.reason == "SIGTERM"
    finally:
        restore()
    assert signal.getsignal(signal.SIGTERM) is not None


def test_camera_names() -> None:
    assert default_camera_name("rtsp://admin:pw@cam2.local:554/stream1", 0) == "cam2.local-stream1"
    assert default_camera_name("rtsp://", 3) == "cam3"
    assert camera_names(["rtsp://a/x", "rtsp://b/x"], []) == ["a-x", "b-x"]
    with pytest.raises(ConfigError, match="--camera given 1 time"):
        camera_names(["rtsp://a/x", "rtsp://b/x"], ["one"])
    with pytest.raises(ConfigError, match="more than one URL"):
        camera_names(["rtsp://a/x", "rtsp://a/x"], [])


def test_cli_rejects_bad_input_with_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert main(["stream", str(tmp_path / "clip.mp4"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: reid stream takes camera URLs") and err.count("\n") == 1
    assert main(["stream", "rtsp://u:secretpw@:99999/x", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "malformed" in err and "secretpw" not in err
    assert main(["stream", "rtsp://a/x", "--camera", "a", "--camera", "b"]) == 2
    assert "--camera given 2 time" in capsys.readouterr().err
    assert main(["stream", "rtsp://a/x", "--watch", "-3"]) == 2
    assert "stream.watch" in capsys.readouterr().err
