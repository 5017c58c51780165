"""``reid stream``: live cameras (RTSP/HTTP URLs), one camera each -> identity events.

Each person is matched against the gallery as they appear (a ``provisional`` event while
their tracklet grows, ``confirmed`` when it ends); events are printed and appended to
``<out>/events.jsonl``; the gallery is updated as in ``reid process``; a status line per
camera shows capture and processing fps, lag, dropped frames and connection state.
Identities given with ``--watch`` or flagged in the gallery raise ``alert`` events.

SIGINT/SIGTERM stop it cleanly: readers stop, the current step finishes, open tracklets
are closed and committed, exit code 0. URL credentials are never shown.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from typing import Any
from urllib.parse import urlsplit

from reid_pipeline.config import Config
from reid_pipeline.errors import ConfigError

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common

    p = sub.add_parser(
        "stream",
        help="match people on live RTSP cameras as they appear",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "urls",
        nargs="+",
        metavar="URL",
        help="camera URLs (rtsp://[user:pw@]host[:port]/path), one camera each",
    )
    p.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="NAME",
        help="camera name per URL, in order (default: host and path)",
    )
    p.add_argument(
        "--watch",
        dest="cfg__stream__watch",
        type=int,
        nargs="+",
        action="extend",
        metavar="ID",
        help="identities that raise alerts, in addition to those "
        "flagged in the gallery (key: stream.watch)",
    )
    p.add_argument(
        "--events",
        dest="cfg__stream__events",
        metavar="PATH",
        help="JSONL events file (key: stream.events; default <out>/events.jsonl)",
    )
    p.add_argument(
        "--duration",
        dest="cfg__stream__duration_s",
        type=float,
        metavar="S",
        help="stop after S seconds (key: stream.duration_s; default: until Ctrl-C/SIGTERM)",
    )
    p.add_argument(
        "--mode",
        dest="cfg__stream__mode",
        choices=["live", "recorded"],
        help="live: keep only the newest frames; recorded: drop none (key: stream.mode)",
    )
    p.add_argument(
        "--queue-size",
        dest="cfg__stream__queue_size",
        type=int,
        metavar="N",
        help="frames buffered per camera (key: stream.queue_size)",
    )
    p.add_argument(
        "--status-every",
        dest="cfg__stream__status_every_s",
        type=float,
        metavar="S",
        help="seconds between status lines, 0: none (key: stream.status_every_s)",
    )
    p.add_argument(
        "--serve",
        dest="cfg__serve__listen",
        metavar="HOST:PORT",
        help="run the operator console (live tiles, alerts, search) beside the stream "
        "(key: serve.listen; a non-loopback HOST needs serve.token_file)",
    )
    from reid_pipeline.commands.process import add_run_options

    add_run_options(p)
    add_common(p)
    p.set_defaults(func=run)


def default_camera_name(url: str, k: int) -> str:
    """``rtsp://u:p@cam2.local:554/stream1`` -> ``cam2.local-stream1`` (no credentials)."""
    try:
        parts = urlsplit(url)
        raw = f"{parts.hostname or ''}{parts.path or ''}"
    except ValueError:
        raw = ""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", raw).strip("-.")
    return name or f"cam{k}"


def camera_names(urls: list[str], cameras: list[str]) -> list[str]:
    if cameras and len(cameras) != len(urls):
        raise ConfigError(
            f"--camera given {len(cameras)} time(s) for {len(urls)} URL(s); "
            "give one --camera per URL, in order, or none"
        )
    names = list(cameras) or [default_camera_name(u, k) for k, u in enumerate(urls)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(
            f"camera name(s) {dup} given to more than one URL; name each camera with --camera"
        )
    return names


def run(args: argparse.Namespace, cfg: Config) -> int:
    from pathlib import Path

    from reid_pipeline.config import write_resolved
    from reid_pipeline.pipeline.build import default_db_url
    from reid_pipeline.pipeline.engine import Pipeline
    from reid_pipeline.pipeline.live import LiveStream, StopFlag
    from reid_pipeline.pipeline.recorded import check_output_dir
    from reid_pipeline.sources import is_url, open_source
    from reid_pipeline.utils import redact_url

    urls = [str(u) for u in args.urls]
    bad = [redact_url(u) for u in urls if not is_url(u)]
    if bad:
        raise ConfigError(
            f"reid stream takes camera URLs (rtsp://...), not {bad}; "
            "use `reid process` for video files"
        )
    names = camera_names(urls, list(args.camera))
    sources = [open_source(u, n, cfg.stream) for u, n in zip(urls, names)]  # checks the URLs
    out = check_output_dir(cfg.output.out)
    write_resolved(cfg, out)  # the run's config, as it ran (config.yaml)
    db = default_db_url(cfg, out)
    events = Path(cfg.stream.events) if cfg.stream.events else out / "events.jsonl"
    _quiet_opencv()
    pipeline = Pipeline.build(cfg, out, db=db, cameras=names)
    stop = StopFlag()
    restore = stop.install_signals()

    def show_event(ev: Any) -> None:
        print(ev.describe(), flush=True)

    def show_status(lines: list[str]) -> None:
        for line in lines:
            print(f"[status] {line}", file=sys.stderr, flush=True)

    try:
        console = _start_console(cfg, pipeline, sources)  # None without --serve
    except BaseException:
        restore()
        pipeline.gallery.close()
        raise
    hub = console[1] if console else None

    def on_event(ev: Any) -> None:
        show_event(ev)
        if hub is not None:
            hub.on_event(ev)

    try:
        for s in sources:
            print(f"camera {s.camera}: {s.uri}", flush=True)
        live = LiveStream(
            cfg,
            pipeline,
            sources,
            events,
            on_event=on_event,
            on_status=show_status,
            on_frames=hub.on_frames if hub is not None else None,
        )
        summary = live.run(stop)
    finally:
        restore()
        if console:
            console[1].close()
            console[0].stop()
        pipeline.gallery.close()
    print(summary.describe(), flush=True)
    _write_summary(out / "stream_summary.json", summary)
    print(f"events: {events}\ngallery: {redact_url(db)}", flush=True)
    return 0


def _start_console(cfg: Config, pipeline: Any, sources: list[Any]) -> tuple[Any, Any] | None:
    """(server, hub) of the console beside the live loop (``--serve HOST:PORT``)."""
    if not cfg.serve.listen:
        return None
    import dataclasses

    from reid_pipeline.config.serve import parse_listen
    from reid_pipeline.serve.app import create_app
    from reid_pipeline.serve.live import LiveHub
    from reid_pipeline.serve.server import BackgroundServer

    host, port = parse_listen(cfg.serve.listen, "serve.listen")
    scfg = dataclasses.replace(cfg, serve=dataclasses.replace(cfg.serve, host=host, port=port))
    hub = LiveHub(pipeline, sources, cfg.serve.events_kept)
    app = create_app(pipeline.gallery, scfg, live=hub)  # refuses a public address sans token
    server = BackgroundServer(app, host, port).start()
    shown = f"[{host}]" if ":" in host else host
    print(f"console: http://{shown}:{port}/", flush=True)
    return server, hub


def _write_summary(path: Any, summary: Any) -> None:
    """The run's figures as JSON (benchmarks read it); a failure here loses nothing else."""
    import json

    try:
        path.write_text(json.dumps(summary.to_dict(), indent=1, default=str))
    except OSError as e:
        log.warning("could not write %s: %s", path, e.strerror or e)


def _quiet_opencv() -> None:
    """OpenCV warns on every failed reconnect attempt; our own log line says why, once."""
    try:
        import cv2.utils.logging as cvlog

        cvlog.setLogLevel(cvlog.LOG_LEVEL_ERROR)
    except (ImportError, AttributeError):  # pragma: no cover - older OpenCV
        pass
