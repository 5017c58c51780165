"""RtspSource against a real GStreamer RTSP server on loopback (installed by the fixture)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator

import pytest
from rtsp_server import RtspTestServer, ensure_gst_rtsp, free_port

from reid_pipeline.config import StreamConfig, load_config
from reid_pipeline.errors import ConfigError, SourceError
from reid_pipeline.sources import open_source
from reid_pipeline.sources.rtsp import ConnectionState, RtspSource, diagnose

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="session", autouse=True)
def gst() -> None:
    ensure_gst_rtsp()


def fast_cfg(**kw: object) -> StreamConfig:
    base: dict[str, object] = {
        "open_timeout_s": 3.0,
        "read_timeout_s": 2.0,
        "probe_s": 0.3,
        "reconnect_initial_s": 0.2,
        "reconnect_max_s": 1.0,
        "queue_size": 8,
    }
    base.update(kw)
    return StreamConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def server() -> Iterator[RtspTestServer]:
    with RtspTestServer() as s:
        yield s


def wait_for(pred, timeout: float, step: float = 0.05) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return bool(pred())


def take(src: RtspSource, n: int, timeout: float = 15.0) -> list:  # type: ignore[type-arg]
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        f = src.get(timeout=0.5)
        if f is not None:
            out.append(f)
    return out


def test_reads_frames_with_capture_timestamps(server: RtspTestServer) -> None:
    src = open_source(server.url, "gate", fast_cfg())
    assert isinstance(src, RtspSource) and src.is_live and src.frame_count is None
    before = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
    t0 = time.time()
    with src.start():
        frames = take(src, 15)
        assert len(frames) == 15
        assert all(f.image.shape == (240, 320, 3) and f.camera == "gate" for f in frames)
        idx = [f.index for f in frames]
        assert idx == sorted(idx) and len(set(idx)) == len(idx)
        ts = [f.timestamp for f in frames]
        assert ts == sorted(ts) and t0 <= ts[0] <= time.time()
        st = src.status()
        assert st.state is ConnectionState.LIVE and st.last_error == ""
        assert 5.0 < st.fps < 20.0, st.fps  # the server sends 10 fps
        assert src.size == (320, 240)
        assert "rtsp_transport;tcp" in os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS", "")
    assert src.status().state is ConnectionState.STOPPED
    # the process-wide FFmpeg options are put back once no reader runs (files are unaffected)
    assert os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS") == before


def test_iterating_yields_frames_until_closed(server: RtspTestServer) -> None:
    src = RtspSource(server.url, "gate", fast_cfg())
    got = 0
    for frame in src:
        got += 1
        assert frame.image.ndim == 3
        if got == 5:
            src.close()
    assert 5 <= got <= 5 + 8  # whatever was queued at close still comes out, then it ends


def test_recovers_when_the_server_restarts_several_times(server: RtspTestServer) -> None:
    src = RtspSource(server.url, "hall", fast_cfg()).start()
    try:
        last_index = -1
        for round_ in range(3):
            frames = take(src, 5)
            assert len(frames) == 5, f"no frames after restart {round_}"
            assert frames[0].index > last_index  # indices keep counting across reconnects
            last_index = frames[-1].index
            server.stop()
            assert wait_for(lambda: src.state is ConnectionState.RECONNECTING, 10)
            assert "127.0.0.1" in src.status().last_error
            while src.get_nowait() is not None:  # whatever was decoded before the cut
                pass
            time.sleep(0.5)  # down for a while: the backoff grows
            server.start()
            assert wait_for(lambda: src.state is ConnectionState.LIVE, 15)
        assert len(take(src, 5)) == 5
        assert src.status().reconnects >= 3
    finally:
        src.close()


def test_closed_port_reconnects_then_fails_with_clear_redacted_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"rtsp://admin:hunter2@127.0.0.1:{free_port()}/live"
    caplog.set_level(logging.INFO)
    src = RtspSource(url, "door", fast_cfg(give_up_after=3)).start()
    assert wait_for(lambda: src.state is ConnectionState.RECONNECTING, 10)
    assert wait_for(lambda: src.state is ConnectionState.FAILED, 20)
    st = src.status()
    assert "connection refused" in st.last_error and "door" in st.last_error
    assert "hunter2" not in st.last_error and "admin" not in st.last_error
    assert "rtsp://***@127.0.0.1" in st.last_error
    assert src.finished and list(src) == []  # iteration ends instead of blocking for ever
    src.close()
    assert "hunter2" not in caplog.text and "giving up" in caplog.text
    assert "hunter2" not in repr(src) and "hunter2" not in str(st.to_dict())


def test_wrong_path_names_404(server: RtspTestServer) -> None:
    src = RtspSource(server.url.replace("/cam", "/nope"), "x", fast_cfg()).start()
    try:
        assert wait_for(lambda: src.status().last_error != "", 10)
        assert "404" in src.status().last_error and "wrong path" in src.status().last_error
        assert src.state in (ConnectionState.RECONNECTING, ConnectionState.CONNECTING)
        assert src.get(timeout=0.2) is None
    finally:
        src.close()


def test_garbage_camera_does_not_disturb_a_good_one(server: RtspTestServer) -> None:
    with RtspTestServer(source="garbage") as junk:
        bad = RtspSource(junk.url, "junk", fast_cfg()).start()
        good = RtspSource(server.url, "good", fast_cfg()).start()
        try:
            t0 = time.monotonic()
            frames = take(good, 20)
            elapsed = time.monotonic() - t0
            assert len(frames) == 20 and elapsed < 8.0  # ~2 s at 10 fps (+ connect)
            assert wait_for(lambda: bad.status().last_error != "", 15)
            assert "not an RTSP server" in bad.status().last_error
            assert bad.status().frames == 0 and bad.get_nowait() is None
        finally:
            bad.close()
            good.close()


def test_silent_server_times_out() -> None:
    with RtspTestServer(source="silent") as mute:
        src = RtspSource(mute.url, "mute", fast_cfg(open_timeout_s=1.0)).start()
        try:
            assert wait_for(lambda: src.status().last_error != "", 10)
            assert "no RTSP answer" in src.status().last_error
        finally:
            src.close()


def test_live_queue_keeps_only_the_newest_frames(server: RtspTestServer) -> None:
    src = RtspSource(server.url, "q", fast_cfg(queue_size=2)).start()
    try:
        assert wait_for(lambda: src.status().frames >= 12, 15)  # nobody consumes
        st = src.status()
        assert st.queued == 2 and st.dropped == st.frames - 2 and st.dropped >= 10
        f1, f2 = src.get_nowait(), src.get_nowait()
        assert f1 is not None and f2 is not None and f2.index == f1.index + 1
        assert time.time() - f2.timestamp < 1.0  # the newest, not a stale backlog
    finally:
        src.close()


def test_recorded_mode_drops_nothing(server: RtspTestServer) -> None:
    src = RtspSource(server.url, "nvr", fast_cfg(queue_size=2, mode="recorded")).start()
    try:
        frames = []
        for _ in range(12):
            f = src.get(timeout=5)
            assert f is not None
            frames.append(f)
            time.sleep(0.15)  # slower than the camera's 10 fps
        assert [f.index for f in frames] == list(range(frames[0].index, frames[0].index + 12))
        assert src.status().dropped == 0
    finally:
        src.close()


def test_credentials_accepted_and_never_shown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with RtspTestServer(user="operator", password="s3cr3tpw") as s:
        ok = RtspSource(s.url, "auth", fast_cfg()).start()
        wrong = RtspSource(s.url.replace("s3cr3tpw", "guessed9"), "auth2", fast_cfg()).start()
        try:
            assert len(take(ok, 3)) == 3
            assert wait_for(lambda: wrong.status().last_error != "", 10)
            assert "401" in wrong.status().last_error
            for src in (ok, wrong):
                text = repr(src) + str(src.status().to_dict()) + src.uri
                assert "s3cr3tpw" not in text and "guessed9" not in text and "operator" not in text
        finally:
            ok.close()
            wrong.close()
    assert "s3cr3tpw" not in caplog.text and "guessed9" not in caplog.text


def test_diagnose_without_server() -> None:
    assert "connection refused" in diagnose(f"rtsp://127.0.0.1:{free_port()}/x", 1.0)
    assert "no host" in diagnose("rtsp:///x", 1.0)


def test_bad_urls_and_config_rejected() -> None:
    with pytest.raises(SourceError, match=r"rtsp://\*\*\*@:99999"):
        RtspSource("rtsp://u:pw@:99999/x", "c", StreamConfig())
    with pytest.raises(SourceError, match="no host"):
        open_source("rtsp:///x", "c", StreamConfig())
    with pytest.raises(ConfigError, match="stream.mode"):
        load_config(overrides={"stream.mode": "fast"})
    with pytest.raises(ConfigError, match="stream.probe_s"):
        load_config(overrides={"stream.probe_s": 0})
    with pytest.raises(ConfigError, match="stream.watch"):
        load_config(overrides={"stream.watch": [-1]})
    with pytest.raises(ConfigError, match="stream.give_up_after"):
        load_config(overrides={"stream.give_up_after": -2})
