"""The recorded-footage driver of the pipeline (``reid process``): files in, outputs out.

``run_recorded`` pulls frames from blocking source iterators until they end and feeds
them to ``Pipeline.step``: each step takes up to ``detector.batch // cameras`` frames from
every camera still running, so the detector sees one batch instead of N small ones.
**Ctrl-C** (or ``stop()``) ends every open track where it is, commits with R = the next
unprocessed frame and re-raises ``KeyboardInterrupt``: the database is consistent and the
same command resumes. A source whose content (fingerprint) is already done is skipped:
re-running the same video adds nothing.

``process_videos`` is the whole command. Order matters for "nothing committed is lost":
inputs, camera names, the output folder, the model weights and the database are all
checked before the first frame is processed; the outputs (CSV/JSONL, videos, HTML) are
derived from the gallery afterwards, so a resumed run exports exactly what the database
holds.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reid_pipeline.config import Config, write_resolved
from reid_pipeline.errors import ConfigError, OutputError, SourceError
from reid_pipeline.pipeline.build import default_db_url
from reid_pipeline.pipeline.engine import CameraSummary, Pipeline
from reid_pipeline.types import Frame
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CameraInput:
    """One input of a run: what to read and which camera it is."""

    spec: str
    camera: str


def open_input(inp: CameraInput, cfg: Config | None = None, start_frame: int = 0) -> Any:
    """Open one input with the run's settings (``input.fps``, ``input.frames``; ``stream``
    for URLs)."""
    from reid_pipeline.config import frame_range
    from reid_pipeline.sources import open_source

    fps = cfg.input.fps if cfg is not None and cfg.input.fps > 0 else None

    def opener(start: int) -> Any:
        return open_source(
            inp.spec,
            inp.camera,
            cfg.stream if cfg is not None else None,
            start_frame=start,
            fps=fps,
        )

    part = frame_range(cfg.input.frames, "input.frames") if cfg is not None else None
    if part is None:
        return opener(start_frame)
    from reid_pipeline.sources.range import FrameRangeSource

    return FrameRangeSource(opener, *part, start_frame=start_frame)


def open_inputs(inputs: Sequence[CameraInput], cfg: Config | None = None) -> list[Any]:
    """Open (and so validate) every source before anything is written."""
    names = [i.camera for i in inputs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(
            f"camera name(s) {dup} given to more than one input; each input needs its own camera"
        )
    return [open_input(i, cfg) for i in inputs]


@dataclass
class RunSummary:
    """What a run did, for the CLI and the benchmarks."""

    cameras: list[CameraSummary] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False
    failures: dict[str, str] = field(default_factory=dict)  # camera -> why its input broke off

    @property
    def frames(self) -> int:
        return sum(c.frames for c in self.cameras)

    @property
    def tracklets(self) -> int:
        return sum(c.tracklets for c in self.cameras)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class _Reader:
    camera: str
    source: Any
    it: Any
    bar: Any
    exhausted: bool = False


def run_recorded(
    pipeline: Pipeline,
    inputs: Sequence[CameraInput],
    stop: Callable[[], bool] | None = None,
    opened: Sequence[Any] | None = None,
) -> RunSummary:
    """Process every input to its end (or until ``stop()`` is true, or Ctrl-C).

    ``opened``: the inputs' sources, already opened (``open_inputs``) by a caller that
    validated them first; each source is then opened once, and again only to resume.
    """
    cfg = pipeline.cfg
    t0 = time.perf_counter()
    summary = RunSummary()
    probes = list(opened) if opened is not None else open_inputs(inputs, cfg)
    readers: list[_Reader] = []
    try:
        starts = pipeline.start(probes, hold_back=True)
        for inp, probe, st in zip(inputs, probes, starts, strict=True):
            if st.done:
                probe.close()
                cs = CameraSummary(
                    inp.camera,
                    st.uri,
                    skipped=True,
                    fps=float(probe.fps),
                    frame_count=probe.frame_count,
                    source_id=st.source_id,
                )
                summary.cameras.append(cs)
                log.info("camera %s: %s already processed, skipped", inp.camera, st.uri)
                continue
            src = probe
            if st.resume_from > 0:
                probe.close()
                src = open_input(inp, cfg, start_frame=st.resume_from)
                log.info("camera %s: resuming at frame %d", inp.camera, st.resume_from)
            summary.cameras.append(pipeline.cameras[inp.camera].summary)
            readers.append(
                _Reader(
                    inp.camera,
                    src,
                    iter(src),
                    _bar(inp.camera, src.frame_count, st.resume_from, position=len(readers)),
                )
            )
    except BaseException:
        for p in probes:
            p.close()
        raise
    try:
        _loop(pipeline, readers, stop)
    except (KeyboardInterrupt, SourceError) as e:
        # Ctrl-C, or a video that breaks off mid-way (truncated): keep what was done
        summary.interrupted = True
        log.warning(
            "%s: committing the in-flight batch",
            "interrupted" if isinstance(e, KeyboardInterrupt) else "input failed",
        )
        pipeline.finish()
        summary.seconds = time.perf_counter() - t0
        raise
    finally:
        for r in readers:
            r.source.close()
            _close_bar(r.bar)
    summary.interrupted = summary.interrupted or any(not r.exhausted for r in readers)
    for r in readers:
        failed = pipeline.cameras[r.camera].failed
        if failed is not None:
            summary.interrupted = True
            summary.failures[r.camera] = failed
    summary.seconds = time.perf_counter() - t0
    return summary


def _loop(pipeline: Pipeline, readers: list[_Reader], stop: Callable[[], bool] | None) -> None:
    cfg = pipeline.cfg
    batch = max(1, int(cfg.detector.batch))
    while True:
        active = [r for r in readers if not r.exhausted]
        if not active:
            break
        if stop is not None and stop():
            raise KeyboardInterrupt
        per_cam = max(1, batch // len(active))
        frames: list[Frame] = []
        for r in active:
            for _ in range(per_cam):
                failed: str | None = None
                try:
                    fr = next(r.it, None)
                except SourceError as e:
                    if cfg.input.on_error == "stop":
                        raise
                    # this camera ends here (its frames so far are kept and committed, its
                    # source stays resumable, not "done"); the others go on
                    log.error("camera %s: %s; the other cameras go on", r.camera, e)
                    failed, fr = str(e), None
                if fr is None:
                    r.exhausted = True
                    pipeline.end_camera(r.camera, failed)
                    break
                frames.append(fr)
                _bar_update(r.bar)
        pipeline.step(frames)
    pipeline.finish()


def _bar(camera: str, total: int | None, initial: int, position: int = 0) -> Any:
    """A tqdm bar per camera, one line each (utils.progress wraps iterables; here frames
    arrive in steps)."""
    from tqdm.auto import tqdm

    return tqdm(
        desc=camera,
        total=total,
        initial=initial,
        unit="frame",
        dynamic_ncols=True,
        leave=False,
        position=position,
        disable=os.environ.get("REID_NO_PROGRESS") == "1",
    )


def _bar_update(bar: Any) -> None:
    up = getattr(bar, "update", None)
    if up is not None:
        up(1)


def _close_bar(bar: Any) -> None:
    close = getattr(bar, "close", None)
    if close is not None:
        close()


@dataclass
class ProcessResult:
    """What ``reid process`` made, for printing and for tests."""

    out_dir: Path
    db: str
    summary: RunSummary
    identities: int = 0
    multi_camera: int = 0
    sightings: int = 0
    outputs: list[Path] = field(default_factory=list)

    def describe(self) -> str:
        s = self.summary
        lines = []
        for c in s.cameras:
            state = (
                "already processed, skipped"
                if c.skipped
                else f"{c.frames} frames"
                + (f" (resumed at {c.resumed_from})" if c.resumed_from else "")
            )
            lines.append(f"  {c.camera}: {c.uri}: {state}, {c.tracklets} tracklets")
        lines.append(
            f"identities: {self.identities} ({self.multi_camera} seen by more than "
            f"one camera); sightings: {self.sightings}"
        )
        if s.frames:
            lines.append(f"speed: {s.frames} frames in {s.seconds:.1f} s = {s.fps:.1f} frames/s")
        lines.append(f"gallery: {redact_url(self.db)}")
        lines += [f"wrote: {p}" for p in self.outputs]
        return "\n".join(lines)


def check_output_dir(path: str | Path) -> Path:
    """Create ``path`` and prove it is writable, or raise ``OutputError`` naming it."""
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as e:
        raise OutputError(
            f"output folder {str(out)!r} is not writable: {e.strerror or e}"
        ) from None
    return out


def process_videos(
    cfg: Config,
    inputs: Sequence[tuple[str, str]],
    *,
    stop: Callable[[], bool] | None = None,
    pipeline: Pipeline | None = None,
) -> ProcessResult:
    """Process ``(spec, camera)`` inputs with ``cfg``; write every output into ``output.out``."""
    cams = [CameraInput(str(s), c) for s, c in inputs]
    out = check_output_dir(cfg.output.out)
    write_resolved(cfg, out)  # the run's config, as it ran (config.yaml)
    db = default_db_url(cfg, out)
    own = pipeline is None
    # open the sources first: a missing video fails before weights or database are touched
    sources = open_inputs(cams, cfg)
    try:
        if pipeline is None:
            pipeline = Pipeline.build(cfg, out, db=db, cameras=[c.camera for c in cams])
    except BaseException:
        for src in sources:
            src.close()
        raise
    try:
        summary = run_recorded(pipeline, cams, stop=stop, opened=sources)
        result = write_outputs(cfg, pipeline, cams, out, db, summary)
        if summary.failures:
            # the other cameras finished and every output is written; the run still fails,
            # naming the broken input (re-running resumes it where it broke off)
            cam, why = next(iter(summary.failures.items()))
            more = len(summary.failures) - 1
            raise SourceError(
                f"{why} (camera {cam}; the other cameras finished and the "
                f"outputs in {str(out)!r} hold everything decoded"
                + (f"; {more} more camera(s) failed, see the log" if more else "")
                + ")"
            )
        return result
    finally:
        if own:
            pipeline.gallery.close()


def write_outputs(
    cfg: Config,
    pipeline: Pipeline,
    cams: Sequence[CameraInput],
    out: Path,
    db: str,
    summary: RunSummary,
) -> ProcessResult:
    """CSV/JSONL, MOT files, annotated videos and the HTML report, all read back from the
    gallery."""
    from reid_pipeline.report.html import write_html_report
    from reid_pipeline.report.mot import MotFiles
    from reid_pipeline.report.sightings import write_sightings
    from reid_pipeline.report.video import write_annotated_video

    g = pipeline.gallery
    names = {c.camera for c in cams}
    result = ProcessResult(out, db, summary)
    mot = MotFiles(out, [c.camera for c in cams])  # <out>/mot/<camera>.{tracks,identities}.txt
    rows = mot.tee(s for s in g.sightings() if s.camera in names)
    csv_p, jsonl_p, n = write_sightings(rows, out)
    result.sightings = n
    result.outputs += [csv_p, jsonl_p, *mot.close()]
    videos: dict[str, Path] = {}
    if cfg.output.video:
        vdir = out / "videos"
        try:
            vdir.mkdir(exist_ok=True)
        except OSError as e:
            raise OutputError(f"output folder {str(vdir)!r}: {e.strerror or e}") from None
        fps = cfg.input.fps if cfg.input.fps > 0 else None
        for c in cams:
            path = vdir / f"{_safe(c.camera)}.webm"
            try:
                write_annotated_video(c.spec, c.camera, g.sightings(camera=c.camera), path, fps=fps)
            except SourceError:
                if c.camera not in summary.failures:
                    raise
                log.warning(
                    "annotated video for camera %s ends where its input broke off", c.camera
                )
            videos[c.camera] = path
            result.outputs.append(path)
    idents = [i for i in g.identities() if i.tracklets > 0 and names & set(i.cameras)]
    result.identities = len(idents)
    result.multi_camera = sum(1 for i in idents if len(i.cameras) > 1)
    if cfg.output.html:
        result.outputs.append(
            write_html_report(g, out / "report", cfg.output.crops_per_camera, videos=videos)
        )
    return result


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "camera"
