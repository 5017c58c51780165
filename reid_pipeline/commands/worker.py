"""``reid worker``: detect, track and embed cameras here; publish the tracklets to the broker.

The front half of ``reid process`` / ``reid stream`` (same detector, tracker and model)
with the durable stream as its back end: no gallery writes, no identity decisions - the
``reid matcher`` on the same broker and prefix makes those. Video files and folders go
through the recorded driver (each source resumes where the matcher last committed it),
camera URLs (rtsp://...) through the live driver; both kinds may be mixed.

Ctrl-C / SIGTERM: open tracklets are closed and published, every publish is acknowledged,
then it exits; a kill loses only what was not yet in the stream, and the next run resumes
where the matcher committed.
"""

from __future__ import annotations

import argparse
import logging
import signal
import tempfile
import threading
from pathlib import Path
from typing import Any

from reid_pipeline.config import Config
from reid_pipeline.errors import ConfigError

log = logging.getLogger(__name__)


def add_broker_options(p: argparse.ArgumentParser) -> None:
    """Flags of both distributed commands; each a config key."""
    p.add_argument(
        "--broker",
        dest="cfg__distributed__broker",
        metavar="URL",
        help="NATS server with JetStream, nats://[user:pw@]host:4222 (key: distributed.broker)",
    )
    p.add_argument(
        "--prefix",
        dest="cfg__distributed__prefix",
        metavar="NAME",
        help="subject prefix: one per gallery (key: distributed.prefix)",
    )


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common

    p = sub.add_parser(
        "worker",
        help="detect, track and embed cameras; publish tracklets to the matcher's stream",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video files, folders of frames or camera URLs (rtsp://...), one camera each",
    )
    p.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="NAME",
        help="camera name per input, in order (default: file names / host and path)",
    )
    add_broker_options(p)
    p.add_argument(
        "--max-inflight",
        dest="cfg__distributed__max_inflight",
        type=int,
        metavar="N",
        help="unacknowledged publishes before the pipeline waits (key: distributed.max_inflight)",
    )
    p.add_argument(
        "--detector",
        dest="cfg__detector__kind",
        metavar="KIND",
        help="auto, yolo, ssd, hog or mot (key: detector.kind)",
    )
    p.add_argument(
        "--weights",
        dest="cfg__detector__weights",
        metavar="FILE",
        help="YOLO weights file or name (key: detector.weights)",
    )
    p.add_argument(
        "--mot-det",
        dest="cfg__detector__mot_det",
        metavar="DET_TXT[,..]",
        help="MOTChallenge det.txt per camera, comma separated (key: detector.mot_det)",
    )
    p.add_argument(
        "--checkpoint",
        dest="cfg__model__checkpoint",
        metavar="FILE",
        help="ReID checkpoint; the matcher must use the same (key: model.checkpoint)",
    )
    p.add_argument(
        "--fps",
        dest="cfg__input__fps",
        metavar="FPS",
        type=float,
        help="frame rate for timestamps of recorded inputs (key: input.fps)",
    )
    p.add_argument(
        "--duration",
        dest="cfg__stream__duration_s",
        type=float,
        metavar="S",
        help="camera URLs: stop after S seconds (key: stream.duration_s; default: until stopped)",
    )
    add_common(p)
    p.set_defaults(func=run)


def camera_names(inputs: list[str], cameras: list[str]) -> list[str]:
    """One camera name per input, as ``reid process`` (files) and ``reid stream`` (URLs)
    name them."""
    from reid_pipeline.commands.process import camera_names as file_names
    from reid_pipeline.commands.stream import default_camera_name
    from reid_pipeline.sources import is_url

    if cameras and len(cameras) != len(inputs):
        raise ConfigError(
            f"--camera given {len(cameras)} time(s) for {len(inputs)} input(s); "
            "give one --camera per input, in order, or none"
        )
    if cameras:
        names = list(cameras)
    else:
        files = file_names([i for i in inputs if not is_url(i)], [])
        it = iter(files)
        names = [default_camera_name(i, k) if is_url(i) else next(it) for k, i in enumerate(inputs)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(
            f"camera name(s) {dup} given to more than one input; name each camera with --camera"
        )
    return names


class _Locked:
    """A detector or embedder shared by two pipelines in two threads (mixed inputs)."""

    def __init__(self, inner: Any, lock: threading.Lock) -> None:
        self._inner = inner
        self._lock = lock

    def detect(self, frames: Any) -> Any:
        with self._lock:
            return self._inner.detect(frames)

    def embed_crops(self, crops: Any) -> Any:
        with self._lock:
            return self._inner.embed_crops(crops)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.detect import build_detector
    from reid_pipeline.distributed.worker import RemoteBack
    from reid_pipeline.pipeline.build import build_embedder, build_model
    from reid_pipeline.pipeline.engine import Pipeline
    from reid_pipeline.pipeline.recorded import CameraInput, open_inputs
    from reid_pipeline.sources import is_url, open_source
    from reid_pipeline.utils import resolve_device

    inputs = [str(i) for i in args.inputs]
    names = camera_names(inputs, list(args.camera))
    files = [CameraInput(i, n) for i, n in zip(inputs, names) if not is_url(i)]
    urls = [(i, n) for i, n in zip(inputs, names) if is_url(i)]
    # every input is checked before the model, the broker or a frame is touched
    opened = open_inputs(files, cfg)
    live_sources = [open_source(u, n, cfg.stream) for u, n in urls]
    back = None
    try:
        dev = resolve_device(cfg.device)
        model = build_model(cfg, dev)
        embedder: Any = build_embedder(cfg, model, dev)
        detector: Any = build_detector(cfg.detector, dev, cameras=names)
        back = RemoteBack(cfg, str(getattr(model, "model_version", "") or ""))
        print(f"broker: {back.shown}, stream {back.names.stream}", flush=True)
        if files and urls:
            lock = threading.Lock()
            detector, embedder = _Locked(detector, lock), _Locked(embedder, lock)

        def pipeline() -> Pipeline:
            return Pipeline(
                cfg,
                detector=detector,
                embedder=embedder,
                model=model,
                gallery=None,
                matcher=None,
                back=back,
            )

        code = _run_inputs(cfg, pipeline, files, opened, live_sources)
        back.flush()
        print(back.describe(), flush=True)
        return code
    finally:
        for s in opened:
            s.close()
        if back is not None:
            back.close()


def _run_inputs(
    cfg: Config, pipeline: Any, files: list[Any], opened: list[Any], live_sources: list[Any]
) -> int:
    from reid_pipeline.pipeline.live import LiveStream, StopFlag
    from reid_pipeline.pipeline.recorded import run_recorded

    stop = StopFlag()
    restore = stop.install_signals() if live_sources else _sigterm_as_interrupt()
    result: dict[str, Any] = {}

    def recorded() -> None:
        try:
            result["summary"] = run_recorded(
                pipeline(), files, stop=lambda: bool(stop), opened=opened
            )
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            result["error"] = e

    try:
        thread = None
        if files and live_sources:
            thread = threading.Thread(target=recorded, name="reid-recorded", daemon=True)
            thread.start()
        elif files:
            recorded()
        if live_sources:
            # decisions are the matcher's (its events stream): the live loop's own events
            # file stays empty, so it lives in a temporary folder
            with tempfile.TemporaryDirectory(prefix="reid-worker-") as tmp:
                live = LiveStream(cfg, pipeline(), live_sources, Path(tmp) / "events.jsonl")
                print(live.run(stop).describe(), flush=True)  # the files (if any) go on
        if thread is not None:
            thread.join()
    finally:
        restore()
    if "error" in result:
        raise result["error"]
    s = result.get("summary")
    if s is not None:
        for c in s.cameras:
            state = (
                "already processed, skipped"
                if c.skipped
                else f"{c.frames} frames"
                + (f" (resumed at {c.resumed_from})" if c.resumed_from else "")
            )
            print(f"  {c.camera}: {c.uri}: {state}, {c.tracklets} tracklets", flush=True)
        if s.frames:
            print(
                f"speed: {s.frames} frames in {s.seconds:.1f} s = {s.fps:.1f} frames/s",
                flush=True,
            )
        if s.failures:
            from reid_pipeline.errors import SourceError

            cam, why = next(iter(s.failures.items()))
            raise SourceError(f"{why} (camera {cam}; the other cameras finished)")
    return 0


def _sigterm_as_interrupt() -> Any:
    """SIGTERM ends a recorded run as Ctrl-C does: close, publish, flush, exit."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    return lambda: signal.signal(signal.SIGTERM, old)
