"""``reid process``: recorded videos (or frame folders), one camera each -> identities.

Writes into ``--out``: the gallery (SQLite ``reid.db`` unless ``--db``), one annotated video
per camera, ``sightings.csv`` / ``sightings.jsonl`` and the HTML report. Everything is checked
before the first database write (inputs, camera names, output folder, weights, database), so
a bad input costs nothing already committed.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from reid_pipeline.config import Config
from reid_pipeline.errors import ConfigError

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common

    p = sub.add_parser(
        "process",
        help="process recorded videos into cross-camera identities",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="VIDEO",
        help="video files or folders of frames, one camera each",
    )
    p.add_argument(
        "--camera",
        action="append",
        default=[],
        metavar="NAME",
        help="camera name per input, in order (default: the file names)",
    )
    add_process_options(p)
    add_common(p)
    p.set_defaults(func=run)


def add_run_options(p: argparse.ArgumentParser, detector_key: str = "detector.kind") -> None:
    """Flags of every command that runs the pipeline (process, demo, stream); each a config key
    (``detector_key``: the key ``--detector`` sets; evaluate-mot has its own)."""
    p.add_argument(
        "--out", dest="cfg__output__out", metavar="DIR", help="output folder (key: output.out)"
    )
    p.add_argument(
        "--db",
        dest="cfg__gallery__db",
        metavar="URL",
        help="gallery database: SQLAlchemy URL or file (key: gallery.db; default <out>/reid.db)",
    )
    p.add_argument(
        "--detector",
        dest="cfg__" + detector_key.replace(".", "__"),
        metavar="KIND",
        help=f"auto, yolo, hog or mot (key: {detector_key})",
    )
    p.add_argument(
        "--weights",
        dest="cfg__detector__weights",
        metavar="FILE",
        help="YOLO weights file or name (key: detector.weights)",
    )
    p.add_argument(
        "--checkpoint",
        dest="cfg__model__checkpoint",
        metavar="FILE",
        help="ReID checkpoint: ours or a torchreid zoo state_dict (key: model.checkpoint)",
    )
    p.add_argument(
        "--threshold",
        dest="cfg__match__threshold",
        metavar="P",
        type=float,
        help="match probability threshold (key: match.threshold)",
    )


def add_process_options(p: argparse.ArgumentParser, detector_key: str = "detector.kind") -> None:
    """Flags shared by ``process``, ``demo`` and ``evaluate-mot``; each is a config key."""
    add_run_options(p, detector_key)
    p.add_argument(
        "--mot-det",
        dest="cfg__detector__mot_det",
        metavar="DET_TXT[,..]",
        help="MOTChallenge det.txt per camera, comma separated (key: detector.mot_det)",
    )
    p.add_argument(
        "--fps",
        dest="cfg__input__fps",
        metavar="FPS",
        type=float,
        help="frame rate for timestamps, e.g. of a folder of frames "
        "(key: input.fps; default: the video's own, folders 10)",
    )
    p.add_argument(
        "--no-video",
        dest="cfg__output__video",
        action="store_const",
        const=False,
        help="skip the annotated videos (key: output.video)",
    )
    p.add_argument(
        "--no-html",
        dest="cfg__output__html",
        action="store_const",
        const=False,
        help="skip the HTML report (key: output.html)",
    )


def camera_names(inputs: list[str], cameras: list[str]) -> list[str]:
    """One camera name per input: given explicitly, or derived from the file names."""
    if cameras and len(cameras) != len(inputs):
        raise ConfigError(
            f"--camera given {len(cameras)} time(s) for {len(inputs)} input(s); "
            "give one --camera per input, in order, or none"
        )
    if cameras:
        return list(cameras)
    names = [Path(i.rstrip("/")).stem or f"cam{k}" for k, i in enumerate(inputs)]
    seen: dict[str, int] = {}
    out = []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f"{n}-{seen[n]}")
    return out


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.pipeline.recorded import process_videos

    cams = camera_names(list(args.inputs), list(args.camera))
    result = process_videos(cfg, list(zip(args.inputs, cams)))
    print(result.describe())
    return 0
