"""The live loop: many RTSP cameras -> the pipeline's stages -> identity events, status, alerts.

Why it is shaped like this:

* **Readers never block the loop.** Each camera has its own reader thread
  (``sources.rtsp.RtspSource``); the loop only takes frames that are already decoded. A
  step starts as soon as one camera has a frame and waits at most ``stream.batch_wait_s``
  for the other cameras, so frames of several cameras go to the detector in one call (and
  all crops of a step to the embedder in one call) without a slow or dead camera holding
  the others back.
* **The stages are the pipeline's.** ``LiveStream`` is a short driver of
  ``Pipeline.start / step / finish`` - the code ``reid process`` runs - so a live camera and
  a recorded one give the same identities. What is live-specific lives here: frame
  gathering, events, the watch list, status lines, signals. The pipeline is started with
  ``hold_back=False``: a live stream is never replayed, so each finished tracklet is
  committed at once instead of waiting for older open tracks to end.
* **Events** come from the pipeline's decisions: ``provisional`` while a tracklet
  grows (every ``stream.provisional_every`` frames), ``confirmed`` once it ended and was
  committed to the gallery. Each says whether the identity is ``new`` or ``known``, carries
  ``alert: true`` when the identity is on the watch list, and records the capture time of
  the newest frame it is based on, so ``latency_s`` (event time - capture time) is the
  end-to-end latency. Events are appended to a JSONL file and flushed one by one.
* **Stopping** (SIGINT/SIGTERM or ``stream.duration_s``): readers stop, the in-flight step
  finishes, open tracklets are closed and committed, and ``run`` returns normally (the
  command exits 0). Gallery writes are transactions, so a process killed outright loses
  only the tracklets still open, never committed work (a ``confirmed`` event is written
  only after its commit).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reid_pipeline.config import Config
from reid_pipeline.errors import OutputError, ReidError
from reid_pipeline.pipeline.engine import Committed, Decision, StepResult
from reid_pipeline.types import Frame
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ events


@dataclass(frozen=True)
class StreamEvent:
    """One line of ``events.jsonl``: an identity seen by a camera."""

    timestamp: float  # wall-clock time the event was emitted
    camera: str
    identity: int | None  # None: a provisional tracklet that matches nobody yet
    score: float | None  # match probability; None for a new identity
    status: str  # "new" | "known"
    kind: str  # "provisional" | "confirmed"
    alert: bool  # the identity is on the watch list
    track: int
    captured: float  # capture time of the newest frame this event is based on
    latency_s: float  # timestamp - captured

    def to_json(self) -> str:
        d = asdict(self)
        d["score"] = None if self.score is None else round(float(self.score), 4)
        d["latency_s"] = round(self.latency_s, 4)
        return json.dumps(d, sort_keys=True)

    def describe(self) -> str:
        who = "unknown" if self.identity is None else f"identity {self.identity}"
        score = "" if self.score is None else f" p={self.score:.2f}"
        flag = "ALERT " if self.alert else ""
        clock = time.strftime("%H:%M:%S", time.localtime(self.captured))
        return (
            f"{flag}{clock} {self.camera}: {who} ({self.status}, {self.kind}{score}) "
            f"track {self.track}, latency {self.latency_s * 1000:.0f} ms"
        )


class EventLog:
    """Appends events to a JSONL file, one flushed line each (a crash loses none written)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise OutputError(
                f"events file {str(self.path)!r} cannot be written: {e.strerror or e}"
            ) from None
        self.count = 0

    def write(self, event: StreamEvent) -> None:
        # redact_url: a camera name could, in theory, have been given as a URL
        self._f.write(redact_url(event.to_json()) + "\n")
        self._f.flush()
        self.count += 1

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()


class WatchList:
    """Identities that raise alerts: ``--watch`` ids plus those flagged in the gallery.

    Flags are re-read every ``refresh_s`` so an operator can flag someone (``reid gallery``)
    while the stream runs.
    """

    def __init__(self, ids: Sequence[int], gallery: Any = None, refresh_s: float = 10.0) -> None:
        self.fixed = {int(i) for i in ids}
        self.gallery = gallery
        self.refresh_s = refresh_s
        self._flagged: set[int] = set()
        self._read_at = -1e18

    def _refresh(self) -> None:
        now = time.monotonic()
        if self.gallery is None or now - self._read_at < self.refresh_s:
            return
        self._read_at = now
        try:
            self._flagged = self.gallery.identity_ids(flagged=True)
        except ReidError as e:  # a read hiccup (DatabaseError) must not stop a live stream
            log.warning("watch list: cannot read flagged identities: %s", redact_url(str(e)))

    def __contains__(self, identity: object) -> bool:
        if identity is None:
            return False
        self._refresh()
        return identity in self.fixed or identity in self._flagged

    @property
    def ids(self) -> set[int]:
        self._refresh()
        return self.fixed | self._flagged


# ------------------------------------------------------------------ stats


class Percentiles:
    """A bounded sample of a quantity (latency, lag) with p50/p99."""

    def __init__(self, keep: int = 100_000) -> None:
        self.values: deque[float] = deque(maxlen=keep)

    def add(self, v: float) -> None:
        self.values.append(float(v))

    def pct(self, q: float) -> float | None:
        return float(np.percentile(np.fromiter(self.values, float), q)) if self.values else None

    def summary(self) -> dict[str, Any]:
        return {
            "n": len(self.values),
            "p50": self.pct(50),
            "p99": self.pct(99),
            "max": max(self.values) if self.values else None,
        }


@dataclass
class CameraStats:
    """What the loop saw of one camera (the reader keeps its own connection counters)."""

    processed: int = 0
    last_capture: float = 0.0  # capture time of the newest frame processed
    lag: float = 0.0  # seconds between capture and processing of the last frame
    lags: Percentiles = field(default_factory=lambda: Percentiles(20_000))
    times: deque[float] = field(default_factory=lambda: deque(maxlen=256))

    started: float = field(default_factory=time.time)

    def fps(self, now: float, window_s: float = 5.0) -> float:
        """Frames processed per second over the last ``window_s`` (shorter at start)."""
        span = min(window_s, max(now - self.started, 1e-3))
        return sum(1 for t in self.times if t >= now - span) / span


@dataclass
class StreamSummary:
    """What a live run did, for the CLI, the tests and the benchmarks."""

    seconds: float = 0.0
    steps: int = 0
    frames: int = 0
    events: int = 0
    alerts: int = 0
    latency: dict[str, Any] = field(default_factory=dict)  # provisional+confirmed, seconds
    latency_provisional: dict[str, Any] = field(default_factory=dict)
    latency_confirmed: dict[str, Any] = field(default_factory=dict)
    lag: dict[str, Any] = field(default_factory=dict)  # capture -> processed, all frames
    cameras: list[dict[str, Any]] = field(default_factory=list)  # status + processed + lag
    stopped_by: str = ""

    def describe(self) -> str:
        head = (
            f"stopped ({self.stopped_by}) after {self.seconds:.1f} s: {self.frames} frames "
            f"in {self.steps} steps, {self.events} events ({self.alerts} alerts)"
        )
        lines = [head]
        for c in self.cameras:
            lines.append(
                f"  {c['camera']}: {c['state']}, {c['processed']} frames processed, "
                f"{c['dropped']} dropped, {c['reconnects']} reconnects"
                + (f", last error: {c['last_error']}" if c["last_error"] else "")
            )
        for name, p in (
            ("event latency", self.latency),
            ("  provisional", self.latency_provisional),
            ("  confirmed", self.latency_confirmed),
            ("frame lag (capture -> processed)", self.lag),
        ):
            if p.get("n"):
                lines.append(
                    f"{name}: p50 {p['p50'] * 1000:.0f} ms, "
                    f"p99 {p['p99'] * 1000:.0f} ms (n={p['n']})"
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def status_line(source: Any, stats: CameraStats, now: float) -> str:
    """``gate: live 9.8 fps in, 9.7 fps done, lag 120 ms, dropped 3, reconnects 0``."""
    st = source.status()
    line = (
        f"{st.camera}: {st.state.value} {st.fps:.1f} fps in, {stats.fps(now):.1f} fps done, "
        f"lag {stats.lag * 1000:.0f} ms, dropped {st.dropped}, reconnects {st.reconnects}"
    )
    if st.state.value != "live" and st.last_error:
        line += f" - {st.last_error}"
    return redact_url(line)


# ------------------------------------------------------------------ gathering frames


def gather(
    sources: Sequence[Any],
    per_camera: int,
    wait_s: float,
    ready: threading.Event,
    stop: threading.Event,
    idle_s: float = 0.2,
    newest: bool = False,
) -> list[Frame]:
    """Frames for one step: up to ``per_camera`` from every camera that has one (the newest
    ones when ``newest``, older waiting frames then count as dropped; else the oldest).

    Waits up to ``idle_s`` for the first frame, then at most ``wait_s`` more for cameras
    that have none yet, so one detector call covers as many cameras as possible while a
    dead camera delays the others by no more than ``wait_s``.
    """

    def have() -> list[bool]:
        return [s.queued > 0 for s in sources]

    if not any(have()):
        ready.clear()
        if not any(have()):  # re-check after clear: a frame may have arrived in between
            ready.wait(idle_s)
        if not any(have()):
            return []
    deadline = time.monotonic() + wait_s
    while not all(have()) and not stop.is_set():
        live = [s for s in sources if s.state.value == "live"]
        if all(s.queued > 0 for s in live):
            break  # everyone who can deliver has delivered
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready.clear()
        ready.wait(min(left, 0.01))
    frames: list[Frame] = []
    for s in sources:
        frames.extend(s.take(per_camera, newest=newest))
    return frames


# ------------------------------------------------------------------ the loop


class StopFlag:
    """Set by SIGINT/SIGTERM (or a test); the loop checks it between steps."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self.event.is_set():
            self.reason = reason
            self.event.set()

    def __bool__(self) -> bool:
        return self.event.is_set()

    def install_signals(self) -> Callable[[], None]:
        """Route SIGINT/SIGTERM here (main thread only); returns a function restoring them."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum: int, _frame: Any) -> None:
            name = signal.Signals(signum).name
            if self:  # a second signal: the operator insists
                log.warning("%s again: stopping now without waiting", name)
                raise KeyboardInterrupt
            log.info("%s: stopping readers, finishing the current step, committing", name)
            self.set(name)

        for sig in old:
            signal.signal(sig, handler)

        def restore() -> None:
            for sig, h in old.items():
                signal.signal(sig, h)

        return restore


class LiveStream:
    """Runs ``pipeline`` over live ``sources`` until stopped; see the module docstring.

    ``pipeline`` is a ``reid_pipeline.pipeline.engine.Pipeline``;
    ``sources`` are ``RtspSource`` readers (not started yet).
    ``on_event`` / ``on_status`` let the command print (library code never prints);
    ``on_frames(frames)`` runs in the loop's thread after every step (``frames``: the ones
    it processed, empty when none came), e.g. the console's latest-frame slots (it must
    return at once: it holds the loop).
    """

    def __init__(
        self,
        cfg: Config,
        pipeline: Any,
        sources: Sequence[Any],
        events_path: Path,
        *,
        on_event: Callable[[StreamEvent], None] | None = None,
        on_status: Callable[[list[str]], None] | None = None,
        on_frames: Callable[[list[Frame]], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.pipeline = pipeline
        self.sources = list(sources)
        self.events_path = Path(events_path)
        self.on_event = on_event
        self.on_status = on_status
        self.on_frames = on_frames
        self.watch = WatchList(cfg.stream.watch, _local_gallery(pipeline))
        self.known: set[int] = set()  # identities that existed before (new vs known)
        self.stats = {s.camera: CameraStats() for s in self.sources}
        self.latency = Percentiles()
        self.latency_provisional = Percentiles()
        self.latency_confirmed = Percentiles()
        self.lag = Percentiles()
        self.summary = StreamSummary()
        self.ready = threading.Event()
        self.stopping = False  # set while shutdown closes the open tracklets
        self._log: EventLog | None = None

    # -- events, from the pipeline's decisions ---------------------------------------------
    def _emit_all(self, result: StepResult | Committed | None) -> None:
        if result is None:
            return
        if isinstance(result, StepResult):
            for d in result.provisional:
                self._emit(d)
            result = result.committed
        if result is not None:
            # a tracklet without a usable crop is recorded (sightings) but names nobody
            for d in result.decisions:
                if d.identity is not None:
                    self._emit(d)

    def _emit(self, ev: Decision) -> None:
        now = time.time()
        identity = None if ev.identity is None else int(ev.identity)
        new = identity is None or identity not in self.known
        if identity is not None and ev.kind == "confirmed":
            self.known.add(identity)
        # the newest frame of that camera a step has processed: the event is its consequence
        captured = self.stats[ev.camera].last_capture or now
        event = StreamEvent(
            timestamp=now,
            camera=ev.camera,
            identity=identity,
            score=None if ev.score is None else float(ev.score),
            status="new" if new else "known",
            kind=ev.kind,
            alert=identity in self.watch,
            track=int(ev.track),
            captured=captured,
            latency_s=max(0.0, now - captured),
        )
        if not self.stopping:  # tracklets closed by shutdown say nothing about latency
            self.latency.add(event.latency_s)
            kind = (
                self.latency_provisional
                if event.kind == "provisional"
                else (self.latency_confirmed)
            )
            kind.add(event.latency_s)
        self.summary.events += 1
        self.summary.alerts += int(event.alert)
        if self._log is not None:
            self._log.write(event)
        if event.alert:
            log.warning("ALERT: watched identity %s seen by camera %s", identity, event.camera)
        if self.on_event is not None:
            self.on_event(event)

    def _status(self, now: float) -> list[str]:
        return [status_line(s, self.stats[s.camera], now) for s in self.sources]

    def run(self, stop: StopFlag) -> StreamSummary:
        """Process until ``stop`` is set (or ``stream.duration_s`` passed); commit; return."""
        cfg = self.cfg
        t0 = time.monotonic()
        self._log = EventLog(self.events_path)
        started = False
        clean = True  # False: a second signal (KeyboardInterrupt) or an error; skip the flush
        try:
            local = _local_gallery(self.pipeline)  # None: a distributed worker (no gallery)
            self.known = _identity_ids(local) if local is not None else set()
            for s in self.sources:
                s.notify = self.ready
            # one gallery Source row per camera and URL across runs; frame numbers continue
            # from the stored progress, track ids from the gallery's next free one
            starts = self.pipeline.start(
                self.sources, hold_back=False, provisional_every=cfg.stream.provisional_every
            )
            for s, st in zip(self.sources, starts, strict=True):
                s.start_frame = st.resume_from  # the reader numbers its first frame with this
            started = True
            for s in self.sources:
                s.start()
            per_cam = cfg.stream.frames_per_step
            newest = cfg.stream.mode == "live"
            next_status = time.monotonic() + cfg.stream.status_every_s
            while not stop:
                if cfg.stream.duration_s and time.monotonic() - t0 >= cfg.stream.duration_s:
                    stop.set("duration")
                    break
                frames = gather(
                    self.sources,
                    per_cam,
                    cfg.stream.batch_wait_s,
                    self.ready,
                    stop.event,
                    newest=newest,
                )
                if frames:
                    self._step(frames)
                if self.on_frames is not None:
                    self.on_frames(frames)
                if cfg.stream.status_every_s and time.monotonic() >= next_status:
                    next_status = time.monotonic() + cfg.stream.status_every_s
                    lines = self._status(time.time())
                    for line in lines:
                        log.debug("status %s", line)
                    if self.on_status is not None:
                        self.on_status(lines)
        except BaseException:
            clean = False
            raise
        finally:
            for s in self.sources:  # stop decoding first: nothing new comes in
                s.close(timeout=0.5)
            self.stopping = True
            try:
                if clean and started:
                    self._emit_all(self.pipeline.finish())  # close open tracklets, commit
            finally:
                self._log.close()
        return self._summarise(time.monotonic() - t0, stop.reason or "stopped")

    def _step(self, frames: list[Frame]) -> None:
        for f in frames:
            st = self.stats[f.camera]
            st.last_capture = max(st.last_capture, f.timestamp)
        self._emit_all(self.pipeline.step(frames))
        done = time.time()
        for f in frames:  # lag: capture -> fully processed (detected, tracked, matched)
            st = self.stats[f.camera]
            st.processed += 1
            st.times.append(done)
            st.lag = done - f.timestamp
            st.lags.add(st.lag)
            self.lag.add(st.lag)
        self.summary.steps += 1
        self.summary.frames += len(frames)

    def _summarise(self, seconds: float, reason: str) -> StreamSummary:
        s = self.summary
        s.seconds, s.stopped_by = seconds, reason
        s.latency = self.latency.summary()
        s.latency_provisional = self.latency_provisional.summary()
        s.latency_confirmed = self.latency_confirmed.summary()
        s.lag = self.lag.summary()
        s.cameras = []
        for src in self.sources:
            d = src.status().to_dict()
            st = self.stats[src.camera]
            d.update(processed=st.processed, lag=st.lags.summary())
            s.cameras.append(d)
        return s


def _local_gallery(pipeline: Any) -> Any:
    """The pipeline's own gallery, or None when its back end is remote (``reid worker``)."""
    try:
        return pipeline.gallery
    except (AttributeError, RuntimeError):
        return None


def _identity_ids(gallery: Any) -> set[int]:
    """Ids of every identity in the gallery (one cheap query)."""
    return set(gallery.identity_ids())


__all__ = [
    "EventLog",
    "LiveStream",
    "Percentiles",
    "StopFlag",
    "StreamEvent",
    "StreamSummary",
    "WatchList",
    "gather",
    "status_line",
]
