"""The worker's back end: ``RemoteBack`` hands the front's work to the stream, not a gallery.

``Pipeline(cfg, ..., gallery=None, matcher=None, back=RemoteBack(...))`` runs the front
half exactly as ``reid process`` / ``reid stream`` do; the engine calls

* ``begin(src)`` - a request to ``<prefix>.begin``: the matcher (the gallery's owner)
  first commits whatever of that camera is still in the stream, then answers with the
  ``CameraStart`` (source id, resume point, next free track id). A restarted worker so
  resumes exactly where the matcher last committed, with no track id reused.
* ``commit(batch)`` - one message per camera to ``<prefix>.tracklets.<camera>``, each
  published with an acknowledgement from the broker (stored on disk). At most
  ``max_inflight`` publishes are unacknowledged; past that ``commit`` waits, so memory stays
  bounded and a full stream (a slow matcher) slows the pipeline instead of losing work.
  A publish is retried - with the same de-duplication id - while the broker is away (up to
  ``publish_timeout_s``) and for as long as the stream is full.
* ``peek`` - None: provisional decisions need the gallery, which lives in the matcher.

The NATS client is asyncio; the pipeline is not. ``RemoteBack`` runs one event loop in a
daemon thread and blocks on its futures, so the engine and both drivers stay unchanged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Coroutine
from typing import Any, TypeVar

import numpy as np

from reid_pipeline.config import Config
from reid_pipeline.distributed.broker import BrokerError, Names, connect, crops_store
from reid_pipeline.distributed.wire import BeginRequest, Part, encode_batch
from reid_pipeline.pipeline.engine import (
    CameraStart,
    Committed,
    Decision,
    FinishedBatch,
    SourceInfo,
)
from reid_pipeline.types import Tracklet
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)

T = TypeVar("T")

# JetStream's "maximum messages/bytes exceeded" (a full stream with discard new)
_FULL_CODES = {10077, 10047}


class EventLoopThread:
    """An asyncio loop in a daemon thread; ``run`` blocks for a coroutine's result."""

    def __init__(self, name: str = "reid-broker") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self.thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return self.submit(coro).result(timeout)

    def close(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


class RemoteBack:
    """The ``BackEnd`` of a distributed worker (see the module docstring)."""

    def __init__(self, cfg: Config, model_version: str, *, name: str = "reid-worker") -> None:
        self.cfg = cfg
        self.d = cfg.distributed
        self.names = Names.of(self.d)
        self.model_version = model_version
        self.shown = redact_url(self.d.broker)
        self._io = EventLoopThread()
        try:
            self.nc, self.js = self._io.run(connect(self.d, name))
        except BaseException:
            self._io.close()
            raise
        self._lock = threading.Lock()  # commit() may be called by two pipelines (mixed inputs)
        self._inflight: deque[concurrent.futures.Future[Any]] = deque()
        self._last: dict[int, tuple[int, bool]] = {}  # source -> (R, done) last sent
        self._obs: Any = None
        self.messages = 0  # published and acknowledged
        self.bytes = 0
        self.objects = 0  # payloads sent through the object store
        self.retries = 0
        self.waited_full_s = 0.0  # time spent waiting for room in a full stream
        self._closed = False

    # ------------------------------------------------------------------ BackEnd
    def begin(self, src: SourceInfo) -> CameraStart:
        req = BeginRequest(
            src.camera,
            redact_url(src.uri),
            src.fingerprint(),
            float(src.fps or 0.0),
            src.frame_count,
            self.model_version,
        )
        return self._io.run(self._begin(req))

    def commit(self, batch: FinishedBatch) -> Committed:
        """Publish ``batch`` (one message per camera); returns at once unless
        ``max_inflight`` publishes wait for their acknowledgement. The decisions are the
        matcher's: it publishes them as events."""
        with self._lock:
            self._reap()
            parts = encode_batch(
                batch, crop_quality=self.cfg.gallery.crop_quality, handed_at=time.time()
            )
            for part in parts:
                state = (part.resume_from, bool(part.header["done"]))
                if not part.header["tracklets"] and self._last.get(part.source_id) == state:
                    continue  # nothing new for this camera
                self._last[part.source_id] = state
                while len(self._inflight) >= self.d.max_inflight:
                    self._inflight.popleft().result()  # back-pressure: wait for the oldest
                self._inflight.append(self._io.submit(self._publish(part)))
        return Committed((), batch.progress)

    def peek(self, camera: str, tracklet: Tracklet, vectors: np.ndarray) -> Decision | None:
        return None

    # ------------------------------------------------------------------ lifecycle
    def flush(self) -> None:
        """Wait until every published message is acknowledged (raises if one failed)."""
        with self._lock:
            while self._inflight:
                self._inflight.popleft().result()

    def close(self) -> None:
        """Flush, then close the connection."""
        if self._closed:
            return
        try:
            self.flush()
        finally:
            self._closed = True
            try:
                self._io.run(self.nc.close(), timeout=10)
            except Exception:  # closing a dead connection: nothing left to lose
                log.debug("closing the broker connection failed", exc_info=True)
            self._io.close()

    def __enter__(self) -> RemoteBack:  # noqa: PYI034 - Python 3.10 has no typing.Self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _reap(self) -> None:
        """Surface a failed publish early; forget the acknowledged ones."""
        while self._inflight and self._inflight[0].done():
            self._inflight.popleft().result()

    # ------------------------------------------------------------------ broker side
    async def _begin(self, req: BeginRequest) -> CameraStart:
        from nats.errors import NoRespondersError
        from nats.errors import TimeoutError as NatsTimeout

        deadline = time.monotonic() + self.d.begin_timeout_s
        said = ""
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerError(
                    f"no matcher answered for camera {req.camera} on {self.shown} (subject "
                    f"{self.names.begin}) within {self.d.begin_timeout_s:g} s"
                    + (f" ({said})" if said else "")
                    + ": is `reid matcher` running with the same distributed.prefix?"
                )
            try:
                msg = await self.nc.request(
                    self.names.begin, req.to_json(), timeout=min(30.0, max(left, 0.1))
                )
            except NoRespondersError:
                said = "no matcher is listening"
                await asyncio.sleep(min(0.5, max(left, 0.0)))
                continue
            except (NatsTimeout, asyncio.TimeoutError):
                said = "the request timed out"
                continue
            except Exception as e:  # noqa: BLE001 - disconnected: asked again
                said = redact_url(str(e) or type(e).__name__)
                await asyncio.sleep(min(0.5, max(left, 0.0)))
                continue
            try:
                reply = json.loads(msg.data.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                raise BrokerError(
                    f"the matcher's answer for camera {req.camera} is not JSON"
                ) from None
            if reply.get("ok"):
                return CameraStart(
                    str(reply["camera"]),
                    str(reply["uri"]),
                    int(reply["source_id"]),
                    int(reply["resume_from"]),
                    int(reply["next_track_id"]),
                    bool(reply["done"]),
                )
            if reply.get("retry"):
                said = str(reply.get("error", "the matcher is busy"))
                log.info("camera %s: %s; asking again", req.camera, said)
                await asyncio.sleep(0.2)
                continue
            raise BrokerError(
                f"the matcher refused camera {req.camera}: {reply.get('error', 'no reason')}"
            )

    async def _store(self) -> Any:
        if self._obs is None:
            self._obs = await crops_store(self.js, self.d)
        return self._obs

    async def _publish(self, part: Part) -> None:
        """Store one message in the stream, retrying (same de-duplication id) while the broker
        is away (``publish_timeout_s``) and, without a limit, while the stream is full."""
        from nats.js.errors import APIError

        subject = self.names.tracklets(part.camera)
        headers = {"Nats-Msg-Id": part.msg_id}
        big = len(part.payload) > self.d.inline_max_bytes
        deadline = time.monotonic() + self.d.publish_timeout_s
        delay, full_since, said = 0.05, 0.0, 0.0
        while True:
            try:
                if big or len(part.payload) + 4096 > self.nc.max_payload:
                    name = part.msg_id.replace(".", "_")
                    await (await self._store()).put(name, part.payload)
                    data = part.pack(name)
                    big = True
                else:
                    data = part.pack()
                ack = await self.js.publish(subject, data, timeout=10.0, headers=headers)
                self.messages += 1
                self.bytes += len(data) + (len(part.payload) if big else 0)
                self.objects += int(big)
                if full_since:
                    self.waited_full_s += time.monotonic() - full_since
                log.debug(
                    "published %s seq %s%s", subject, ack.seq, " (dup)" if ack.duplicate else ""
                )
                return
            except Exception as e:  # noqa: BLE001 - retried or raised below
                full = isinstance(e, APIError) and getattr(e, "err_code", None) in _FULL_CODES
                now = time.monotonic()
                if full:  # back-pressure: the matcher is behind; wait as long as it takes
                    if not full_since:
                        full_since = now
                        log.info("stream %s is full: waiting for the matcher", self.names.stream)
                    if now - said > 30:
                        said = now
                        log.warning(
                            "stream %s full for %.0f s: the matcher is behind",
                            self.names.stream,
                            now - full_since,
                        )
                    deadline = now + self.d.publish_timeout_s
                elif now >= deadline:
                    raise BrokerError(
                        f"message broker {self.shown}: publishing camera {part.camera} failed "
                        f"for {self.d.publish_timeout_s:g} s: "
                        f"{redact_url(str(e) or type(e).__name__)}"
                    ) from None
                else:
                    log.debug("publish %s failed (%s); retrying", subject, e)
                self.retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    def describe(self) -> str:
        return (
            f"published {self.messages} messages ({self.bytes / 1e6:.1f} MB, "
            f"{self.objects} through the object store, {self.retries} retries) to "
            f"{self.names.stream} on {self.shown}"
        )


__all__ = ["EventLoopThread", "RemoteBack"]
