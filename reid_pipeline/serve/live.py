"""What the console shows of a running ``reid stream``: live tiles, events, camera states.

The live loop must never wait for a browser. So:

* **Latest-frame slots, not queues.** After each step the loop hands over the newest frame
  of each camera and the boxes tracked on it (``LiveHub.on_frames``, a reference and a few
  numbers: no drawing, no encoding). A browser's tile reads the slot at its own pace; the
  first reader of a new frame draws and encodes it (in a server thread) and every other
  viewer gets the same JPEG. A slow browser simply skips frames.
* **Events** (``StreamEvent`` through ``on_event``) go into a bounded ring (``EventFeed``)
  that each server-sent-events client reads from its own position; a client that falls
  behind the ring skips what it missed instead of holding anything.
* **Gallery writes from the console run in the loop's thread.** The live matcher keeps an
  in-memory copy of the exemplars that the gallery updates after each commit; a rename,
  merge or delete committed from a server thread would change it under the loop's feet.
  ``LiveHub.run_write`` queues the change and the loop runs it between two steps (it calls
  ``on_frames`` at least five times a second, frames or not); once the loop has ended the
  change runs at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from reid_pipeline.errors import DatabaseError
from reid_pipeline.types import Frame

log = logging.getLogger(__name__)

T = TypeVar("T")
WRITE_WAIT_S = 30.0  # how long a console write waits for the loop to take it


# ------------------------------------------------------------------ frames


@dataclass
class TileBox:
    bbox: tuple[float, float, float, float]
    track: int
    identity: int | None


class FrameSlot:
    """The newest frame of one camera (written by the loop, read by browsers)."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self._lock = threading.Lock()
        self._image: np.ndarray | None = None
        self._boxes: list[TileBox] = []
        self._index = 0
        self.version = 0  # bumps with every new frame
        self.captured = 0.0
        self._jpeg: tuple[int, bytes] | None = None
        self._encode = threading.Lock()
        self.encoded = 0  # frames drawn and encoded (once each, whoever watches)
        self.sent = 0  # frames sent to browsers

    def put(self, frame: Frame, boxes: list[TileBox]) -> None:
        """Keep ``frame`` as the newest (the loop's thread: references only)."""
        with self._lock:
            self._image, self._boxes, self._index = frame.image, boxes, frame.index
            self.captured = frame.timestamp
            self.version += 1

    def jpeg(self, quality: int = 75) -> tuple[int, bytes] | None:
        """(version, JPEG) of the newest frame with its boxes drawn; None before the first.
        Encoded once per frame however many browsers watch."""
        with self._lock:
            version, image, boxes, index = self.version, self._image, self._boxes, self._index
            cached = self._jpeg
        if image is None:
            return None
        if cached is not None and cached[0] == version:
            return cached
        with self._encode:
            if self._jpeg is not None and self._jpeg[0] == version:
                return self._jpeg
            data = _draw_and_encode(self.camera, image, boxes, index, quality)
            self._jpeg = (version, data)
            self.encoded += 1
            return self._jpeg


def _draw_and_encode(
    camera: str, image: np.ndarray, boxes: list[TileBox], index: int, quality: int
) -> bytes:
    import cv2

    from reid_pipeline.report.video import annotate
    from reid_pipeline.types import Sighting

    img = image.copy()  # the loop's frame is never drawn on
    annotate(
        img,
        [Sighting(camera, index, 0.0, b.bbox, 1.0, b.track, b.identity, None) for b in boxes],
    )
    cv2.putText(
        img,
        f"{camera}  #{index}",
        (6, 16),
        cv2.FONT_HERSHEY_SIMPLEX,
        0.45,
        (255, 255, 255),
        1,
        cv2.LINE_AA,
    )
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - a BGR uint8 frame always encodes
        raise ValueError(f"camera {camera}: frame {index} cannot be encoded as JPEG")
    return bytes(buf.tobytes())


# ------------------------------------------------------------------ events


class EventFeed:
    """A bounded ring of recent events; readers follow it from their own position."""

    def __init__(self, keep: int = 500) -> None:
        self._buf: deque[tuple[int, dict[str, Any]]] = deque(maxlen=max(1, keep))
        self._seq = 0
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.closed = False

    @property
    def last(self) -> int:
        return self._seq

    def publish(self, data: dict[str, Any]) -> int:
        """Add one event (any thread); returns its sequence number."""
        with self._lock:
            self._seq += 1
            self._buf.append((self._seq, data))
            seq, waiters = self._seq, list(self._waiters)
        for loop, ev in waiters:
            with contextlib.suppress(RuntimeError):  # that client's loop is gone
                loop.call_soon_threadsafe(ev.set)
        return seq

    def since(self, seq: int) -> list[tuple[int, dict[str, Any]]]:
        """Events after ``seq`` still in the ring (oldest first)."""
        with self._lock:
            return [(s, d) for s, d in self._buf if s > seq]

    def recent(self, n: int) -> list[tuple[int, dict[str, Any]]]:
        with self._lock:
            return list(self._buf)[-n:] if n > 0 else []

    async def wait(self, seq: int, timeout: float) -> list[tuple[int, dict[str, Any]]]:
        """Events after ``seq``; waits up to ``timeout`` for one (empty: none came)."""
        found = self.since(seq)
        if found or self.closed:
            return found
        ev = asyncio.Event()
        key = (asyncio.get_running_loop(), ev)
        with self._lock:
            self._waiters.add(key)
        try:
            found = self.since(seq)  # one may have come in between
            if not found:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(ev.wait(), timeout)
                found = self.since(seq)
            return found
        finally:
            with self._lock:
                self._waiters.discard(key)

    def close(self) -> None:
        self.closed = True
        with self._lock:
            waiters = list(self._waiters)
        for loop, ev in waiters:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ev.set)


def event_data(event: Any) -> dict[str, Any]:
    """A ``StreamEvent`` as the feed's JSON object."""
    import json

    data: dict[str, Any] = json.loads(event.to_json())
    data["text"] = event.describe()
    return data


# ------------------------------------------------------------------ the hub


@dataclass
class _Write:
    fn: Callable[[], Any]
    future: Future[Any] = field(default_factory=Future)


class LiveHub:
    """The live side of a console beside ``reid stream`` (see the module docstring).

    ``pipeline``: the running ``Pipeline`` (its trackers give each frame's boxes);
    ``sources``: the RTSP readers (their states). Hook it into ``LiveStream`` with
    ``on_event=hub.on_event`` and ``on_frames=hub.on_frames``.
    """

    def __init__(self, pipeline: Any, sources: Sequence[Any], events_kept: int = 500) -> None:
        self.pipeline = pipeline
        self.sources = list(sources)
        self.slots = {s.camera: FrameSlot(s.camera) for s in self.sources}
        self.feed = EventFeed(events_kept)
        self._labels: OrderedDict[tuple[str, int], int | None] = OrderedDict()
        self._writes: deque[_Write] = deque()
        self._write_lock = threading.Lock()  # direct writes (the loop has ended)
        self.running = True
        self.closed = False
        self._done: dict[str, deque[float]] = {s.camera: deque(maxlen=256) for s in self.sources}

    @property
    def cameras(self) -> list[str]:
        return list(self.slots)

    # -- hooks, in the loop's thread ------------------------------------------------------
    def on_event(self, event: Any) -> None:
        """A ``StreamEvent``: remember the track's identity (tile labels), publish it."""
        key = (event.camera, int(event.track))
        self._labels[key] = event.identity
        self._labels.move_to_end(key)
        while len(self._labels) > 10_000:
            self._labels.popitem(last=False)
        self.feed.publish(event_data(event))

    def on_frames(self, frames: list[Frame]) -> None:
        """After each step: newest frame per camera into its slot; pending console writes."""
        newest: dict[str, Frame] = {}
        for f in frames:
            if f.camera not in newest or f.index > newest[f.camera].index:
                newest[f.camera] = f
        now = time.time()
        for cam, f in newest.items():
            slot = self.slots.get(cam)
            if slot is None:
                continue
            slot.put(f, self._boxes(cam, f.index))
            self._done[cam].append(now)
        self.run_pending()

    def _boxes(self, camera: str, index: int) -> list[TileBox]:
        cams = getattr(self.pipeline, "cameras", None) or {}
        state = cams.get(camera)
        if state is None:
            return []
        out = []
        for t in state.tracker.active():
            if t.boxes and t.boxes[-1].frame_index == index:
                b = t.boxes[-1]
                out.append(TileBox(b.bbox, int(t.track_id), self._labels.get((camera, t.track_id))))
        return out

    def run_pending(self) -> None:
        while self._writes:
            w = self._writes.popleft()
            if not w.future.set_running_or_notify_cancel():
                continue
            try:
                w.future.set_result(w.fn())
            except Exception as e:  # noqa: BLE001 - handed to the waiting request
                w.future.set_exception(e)

    # -- server side ------------------------------------------------------------------------
    def run_write(self, fn: Callable[[], T]) -> T:
        """Run a gallery write in the loop's thread (at once when the loop has ended)."""
        if not self.running:
            with self._write_lock:
                return fn()
        w = _Write(fn)
        self._writes.append(w)
        if not self.running:  # the loop ended while we queued
            with self._write_lock:
                self.run_pending()
        try:
            return w.future.result(timeout=WRITE_WAIT_S)
        except FutureTimeout:
            w.future.cancel()
            raise DatabaseError(
                "the live stream did not take the change in time; try again"
            ) from None

    def camera_states(self) -> list[dict[str, Any]]:
        now = time.time()
        out = []
        for s in self.sources:
            st = s.status().to_dict()
            slot = self.slots[s.camera]
            done = self._done[s.camera]
            recent = [t for t in done if t >= now - 5.0]
            st.update(
                name=s.camera,
                live=True,
                fps_done=round(len(recent) / 5.0, 2),
                last_frame=slot.captured or None,
                tile_frames_encoded=slot.encoded,
                tile_frames_sent=slot.sent,
            )
            out.append(st)
        return out

    def stopped(self) -> None:
        """The loop has ended: writes run directly from now on."""
        self.running = False
        with self._write_lock:
            self.run_pending()

    def close(self) -> None:
        self.stopped()
        self.closed = True
        self.feed.close()
