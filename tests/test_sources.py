"""Video sources: files, folders, resume, fingerprints and every kind of damaged input."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_pipeline.errors import SourceError
from reid_pipeline.sources import open_source
from reid_pipeline.sources.files import ImageFolderSource, VideoFileSource

W, H = 96, 64


def _frame(i: int) -> np.ndarray:
    """A frame whose index is written as 12 black/white 16x16 blocks (survives lossy codecs)."""
    img = np.full((H, W, 3), 60, np.uint8)
    for bit in range(12):
        if i >> bit & 1:
            r, c = divmod(bit, 6)
            img[r * 16 : (r + 1) * 16, c * 16 : (c + 1) * 16] = 255
    return img


def _index_of(img: np.ndarray) -> int:
    return sum(
        1 << bit for bit in range(12) if img[(bit // 6) * 16 + 8, (bit % 6) * 16 + 8].mean() > 160
    )


def make_video(
    path: Path, n: int = 40, fourcc: str = "MJPG", fps: float = 10.0, noise: bool = False
) -> Path:
    """Write ``n`` index-coded frames; ``noise`` fills the lower half so packets are realistic
    in size (a static picture compresses to a few bytes per frame)."""
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H))
    assert w.isOpened()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = _frame(i)
        if noise:
            img[32:] = rng.integers(0, 256, (H - 32, W, 3), dtype=np.uint8)
        w.write(img)
    w.release()
    return path


@pytest.mark.parametrize("fourcc,ext", [("MJPG", "avi"), ("mp4v", "mp4")])
def test_video_file_yields_all_frames_in_order(tmp_path, fourcc, ext):
    path = make_video(tmp_path / f"v.{ext}", 40, fourcc)
    with open_source(str(path), "lobby") as src:
        assert isinstance(src, VideoFileSource)
        assert src.frame_count == 40 and src.size == (W, H) and src.fps == pytest.approx(10.0)
        assert src.uri == str(path)
        frames = list(src)
    assert [f.index for f in frames] == list(range(40))
    assert all(f.camera == "lobby" for f in frames)
    assert frames[7].timestamp == pytest.approx(0.7)
    assert [_index_of(f.image) for f in frames] == list(range(40))
    assert frames[0].image.shape == (H, W, 3) and frames[0].image.dtype == np.uint8


@pytest.mark.parametrize("fourcc,ext", [("MJPG", "avi"), ("mp4v", "mp4")])
def test_resume_from_start_frame(tmp_path, fourcc, ext):
    path = make_video(tmp_path / f"v.{ext}", 40, fourcc)
    with open_source(str(path), "c", start_frame=25) as src:
        frames = list(src)
    assert [f.index for f in frames] == list(range(25, 40))
    assert [_index_of(f.image) for f in frames] == list(range(25, 40))
    assert frames[0].timestamp == pytest.approx(2.5)
    with open_source(str(path), "c", start_frame=40) as src:  # a finished run resumes to nothing
        assert list(src) == []
    with pytest.raises(SourceError, match="cannot resume at frame 41"):
        open_source(str(path), "c", start_frame=41)


def test_fps_override_changes_timestamps(tmp_path):
    path = make_video(tmp_path / "v.avi", 5)
    with open_source(str(path), "c", fps=25.0) as src:
        assert [f.timestamp for f in src][-1] == pytest.approx(4 / 25)


def test_missing_file_names_it(tmp_path):
    p = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match=r"nope\.mp4.*does not exist"):
        open_source(str(p), "c")


def test_not_a_video_names_it(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    with pytest.raises(SourceError, match=r"notes\.mp4.*cannot be opened"):
        open_source(str(p), "c")
    empty = tmp_path / "empty.avi"
    empty.write_bytes(b"")
    with pytest.raises(SourceError, match=r"empty\.avi.*0 bytes"):
        open_source(str(empty), "c")


def test_directory_given_as_video_file(tmp_path):
    (tmp_path / "clips").mkdir()
    with pytest.raises(SourceError, match=r"clips.*not a file"):
        VideoFileSource(tmp_path / "clips", "c")


@pytest.mark.parametrize("fourcc,ext", [("MJPG", "avi"), ("mp4v", "mp4")])
def test_zero_frame_video(tmp_path, fourcc, ext):
    p = tmp_path / f"zero.{ext}"
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*fourcc), 10, (W, H))
    w.release()
    # AVI opens and decodes nothing; an MP4 without frames has no index and cannot open.
    with pytest.raises(SourceError, match=rf"zero\.{ext}.*(no frames|cannot be opened)"):
        open_source(str(p), "c")


def test_truncated_avi_yields_decoded_frames_then_raises(tmp_path):
    p = make_video(tmp_path / "cut.avi", 60)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    src = open_source(str(p), "c")
    assert src.frame_count == 60  # the header still declares the full length
    got = []
    with pytest.raises(
        SourceError, match=r"cut\.avi.*truncated or corrupt.*stopped at frame \d+ of 60"
    ):
        for f in src:
            got.append(f.index)
    src.close()
    # everything decoded before the damage was delivered, in order, before the error
    assert 20 <= len(got) < 40 and got == list(range(len(got)))


def test_truncated_mp4_cannot_open(tmp_path):
    p = make_video(tmp_path / "cut.mp4", 60, "mp4v")
    data = p.read_bytes()
    p.write_bytes(data[: int(len(data) * 0.9)])  # the index (moov) sits at the end
    with pytest.raises(SourceError, match=r"cut\.mp4.*cannot be opened"):
        open_source(str(p), "c")


def test_corrupt_middle_is_skipped_with_warning(tmp_path, caplog):
    p = make_video(tmp_path / "mid.mp4", 60, "mp4v", noise=True)
    data = bytearray(p.read_bytes())
    mdat = data.index(b"mdat")  # MP4 media data; the index (moov) must stay intact
    moov = data.index(b"moov")
    start = mdat + (moov - mdat) // 3
    data[start : start + 1500] = bytes(1500)
    p.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING), open_source(str(p), "c") as src:
        frames = list(src)
    idx = [f.index for f in frames]
    assert 50 <= len(frames) < 60 and idx == sorted(idx) and len(set(idx)) == len(idx)
    # indices keep counting through the skipped frames: the last frame is still frame 59
    assert idx[-1] == 59 and _index_of(frames[-1].image) == 59
    assert "undecodable" in caplog.text and "mid.mp4" in caplog.text


def test_tiny_shortfall_is_only_a_warning(tmp_path, caplog):
    p = make_video(tmp_path / "almost.avi", 300)
    data = p.read_bytes()
    movi, idx1 = data.index(b"movi"), data.index(b"idx1")  # AVI media data, then its index
    per_frame = (idx1 - movi) / 300  # MJPG frames of one picture are equal in size
    p.write_bytes(data[: idx1 - int(per_frame * 1.5)])  # lose the last frame and a half
    with caplog.at_level(logging.WARNING), open_source(str(p), "c") as src:
        frames = list(src)
    assert 297 <= len(frames) < 300
    assert "treating as complete" in caplog.text


def test_fingerprint_is_content_based(tmp_path):
    a = make_video(tmp_path / "a.avi", 10)
    b = tmp_path / "copy.avi"
    b.write_bytes(a.read_bytes())
    os.utime(b, (1, 1))
    c = make_video(tmp_path / "c.avi", 11)
    fa, fb, fc = (open_source(str(p), "x").fingerprint() for p in (a, b, c))
    assert fa == fb and fa != fc and len(fa) == 40


def _write_folder(folder: Path, n: int, names: str = "f{}.png") -> None:
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / names.format(i)), _frame(i))


def test_folder_source_natural_order_and_default_fps(tmp_path):
    d = tmp_path / "frames"
    _write_folder(d, 12)  # f0..f11: f10 must come after f9
    (d / "notes.txt").write_text("ignored")
    with open_source(str(d), "door") as src:
        assert isinstance(src, ImageFolderSource)
        assert src.fps == 10.0 and src.frame_count == 12 and src.size == (W, H)
        frames = list(src)
    assert [_index_of(f.image) for f in frames] == list(range(12))
    assert frames[3].timestamp == pytest.approx(0.3)
    with open_source(str(d), "door", start_frame=10, fps=2) as src:
        tail = list(src)
    assert [f.index for f in tail] == [10, 11] and tail[0].timestamp == pytest.approx(5.0)


def test_folder_errors_name_the_input(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="empty.*no images"):
        open_source(str(empty), "c")
    d = tmp_path / "bad"
    _write_folder(d, 4)
    (d / "f2.png").write_bytes(b"garbage")
    src = open_source(str(d), "c")
    got = []
    with pytest.raises(SourceError, match=r"f2\.png.*cannot be read"):
        for f in src:
            got.append(f.index)
    assert got == [0, 1]


def test_folder_fingerprint_tracks_content(tmp_path):
    d = tmp_path / "fr"
    _write_folder(d, 5)
    f1 = open_source(str(d), "c").fingerprint()
    assert open_source(str(d), "c").fingerprint() == f1
    cv2.imwrite(str(d / "f5.png"), _frame(5))
    assert open_source(str(d), "c").fingerprint() != f1


def test_empty_spec_and_negative_start_name_the_camera(tmp_path):
    with pytest.raises(SourceError, match="camera 'gate': empty source"):
        open_source("  ", "gate")
    with pytest.raises(SourceError, match="start_frame must be >= 0"):
        open_source(str(make_video(tmp_path / "v.avi", 3)), "gate", start_frame=-1)


def test_missing_webcam_is_a_source_error():
    with pytest.raises(SourceError, match="webcam 97"):
        open_source("97", "c")
    with pytest.raises(SourceError, match="webcam 98"):
        open_source("webcam:98", "c")


def test_urls_dispatch_to_rtsp_source(monkeypatch):
    """URLs go to the streaming module (owned elsewhere); checked with a stand-in module."""
    import sys
    import types

    calls = []

    class FakeRtsp:
        def __init__(self, url, camera, cfg):
            calls.append((url, camera, cfg))

    fake = types.ModuleType("reid_pipeline.sources.rtsp")
    fake.RtspSource = FakeRtsp  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "reid_pipeline.sources.rtsp", fake)
    for url in ("rtsp://u:p@cam/1", "rtsps://cam/2", "http://cam/3.mjpg", "HTTPS://cam/4"):
        assert isinstance(open_source(url, "gate"), FakeRtsp)
    assert calls[0][0] == "rtsp://u:p@cam/1"
    assert all(c[1] == "gate" and c[2] is not None for c in calls)
