"""One ``reid process`` run end to end: check inputs, run the pipeline, write the outputs.

Order matters for "nothing committed is lost": inputs, camera names, the output folder, the
model weights and the database are all checked before the first frame is processed; the
outputs (CSV/JSONL, videos, HTML) are derived from the gallery afterwards, so a resumed run
exports exactly what the database holds.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reid_pipeline.config import Config
from reid_pipeline.errors import OutputError, SourceError
from reid_pipeline.pipeline.engine import CameraInput, Pipeline, RunSummary
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)


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
            state = ("already processed, skipped" if c.skipped else
                     f"{c.frames} frames" + (f" (resumed at {c.resumed_from})"
                                             if c.resumed_from else ""))
            lines.append(f"  {c.camera}: {c.uri}: {state}, {c.tracklets} tracklets")
        lines.append(f"identities: {self.identities} ({self.multi_camera} seen by more than "
                     f"one camera); sightings: {self.sightings}")
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
        raise OutputError(f"output folder {str(out)!r} is not writable: "
                          f"{e.strerror or e}") from None
    return out


def database_url(cfg: Config, out: Path) -> str:
    return cfg.gallery.db or str(out / "reid.db")


def process_videos(cfg: Config, inputs: Sequence[tuple[str, str]], *,
                   stop: Callable[[], bool] | None = None,
                   pipeline: Pipeline | None = None) -> ProcessResult:
    """Process ``(spec, camera)`` inputs with ``cfg``; write every output into ``output.out``."""
    cams = [CameraInput(str(s), c) for s, c in inputs]
    out = check_output_dir(cfg.output.out)
    db = database_url(cfg, out)
    own = pipeline is None
    if pipeline is None:
        # open the sources first: a missing video fails before weights or database are touched
        for src in Pipeline.open_inputs(cams, cfg):
            src.close()
        pipeline = Pipeline.build(cfg, out, db=db, cameras=[c.camera for c in cams])
    try:
        summary = pipeline.run(cams, stop=stop)
        result = write_outputs(cfg, pipeline, cams, out, db, summary)
        if summary.failures:
            # the other cameras finished and every output is written; the run still fails,
            # naming the broken input (re-running resumes it where it broke off)
            cam, why = next(iter(summary.failures.items()))
            more = len(summary.failures) - 1
            raise SourceError(f"{why} (camera {cam}; the other cameras finished and the "
                              f"outputs in {str(out)!r} hold everything decoded"
                              + (f"; {more} more camera(s) failed, see the log" if more else "")
                              + ")")
        return result
    finally:
        if own:
            pipeline.gallery.close()


def write_outputs(cfg: Config, pipeline: Pipeline, cams: Sequence[CameraInput], out: Path,
                  db: str, summary: RunSummary) -> ProcessResult:
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
            path = vdir / f"{_safe(c.camera)}.mp4"
            try:
                write_annotated_video(c.spec, c.camera, g.sightings(camera=c.camera), path,
                                      fps=fps)
            except SourceError:
                if c.camera not in summary.failures:
                    raise
                log.warning("annotated video for camera %s ends where its input broke off",
                            c.camera)
            videos[c.camera] = path
            result.outputs.append(path)
    idents = [i for i in g.identities() if i.tracklets > 0 and names & set(i.cameras)]
    result.identities = len(idents)
    result.multi_camera = sum(1 for i in idents if len(i.cameras) > 1)
    if cfg.output.html:
        result.outputs.append(write_html_report(g, out / "report", cfg.output.crops_per_camera,
                                                videos=videos))
    return result


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "camera"
