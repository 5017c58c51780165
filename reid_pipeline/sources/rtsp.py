"""Live network cameras (RTSP, HTTP): one reader thread per camera that never gives up.

Why a thread per camera: ``cv2.VideoCapture.read`` blocks, and a camera that hangs must
not stall the others. The reader decodes continuously and hands frames over through a
small bounded queue:

* ``live`` mode keeps only the newest ``stream.queue_size`` frames: when the consumer is
  slower than the camera, the oldest waiting frame is dropped (and counted), so the lag
  between capture and processing stays bounded instead of growing for ever;
* ``recorded`` mode (e.g. NVR playback over RTSP) drops nothing: the reader waits for
  room, and the server's pacing (TCP) provides back-pressure.

A connection that fails to open or stops delivering frames is released and re-opened
with exponential backoff (``reconnect_initial_s`` doubling up to ``reconnect_max_s``, reset
after frames flow again); only this camera's thread waits. Open and read are bounded by
FFmpeg timeouts (``CAP_PROP_OPEN_TIMEOUT_MSEC``/``CAP_PROP_READ_TIMEOUT_MSEC``), so a camera
that goes silent is noticed. After an open fails, a short RTSP ``DESCRIBE`` probe turns
OpenCV's bare "could not open" into a reason an operator can act on (connection refused,
404 wrong path, 401 credentials, not an RTSP server, no answer).

Frame timestamps are wall-clock capture times (``time.time()`` when the decoder returned
the frame), so ``now - frame.timestamp`` is the end-to-end lag. Frame indices keep counting
across reconnects, so the tracker sees one monotonic sequence per camera.

The URL is only ever shown redacted (``rtsp://***@host/path``): in logs, errors, state
and ``uri``.
"""

from __future__ import annotations

import base64
import collections
import enum
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from reid_pipeline.errors import SourceError
from reid_pipeline.sources.base import VideoSource
from reid_pipeline.types import Frame
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)

_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "http": 80, "https": 443}


class ConnectionState(str, enum.Enum):
    """Where a camera's connection stands; shown in status lines and events."""

    IDLE = "idle"  # not started yet
    CONNECTING = "connecting"  # first attempt
    LIVE = "live"  # frames are flowing
    RECONNECTING = "reconnecting"  # lost or never reached; waiting or retrying with backoff
    FAILED = "failed"  # gave up (``stream.give_up_after`` failed attempts in a row)
    STOPPED = "stopped"  # closed by us


@dataclass(frozen=True)
class SourceStatus:
    """A consistent snapshot of one camera's reader, safe to print or serialise."""

    camera: str
    uri: str  # redacted
    state: ConnectionState
    last_error: str  # redacted; "" when none yet
    frames: int  # frames captured since start
    dropped: int  # frames discarded by the live queue (consumer too slow)
    queued: int  # frames waiting for the consumer
    reconnects: int  # connections lost or failed after the first attempt
    fps: float  # capture rate, smoothed
    last_capture: float | None  # wall-clock time of the newest frame
    state_since: float  # wall-clock time of the last state change

    def to_dict(self) -> dict[str, Any]:
        return {
            "camera": self.camera,
            "uri": self.uri,
            "state": self.state.value,
            "last_error": self.last_error,
            "frames": self.frames,
            "dropped": self.dropped,
            "queued": self.queued,
            "reconnects": self.reconnects,
            "fps": round(self.fps, 2),
            "last_capture": self.last_capture,
            "state_since": self.state_since,
        }


def ffmpeg_capture_options(transport: str, probe_s: float) -> str:
    """OpenCV's FFmpeg options string (``key;value|key;value``).

    TCP interleaving survives packet loss and NAT better than UDP, and a server that dies is
    noticed at once (the socket closes). A short probe keeps (re)connects quick: FFmpeg's
    default analyses 5 s of stream before the first frame. Only options that are harmless
    to video files go here (the variable is process-wide; ``fflags=nobuffer``, for one,
    breaks frame counting of some files), see ``_FfmpegOptions``.
    """
    us = max(100_000, int(probe_s * 1e6))
    return f"rtsp_transport;{transport}|analyzeduration;{us}|probesize;500000"


class _FfmpegOptions:
    """Sets ``OPENCV_FFMPEG_CAPTURE_OPTIONS`` while any RTSP reader runs, then restores it.

    OpenCV reads that variable at every open and it is process-wide (there is no per-capture
    way to pass FFmpeg options), so all cameras share one transport and probe time (they
    come from one config section), and the value is put back when the last reader stops so
    files opened later in the same process are unaffected. A value the operator exported
    is respected as is.
    """

    KEY = "OPENCV_FFMPEG_CAPTURE_OPTIONS"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._saved: str | None = None
        self._ours: str | None = None

    def acquire(self, transport: str, probe_s: float) -> None:
        with self._lock:
            if self._users == 0:
                self._saved = os.environ.get(self.KEY)
                if self._saved is None:
                    self._ours = ffmpeg_capture_options(transport, probe_s)
                    os.environ[self.KEY] = self._ours
                else:
                    self._ours = None
                    log.info("%s is set in the environment; using it as is", self.KEY)
            self._users += 1

    def release(self) -> None:
        with self._lock:
            if self._users == 0:
                return
            self._users -= 1
            if self._users == 0 and self._ours is not None:
                if os.environ.get(self.KEY) == self._ours:
                    del os.environ[self.KEY]
                self._ours = None


_FFMPEG_OPTIONS = _FfmpegOptions()


def _strip_credentials(url: str) -> tuple[str, str, str]:
    """``rtsp://u:p@h:1/x`` -> (``rtsp://h:1/x``, ``u``, ``p``)."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6 literal
        netloc = f"[{netloc}]"
    if parts.port:
        netloc += f":{parts.port}"
    return (
        urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)),
        parts.username or "",
        parts.password or "",
    )


def diagnose(url: str, timeout_s: float) -> str:
    """Why ``url`` could not be opened, as one redacted phrase (best effort, never raises).

    For RTSP it sends one ``DESCRIBE`` (with basic credentials when the URL has them) and
    reads the status line; other schemes only get a TCP connect check.
    """
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 554)
    except ValueError as e:
        return f"malformed URL ({e})"
    if not host:
        return "URL has no host"
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except socket.gaierror:
        return f"unknown host {host!r}"
    except ConnectionRefusedError:
        return f"connection refused by {host}:{port} (nothing listens there)"
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout_s:g}s"
    except OSError as e:
        return f"cannot connect to {host}:{port} ({e.strerror or e})"
    with sock:
        if parts.scheme.lower() != "rtsp":
            return f"{host}:{port} accepts connections but no video stream could be opened"
        plain, user, pw = _strip_credentials(url)
        req = f"DESCRIBE {plain} RTSP/1.0\r\nCSeq: 1\r\nAccept: application/sdp\r\n"
        if user:
            token = base64.b64encode(f"{user}:{pw}".encode()).decode()
            req += f"Authorization: Basic {token}\r\n"
        try:
            sock.settimeout(timeout_s)
            sock.sendall((req + "\r\n").encode())
            reply = sock.recv(1024)
        except TimeoutError:
            return (
                f"{host}:{port} accepts connections but gives no RTSP answer within {timeout_s:g}s"
            )
        except OSError as e:
            return f"{host}:{port} dropped the connection ({e.strerror or e})"
    line = reply.split(b"\r\n", 1)[0].decode("latin-1", "replace")
    if not reply:
        return f"{host}:{port} closed the connection without an RTSP answer"
    if not line.startswith("RTSP/"):
        return f"{host}:{port} is not an RTSP server (unexpected reply)"
    code = line.split(" ", 2)[1:] or ["?"]
    status = " ".join(code)
    hint = {
        "404": "wrong path?",
        "401": "wrong or missing credentials",
        "403": "access denied",
    }.get(code[0], "")
    if code[0] == "200":
        return "the server describes the stream but it could not be opened or decoded"
    return f"server answered {status}" + (f" ({hint})" if hint else "")


class RtspSource(VideoSource):
    """One live camera; frames arrive from a background reader thread.

    Use ``start()`` then ``get(timeout)`` / ``get_nowait()`` (the multi-camera loop) or
    simply iterate (blocks until the next frame; ends after ``close()`` or ``failed``).
    ``status()`` is safe to call from any thread.
    """

    def __init__(
        self,
        url: str,
        camera: str,
        stream_cfg: Any,
        *,
        mode: str | None = None,
        start_frame: int = 0,
    ) -> None:
        url = str(url)
        self.url = url  # never logged or stored: use ``uri``
        self.uri = redact_url(url)
        self.camera = camera
        self.cfg = stream_cfg
        self.mode = mode or getattr(stream_cfg, "mode", "live")
        if self.mode not in ("live", "recorded"):
            raise SourceError(
                f"camera {camera!r}: stream mode must be live or recorded, got {self.mode!r}"
            )
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError as e:
            raise SourceError(f"stream URL {self.uri!r} is malformed: {e}") from None
        if not parts.hostname:
            raise SourceError(f"stream URL {self.uri!r} has no host")
        self.fps = 0.0  # measured once frames flow
        self.frame_count = None  # live: no end
        self.size = (0, 0)  # known after the first frame
        self.start_frame = int(start_frame)  # index given to the first frame (resume numbering)
        self.notify: threading.Event | None = None  # set on every new frame (multi-camera loop)
        self._queue: collections.deque[Frame] = collections.deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = ConnectionState.IDLE
        self._state_since = time.time()
        self._last_error = ""
        self._frames = 0
        self._dropped = 0
        self._reconnects = 0
        self._last_capture: float | None = None
        self._recent: collections.deque[float] = collections.deque(maxlen=256)  # capture times
        self._index = self.start_frame

    # ------------------------------------------------------------------ consumer side

    @property
    def is_live(self) -> bool:
        return True

    def start(self) -> RtspSource:
        """Start the reader thread (idempotent); returns at once, connecting happens there."""
        if self._thread is None:
            self._index = self.start_frame  # may have been set after __init__ (resume)
            _FFMPEG_OPTIONS.acquire(
                getattr(self.cfg, "transport", "tcp"), float(getattr(self.cfg, "probe_s", 1.0))
            )
            self._thread = threading.Thread(
                target=self._run, name=f"rtsp-{self.camera}", daemon=True
            )
            self._thread.start()
        return self

    def get(self, timeout: float | None = None) -> Frame | None:
        """The oldest waiting frame, waiting up to ``timeout`` s; ``None`` when none came."""
        with self._cond:
            if not self._queue and timeout != 0:
                self._cond.wait_for(
                    lambda: (
                        bool(self._queue)
                        or self._stop.is_set()
                        or self._state is ConnectionState.FAILED
                    ),
                    timeout,
                )
            if not self._queue:
                return None
            frame = self._queue.popleft()
            self._cond.notify_all()  # room for a recorded-mode reader
            return frame

    def get_nowait(self) -> Frame | None:
        return self.get(timeout=0)

    def take(self, n: int, newest: bool = False) -> list[Frame]:
        """Up to ``n`` waiting frames, oldest first, without waiting.

        ``newest=True`` (live processing): when more than ``n`` wait, the older ones are
        discarded and counted as dropped, so a consumer slower than the camera always works
        on the most recent picture and its lag stays one step, not a queue's worth.
        """
        with self._cond:
            if newest and self.mode == "live":
                while len(self._queue) > n:
                    self._queue.popleft()
                    self._dropped += 1
            out = [self._queue.popleft() for _ in range(min(n, len(self._queue)))]
            if out:
                self._cond.notify_all()
            return out

    @property
    def queued(self) -> int:
        """Frames waiting for the consumer (cheap; no snapshot)."""
        return len(self._queue)

    @property
    def finished(self) -> bool:
        """No more frames will ever come (closed or failed) and none are waiting."""
        with self._cond:
            return not self._queue and (
                self._stop.is_set() or self._state is ConnectionState.FAILED
            )

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            frame = self.get(timeout=0.5)
            if frame is not None:
                yield frame
            elif self.finished:
                return

    def _capture_fps(self, now: float, window_s: float = 5.0) -> float:
        """Frames captured per second over the last ``window_s`` (0 when none came)."""
        recent = [t for t in self._recent if t >= now - window_s]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def status(self) -> SourceStatus:
        with self._cond:
            fps = self._capture_fps(time.time())
            if fps > 0:
                self.fps = fps
            return SourceStatus(
                self.camera,
                self.uri,
                self._state,
                self._last_error,
                self._frames,
                self._dropped,
                len(self._queue),
                self._reconnects,
                fps,
                self._last_capture,
                self._state_since,
            )

    @property
    def state(self) -> ConnectionState:
        return self._state

    def fingerprint(self) -> str:
        """Live content is never the same twice: identify the camera and its address."""
        return hashlib.sha1(f"live-v1|{self.camera}|{self.uri}".encode()).hexdigest()

    def close(self, timeout: float = 2.0) -> None:
        """Stop reading; waits up to ``timeout`` s for the thread (it may be inside a
        blocking FFmpeg call bounded by the read timeout; it is a daemon, so exit never hangs).
        Frames already queued stay readable with ``get``."""
        if not self._stop.is_set() and self._thread is not None:
            _FFMPEG_OPTIONS.release()
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._thread is None or not self._thread.is_alive():
            self._set_state(ConnectionState.STOPPED)

    # ------------------------------------------------------------------ reader thread

    def _set_state(self, state: ConnectionState, error: str | None = None) -> None:
        with self._cond:
            if error is not None:
                self._last_error = redact_url(error)
            if state is not self._state:
                self._state, self._state_since = state, time.time()
            self._cond.notify_all()

    def _open(self) -> Any:
        import cv2

        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(self.cfg.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(self.cfg.read_timeout_s * 1000),
        ]
        try:
            cap = cv2.VideoCapture(self.url, cv2.CAP_FFMPEG, params)
        except cv2.error as e:  # pragma: no cover - OpenCV raises only on bad params
            log.debug("camera %s: VideoCapture raised %s", self.camera, redact_url(str(e)))
            return None
        if not cap.isOpened():
            cap.release()
            return None
        return cap

    def _push(self, frame: Frame) -> None:
        with self._cond:
            if self.mode == "recorded":
                self._cond.wait_for(
                    lambda: len(self._queue) < self.cfg.queue_size or self._stop.is_set()
                )
                if self._stop.is_set():
                    return
            elif len(self._queue) >= self.cfg.queue_size:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append(frame)
            self._frames += 1
            self._recent.append(frame.timestamp)
            self._last_capture = frame.timestamp
            self._cond.notify_all()
        if self.notify is not None:
            self.notify.set()

    def _backoff(self, delay: float) -> bool:
        """Wait ``delay`` s unless stopped; True when the thread should go on."""
        return not self._stop.wait(delay)

    def _run(self) -> None:
        delay = self.cfg.reconnect_initial_s
        failures = 0  # failed attempts in a row (no frame delivered)
        give_up = int(getattr(self.cfg, "give_up_after", 0))
        first = True
        while not self._stop.is_set():
            self._set_state(ConnectionState.CONNECTING if first else ConnectionState.RECONNECTING)
            first = False
            cap = self._open()
            if self._stop.is_set():
                if cap is not None:
                    cap.release()
                break
            got = 0
            if cap is None:
                reason = diagnose(self.url, min(3.0, self.cfg.open_timeout_s))
                error = f"camera {self.camera!r} ({self.uri}): cannot open stream: {reason}"
            else:
                self._set_state(ConnectionState.LIVE)
                while not self._stop.is_set():
                    ok, img = cap.read()
                    ts = time.time()
                    if not ok or img is None:
                        break
                    if got == 0:
                        self.size = (int(img.shape[1]), int(img.shape[0]))
                        if failures or self._reconnects:
                            log.info("camera %s (%s): live again", self.camera, self.uri)
                        failures, delay = 0, self.cfg.reconnect_initial_s
                    got += 1
                    self._push(Frame(self.camera, self._index, ts, img))
                    self._index += 1
                cap.release()
                if self._stop.is_set():
                    break
                error = (
                    f"camera {self.camera!r} ({self.uri}): stream stopped after {got} "
                    f"frame(s) (server closed it, or no frame within "
                    f"{self.cfg.read_timeout_s:g}s)"
                )
            if got == 0:
                failures += 1
            self._reconnects += 1
            if give_up and failures >= give_up:
                log.error("%s; giving up after %d attempts", error, failures)
                self._set_state(ConnectionState.FAILED, error)
                return
            log.warning("%s; retrying in %.1fs", error, delay)
            self._set_state(ConnectionState.RECONNECTING, error)
            if not self._backoff(delay):
                break
            delay = min(delay * 2, self.cfg.reconnect_max_s)
        self._set_state(ConnectionState.STOPPED)


__all__ = ["ConnectionState", "RtspSource", "SourceStatus", "diagnose", "ffmpeg_capture_options"]
