"""Recorded sources: video files, folders of frames, and local webcams (OpenCV).

Damaged input policy (files), chosen so that nothing decoded is ever thrown away:

* missing, unreadable, not a video, or a container FFmpeg cannot open (e.g. an MP4 cut
  before its index, the ``moov`` atom) -> ``SourceError`` at open time;
* a video that opens but yields no frame -> ``SourceError`` ("has no frames") at open time;
* undecodable frames in the middle (corrupt packets) are skipped: up to
  ``MAX_CONSECUTIVE_FAILURES`` failed reads in a row are retried; after a gap the frame
  index is taken from the decoder's presentation time, so later indices and timestamps
  stay right (a failed read and a lost frame are not one to one); a warning says how many;
* decoding that stops early (truncated file: the container declares N frames, fewer
  decode) -> every decoded frame is yielded first, then ``SourceError`` "truncated or
  corrupt" is raised naming the file and the frame it stopped at. A shortfall of at most
  ``max(TRUNCATION_TOLERANCE_FRAMES, 1% of N)`` frames is only a warning, because container
  frame counts are estimates (FFmpeg derives them from duration x fps) and are often off
  by a frame or two on perfectly good files.

Frame timestamps of files and folders are ``index / fps`` seconds (deterministic, so
re-runs produce identical records); webcams use wall-clock time (``time.time()``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from reid_pipeline.errors import SourceError
from reid_pipeline.sources.base import DEFAULT_FPS, VideoSource
from reid_pipeline.types import Frame

# FFmpeg prints every damaged packet to stderr; we report damage ourselves, once, via logging.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
import cv2

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
MAX_CONSECUTIVE_FAILURES = 100  # failed reads in a row before decoding counts as stopped
TRUNCATION_TOLERANCE_FRAMES = 2
_MIB = 1 << 20


def _natural_key(name: str) -> list[object]:
    """``frame_2.jpg`` sorts before ``frame_10.jpg`` (frame dumps rarely zero-pad)."""
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _valid_fps(value: float) -> bool:
    return bool(np.isfinite(value)) and 0.5 <= value <= 1000.0


class VideoFileSource(VideoSource):
    """A video file decoded with OpenCV (FFmpeg backend); see the module doc for damage."""

    def __init__(
        self, path: str | Path, camera: str, *, fps: float | None = None, start_frame: int = 0
    ) -> None:
        self.path = Path(path)
        self.camera = camera
        self.uri = str(self.path)
        self.start_frame = int(start_frame)
        name = repr(str(self.path))
        if not self.path.exists():
            raise SourceError(f"video {name} does not exist")
        if not self.path.is_file():
            raise SourceError(f"video {name} is not a file")
        if not os.access(self.path, os.R_OK):
            raise SourceError(f"video {name} is not readable (permission denied)")
        if self.path.stat().st_size == 0:
            raise SourceError(f"video {name} is empty (0 bytes)")
        self._cap: cv2.VideoCapture | None = cv2.VideoCapture(str(self.path))
        if not self._cap.isOpened():
            self.close()
            raise SourceError(
                f"video {name} cannot be opened: not a video, or damaged/truncated "
                "(e.g. an MP4 cut before its index)"
            )
        declared = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.declared_frames = int(declared) if np.isfinite(declared) and declared > 0 else 0
        ok, first = self._cap.read()
        if not ok or first is None:
            self.close()
            raise SourceError(f"video {name} has no frames (nothing could be decoded)")
        self.size = (int(first.shape[1]), int(first.shape[0]))
        cfps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        if fps is not None:
            self.fps = float(fps)
        elif _valid_fps(cfps):
            self.fps = cfps
        else:
            log.warning(
                "video %s declares no usable frame rate (%s); assuming %.0f fps",
                name,
                cfps,
                DEFAULT_FPS,
            )
            self.fps = DEFAULT_FPS
        # Unknown frame counts (some streams-in-a-file) stay None: no truncation check then.
        self.frame_count = self.declared_frames or None
        if self.frame_count is not None and self.start_frame > self.frame_count:
            self.close()
            raise SourceError(
                f"video {name}: cannot resume at frame {self.start_frame}, "
                f"it has {self.frame_count} frames"
            )
        self._first: np.ndarray | None = first
        self._fingerprint: str | None = None

    def _seek(self, cap: cv2.VideoCapture) -> int:
        """Position ``cap`` at ``start_frame``; returns the index of the next read."""
        if self.start_frame == 0:
            return 0
        if cap.set(cv2.CAP_PROP_POS_FRAMES, self.start_frame):
            pos = int(cap.get(cv2.CAP_PROP_POS_FRAMES))
            if pos == self.start_frame:
                return pos
        # Seeking unsupported or inexact for this codec: decode forward from the start.
        log.info(
            "video %r: exact seek failed, skipping %d frames by decoding",
            str(self.path),
            self.start_frame,
        )
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        for i in range(self.start_frame):
            if not cap.grab():
                return i
        return self.start_frame

    def __iter__(self) -> Iterator[Frame]:
        if self._cap is None:
            raise SourceError(f"video {str(self.path)!r} is closed")
        cap = self._cap
        name = repr(str(self.path))
        index = 0
        if self.start_frame > 0:
            self._first = None
            index = self._seek(cap)
        fps, cam = self.fps, self.camera
        skipped = 0  # frame positions lost to undecodable data
        failures = 0  # current run of failed reads
        last_good = index - 1
        while True:
            if self._first is not None:
                img, self._first = self._first, None
                ok = True
            else:
                ok, img = cap.read()
            if ok and img is not None:
                # The index comes from the frame's presentation time when there is one: after
                # corrupt packets, failed reads and lost frames do not match one to one.
                msec = cap.get(cv2.CAP_PROP_POS_MSEC)
                index = last_good + 1
                if failures and np.isfinite(msec) and msec > 0:
                    index = max(index, round(msec * fps / 1000.0))
                skipped += index - last_good - 1
                failures = 0
                last_good = index
                yield Frame(cam, index, index / fps, img)
            else:
                failures += 1
                if failures >= MAX_CONSECUTIVE_FAILURES:
                    break
        if skipped:
            log.warning("video %s: skipped %d undecodable frame(s) (corrupt data)", name, skipped)
        decoded_end = last_good + 1
        if self.declared_frames and decoded_end < self.declared_frames:
            short = self.declared_frames - decoded_end
            tolerance = max(TRUNCATION_TOLERANCE_FRAMES, self.declared_frames // 100)
            if short > tolerance:
                raise SourceError(
                    f"video {name} is truncated or corrupt: decoding stopped at frame "
                    f"{decoded_end} of {self.declared_frames} declared"
                )
            log.warning(
                "video %s: %d frame(s) decoded of %d declared (last %d missing); "
                "treating as complete",
                name,
                decoded_end,
                self.declared_frames,
                short,
            )

    def fingerprint(self) -> str:
        """sha1 of size + first and last MiB: content-based, so a copied or touched file (new
        mtime) is still recognised, and cheap on multi-GB recordings."""
        if self._fingerprint is None:
            h = hashlib.sha1(b"video-v1")
            size = self.path.stat().st_size
            h.update(str(size).encode())
            with open(self.path, "rb") as f:
                h.update(f.read(_MIB))
                if size > 2 * _MIB:
                    f.seek(size - _MIB)
                    h.update(f.read(_MIB))
                elif size > _MIB:
                    h.update(f.read())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class ImageFolderSource(VideoSource):
    """A folder of frames (jpg/png/...), naturally sorted, played at ``fps`` (default 10)."""

    def __init__(
        self, folder: str | Path, camera: str, *, fps: float | None = None, start_frame: int = 0
    ) -> None:
        self.folder = Path(folder)
        self.camera = camera
        self.uri = str(self.folder)
        self.start_frame = int(start_frame)
        name = repr(str(self.folder))
        if not self.folder.is_dir():
            raise SourceError(f"frame folder {name} does not exist or is not a folder")
        try:
            entries = [
                p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file()
            ]
        except OSError as e:
            raise SourceError(f"frame folder {name} cannot be listed: {e.strerror}") from None
        if not entries:
            raise SourceError(
                f"frame folder {name} contains no images ({', '.join(sorted(IMAGE_EXTS))})"
            )
        self.files = sorted(entries, key=lambda p: _natural_key(p.name))
        self.frame_count = len(self.files)
        if self.start_frame > self.frame_count:
            raise SourceError(
                f"frame folder {name}: cannot resume at frame {self.start_frame}, "
                f"it has {self.frame_count} frames"
            )
        first = self._read(self.files[0])
        self.size = (int(first.shape[1]), int(first.shape[0]))
        self.fps = float(fps) if fps is not None else DEFAULT_FPS

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise SourceError(f"frame {str(path)!r} cannot be read as an image")
        return img

    def __iter__(self) -> Iterator[Frame]:
        w, h = self.size
        for index in range(self.start_frame, self.frame_count):
            path = self.files[index]
            img = self._read(path)
            if img.shape[1] != w or img.shape[0] != h:
                raise SourceError(
                    f"frame {str(path)!r} is {img.shape[1]}x{img.shape[0]}, "
                    f"the folder's frames are {w}x{h}"
                )
            yield Frame(self.camera, index, index / self.fps, img)

    def fingerprint(self) -> str:
        """sha1 of the sorted names and sizes: cheap for thousands of frames, and it changes
        when a frame is added, removed or replaced by one of another size."""
        h = hashlib.sha1(b"folder-v1")
        for p in self.files:
            h.update(f"{p.name}\0{p.stat().st_size}\n".encode())
        return h.hexdigest()


class WebcamSource(VideoSource):
    """A local camera by OpenCV index; live: no frame count, wall-clock timestamps."""

    def __init__(self, index: int, camera: str, *, fps: float | None = None) -> None:
        self.index = int(index)
        self.camera = camera
        self.uri = f"webcam:{self.index}"
        self.frame_count = None
        self._cap: cv2.VideoCapture | None = cv2.VideoCapture(self.index)
        if not self._cap.isOpened():
            self.close()
            raise SourceError(f"webcam {self.index} cannot be opened (no such device?)")
        ok, first = self._cap.read()
        if not ok or first is None:
            self.close()
            raise SourceError(f"webcam {self.index} opened but delivers no frames")
        self._first: np.ndarray | None = first
        self.size = (int(first.shape[1]), int(first.shape[0]))
        cfps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = float(fps) if fps is not None else (cfps if _valid_fps(cfps) else 30.0)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        while self._cap is not None:
            if self._first is not None:
                img, self._first = self._first, None
            else:
                ok, img = self._cap.read()
                if not ok or img is None:
                    raise SourceError(
                        f"webcam {self.index} stopped delivering frames after frame {index}"
                    )
            yield Frame(self.camera, index, time.time(), img)
            index += 1

    def fingerprint(self) -> str:
        return self.uri

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None
