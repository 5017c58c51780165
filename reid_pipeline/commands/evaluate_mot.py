"""``reid evaluate-mot``: MOTChallenge figures of our tracking on a MOTChallenge sequence.

Runs the ``reid process`` pipeline on the sequence's frames (``img1/``) or on a video of
it (``--video``; ``--scale`` when the video was resized), over ``--frames A:B`` (1-based
ground-truth frame numbers, inclusive) or the whole sequence, and scores the MOT files it
writes against ``gt/gt.txt`` with py-motmetrics (IoU >= 0.5): once by track id, once by
global identity (what ReID adds across time). ``--result FILE`` scores an existing
MOT-format file instead. Prints a table and writes ``metrics.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

from reid_pipeline.config import Config, with_key
from reid_pipeline.errors import ConfigError, InputError, OutputError

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common
    from reid_pipeline.commands.process import add_process_options

    p = sub.add_parser(
        "evaluate-mot",
        help="MOTChallenge CLEAR MOT / IDF1 of our tracking on a MOTChallenge sequence",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "cfg__mot_eval__sequence",
        metavar="SEQUENCE",
        nargs="?",
        help="MOTChallenge sequence folder: seqinfo.ini, gt/gt.txt, img1/, "
        "optionally det/det.txt (key: mot_eval.sequence)",
    )
    p.add_argument(
        "--video",
        dest="cfg__mot_eval__video",
        metavar="FILE",
        help="run on this video of the sequence instead of its img1/ frames (key: mot_eval.video)",
    )
    p.add_argument(
        "--scale",
        dest="cfg__mot_eval__scale",
        type=float,
        metavar="S",
        help="video size / sequence size, e.g. 0.625 for a 768x576 sequence at "
        "480x360 (key: mot_eval.scale)",
    )
    p.add_argument(
        "--frames",
        dest="cfg__mot_eval__frames",
        metavar="A:B",
        help="ground-truth frames A..B only, 1-based, inclusive (key: mot_eval.frames)",
    )
    p.add_argument(
        "--result",
        dest="cfg__mot_eval__result",
        metavar="FILE",
        help="score this MOT-format result file instead of running the pipeline "
        "(key: mot_eval.result)",
    )
    p.add_argument(
        "--result-identities",
        dest="cfg__mot_eval__result_identities",
        metavar="FILE",
        help="with --result: a second file, scored as 'by "
        "identity' (key: mot_eval.result_identities)",
    )
    p.add_argument(
        "--iou",
        dest="cfg__mot_eval__iou",
        type=float,
        metavar="T",
        help="IoU a match needs (key: mot_eval.iou; MOTChallenge: 0.5)",
    )
    p.add_argument(
        "--gt-format",
        dest="cfg__mot_eval__gt_format",
        metavar="FMT",
        help="auto, mot15 or mot16: how gt columns 8-10 are read "
        "(key: mot_eval.gt_format; auto: 9 columns are MOT16+)",
    )
    # --detector as in `reid process`, but a key of its own (mot_eval.detector; empty:
    # detector.kind): `mot` takes the sequence's det/det.txt, which detector.kind=mot could
    # not validate before the sequence is known
    add_process_options(p, detector_key="mot_eval.detector")
    add_common(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.evaluate.mot import (
        evaluate,
        library_version,
        read_gt,
        read_result,
        read_seqinfo,
        render_table,
        sequence_frames,
    )
    from reid_pipeline.pipeline.recorded import check_output_dir

    me = cfg.mot_eval
    if not me.sequence:
        raise ConfigError(
            "config key 'mot_eval.sequence': give the MOTChallenge sequence "
            "folder (seqinfo.ini, gt/gt.txt, img1/)"
        )
    seq = read_seqinfo(me.sequence)
    frames = sequence_frames(me.frames, seq)
    gt = read_gt(seq.gt_path, seq, me.gt_format)
    out = check_output_dir(cfg.output.out)
    report: dict[str, Any] = {
        "sequence": seq.name,
        "sequence_folder": str(seq.root),
        "ground_truth": str(gt.path),
        "gt_format": gt.fmt,
        "frames": list(frames),
        "iou": me.iou,
        "scale": me.scale,
        "library": f"py-motmetrics {library_version()}",
        "motp": "motp_iou is MOTChallenge's MOTP (mean IoU of matches); motp is "
        "py-motmetrics' (mean 1 - IoU)",
        "hota": "not computed: py-motmetrics 1.4.0 has no HOTA",
    }
    if me.result:
        files = (
            {"by track": Path(me.result), "by identity": Path(me.result_identities)}
            if me.result_identities
            else {"result": Path(me.result)}
        )
        offset = 0
    else:
        files, offset, run_info = _run_pipeline(cfg, seq, frames, out)
        report["run"] = run_info
    results = {label: read_result(p) for label, p in files.items()}
    report["results"] = {label: str(p) for label, p in files.items()}
    metrics = {
        label: evaluate(gt, r.to_sequence(offset, me.scale), frames, me.iou)
        for label, r in results.items()
    }
    report["metrics"] = metrics
    path = out / "metrics.json"
    try:
        path.write_text(json.dumps(report, indent=2) + "\n")
    except OSError as e:
        raise OutputError(f"cannot write {str(path)!r}: {e.strerror or e}") from None
    print(
        f"{seq.name} frames {frames[0]}-{frames[1]}: py-motmetrics {library_version()}, "
        f"IoU >= {me.iou:g}" + (f", boxes / {me.scale:g}" if me.scale != 1 else "")
    )
    print(render_table(metrics))
    ign = {label: m["num_ignored"] for label, m in metrics.items() if m["num_ignored"]}
    if ign:
        print(
            "predictions on ignored regions (not counted): "
            + ", ".join(f"{k} {v}" for k, v in ign.items())
        )
    print(f"wrote: {path}")
    return 0


def _run_pipeline(
    cfg: Config, seq: Any, frames: tuple[int, int], out: Path
) -> tuple[dict[str, Path], int, dict[str, Any]]:
    """Run ``reid process``'s code path on the sequence; returns its MOT files, the frame
    offset of the input against the sequence, and what the run did."""
    from reid_pipeline.evaluate.mot import convert_det
    from reid_pipeline.pipeline.recorded import process_videos
    from reid_pipeline.report.mot import mot_paths, safe_name

    me = cfg.mot_eval
    if cfg.input.frames:
        raise ConfigError(
            "config key 'input.frames': evaluate-mot sets it from "
            "mot_eval.frames (--frames); leave it empty"
        )
    spec, offset, input_frames = plan_input(cfg, seq, frames)
    a, b = frames
    whole = frames == (1, seq.length)
    camera = safe_name(seq.name) + ("" if whole else f"_{a}-{b}")
    if input_frames:
        cfg = with_key(cfg, "input.frames", input_frames)
    if not me.video and cfg.input.fps == 0 and seq.frame_rate > 0:
        cfg = with_key(cfg, "input.fps", seq.frame_rate)  # img1/: the sequence's own rate
    if me.detector:
        cfg = with_key(cfg, "detector.kind", me.detector)
    if cfg.detector.kind == "mot" and not cfg.detector.mot_det:
        det = seq.det_path
        if not det.is_file():
            raise InputError(
                f"{str(det)!r} does not exist: --detector mot needs the "
                "sequence's public detections (or --mot-det FILE)"
            )
        if me.scale != 1 or offset:
            det = convert_det(det, out / "mot" / f"{camera}.det.txt", me.scale, offset, frames)
        cfg = with_key(cfg, "detector.mot_det", [str(det)])
    cfg.validate()
    result = process_videos(cfg, [(spec, camera)])
    cam = result.summary.cameras[0]
    if cam.skipped:
        log.warning(
            "camera %s was already processed in %s: scoring the result stored "
            "there (use a new --out to run again with other settings)",
            camera,
            result.db,
        )
    paths = mot_paths(out, camera)
    info = {
        "input": spec,
        "camera": camera,
        "detector": cfg.detector.kind,
        "input_frames": input_frames or "all",
        "frame_offset": offset,
        "frames_processed": cam.frames,
        "seconds": round(result.summary.seconds, 2),
        "fps": round(result.summary.fps, 2),
        "skipped_already_done": cam.skipped,
        "tracklets": cam.tracklets,
        "identities": result.identities,
    }
    return {"by track": paths["tracks"], "by identity": paths["identities"]}, offset, info


def plan_input(cfg: Config, seq: Any, frames: tuple[int, int]) -> tuple[str, int, str]:
    """What to run on, the frame offset of its frame 1 against the sequence, and the
    ``input.frames`` to process; checks the input's length against ``seqLength``."""
    from reid_pipeline.sources import open_source

    me = cfg.mot_eval
    a, b = frames
    if me.video:
        spec = me.video
    else:
        if me.scale != 1:
            raise ConfigError(
                "config key 'mot_eval.scale': only a resized video (--video) "
                "has another size than the sequence's img1/ frames"
            )
        if not seq.frames_dir.is_dir():
            raise InputError(
                f"sequence {str(seq.root)!r} has no frames folder "
                f"{str(seq.frames_dir)!r} (imDir in seqinfo.ini); give --video, "
                "or --result to score a file"
            )
        spec = str(seq.frames_dir)
    src = open_source(spec, "probe")
    try:
        n, size = src.frame_count, src.size
    finally:
        src.close()
    what = "video" if me.video else "frames folder"
    if seq.width and seq.height:
        want = (seq.width * me.scale, seq.height * me.scale)
        if abs(size[0] - want[0]) > 2 or abs(size[1] - want[1]) > 2:
            log.warning(
                "%s %r is %dx%d; the sequence (%dx%d) at scale %g would be %.0fx%.0f: "
                "check --scale",
                what,
                spec,
                size[0],
                size[1],
                seq.width,
                seq.height,
                me.scale,
                *want,
            )
    whole = frames == (1, seq.length)
    if n is None:
        log.warning("%s %r declares no frame count; assuming it is the whole sequence", what, spec)
        n = seq.length
    if n == seq.length:
        return spec, 0, "" if whole else f"{a}:{b}"
    if not whole and n == b - a + 1:
        return spec, a - 1, ""  # a clip of just these frames
    raise InputError(
        f"{what} {spec!r} has {n} frames, but {str(seq.ini)!r} says "
        f"seqLength={seq.length}" + ("" if whole else f" (and --frames {a}:{b} covers {b - a + 1})")
    )
