"""``reid search``: who in the gallery is the person in this photo, and where and when?

The photo may be a full frame (the person is detected; the biggest, most confident one is
taken) or already a crop of one person. It is embedded with the model the gallery was built
with (``--checkpoint``) and scored against every identity's exemplars by the dichotomy
classifier; identities are listed with their probability and sightings per camera.

    uv run reid search suspect.jpg --db runs/day1/reid.db --top 10 [--html result.html]
"""

from __future__ import annotations

import argparse
import logging
from typing import Any

from reid_pipeline.config import Config

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common, add_options
    from reid_pipeline.commands.options import SearchOptions

    p = sub.add_parser(
        "search",
        help="search the gallery by photo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("photo", help="image file: a full frame or a crop of one person")
    p.add_argument(
        "--db",
        dest="cfg__gallery__db",
        help="gallery database: file or SQLAlchemy URL (key: gallery.db; "
        "default <output.out>/reid.db)",
    )
    p.add_argument(
        "--top",
        dest="cfg__search__top",
        type=int,
        metavar="N",
        help="identities listed (key: search.top)",
    )
    p.add_argument(
        "--html",
        dest="cfg__search__html",
        metavar="FILE",
        help="also write the result as a page (key: search.html)",
    )
    p.add_argument(
        "--mode",
        dest="cfg__search__mode",
        choices=["auto", "frame", "crop"],
        help="auto: detect a person, else take a crop-shaped photo whole; frame: "
        "a person must be detected; crop: the photo is the crop "
        "(key: search.mode)",
    )
    p.add_argument(
        "--min-probability",
        dest="cfg__search__min_probability",
        type=float,
        metavar="P",
        help="hide identities below P (key: search.min_probability)",
    )
    p.add_argument(
        "--checkpoint",
        dest="cfg__model__checkpoint",
        help="ReID checkpoint the gallery was built with (key: model.checkpoint)",
    )
    p.add_argument(
        "--detector", dest="cfg__detector__kind", help="auto, yolo or hog (key: detector.kind)"
    )
    p.add_argument(
        "--weights",
        dest="cfg__detector__weights",
        help="YOLO weights file or name (key: detector.weights)",
    )
    add_common(p)
    add_options(p, SearchOptions)
    p.set_defaults(func=run)


def run(args: argparse.Namespace, cfg: Config) -> int:
    import dataclasses

    from reid_pipeline.commands.common import options_from_args
    from reid_pipeline.commands.options import SearchOptions
    from reid_pipeline.detect import build_detector
    from reid_pipeline.gallery.manage import open_existing
    from reid_pipeline.pipeline.build import build_embedder, build_model, default_db_url
    from reid_pipeline.pipeline.search import (
        format_result,
        read_photo,
        search_photo,
        write_result_html,
    )
    from reid_pipeline.utils import resolve_device

    opts = options_from_args(args, SearchOptions)
    read_photo(args.photo)  # a bad photo fails before any model or database work
    db = default_db_url(cfg)
    with open_existing(db, cfg) as gallery:
        device = resolve_device(cfg.device)
        model = build_model(cfg, device)
        embedder = build_embedder(cfg, model, device)
        detector = None
        if opts.mode != "crop":
            dcfg = cfg.detector
            if dcfg.kind == "mot":  # public detections belong to videos, not to a photo
                dcfg = dataclasses.replace(dcfg, kind="auto")
            detector = build_detector(dcfg, device)
        res = search_photo(
            gallery,
            args.photo,
            model,
            embedder,
            detector,
            top=opts.top,
            mode=opts.mode,
            min_probability=opts.min_probability,
        )
    print(format_result(res))
    if opts.html:
        print(f"page: {write_result_html(res, opts.html)}")
    return 0
