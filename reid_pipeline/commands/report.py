"""``reid report``: the gallery as a static HTML site that opens from the file system.

An index of identities (thumbnail, cameras, first/last seen, sightings; paginated), a page
per identity with its crops per camera on a timeline, and links into the annotated videos
at the right second when ``reid process`` wrote them (``<run>/videos/<camera>.webm``).

The pages link to the gallery's crop files instead of copying them, so deleting a person
from the gallery removes their pictures from the report too (``--copy-crops`` makes a
portable copy instead; such copies are then yours to erase).

    uv run reid report --db runs/day1/reid.db --out runs/day1/report
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from reid_pipeline.commands.options import ReportOptions
from reid_pipeline.config import Config
from reid_pipeline.errors import ConfigError

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    from reid_pipeline.commands.common import add_common, add_options
    from reid_pipeline.commands.options import ReportOptions

    p = sub.add_parser(
        "report",
        help="write the identity report (static HTML site)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--db",
        dest="cfg__gallery__db",
        help="gallery database: file or SQLAlchemy URL (key: gallery.db; "
        "default <output.out>/reid.db)",
    )
    p.add_argument(
        "--out",
        dest="cfg__report__out",
        help="report folder (key: report.out; default <db folder>/report)",
    )
    p.add_argument(
        "--videos",
        dest="cfg__report__videos",
        metavar="DIR",
        help="folder of annotated videos <camera>.webm (key: report.videos; "
        "default <db folder>/videos)",
    )
    p.add_argument(
        "--crops-dir",
        dest="cfg__gallery__crops_dir",
        metavar="DIR",
        help="where the gallery's crop JPEGs are (key: gallery.crops_dir; default: "
        "recorded in the gallery)",
    )
    p.add_argument(
        "--page-size",
        dest="cfg__report__page_size",
        type=int,
        metavar="N",
        help="identities per index page (key: report.page_size)",
    )
    p.add_argument(
        "--crops-per-camera",
        dest="cfg__report__crops_per_camera",
        type=int,
        metavar="N",
        help="crops per camera on an identity page (key: report.crops_per_camera)",
    )
    p.add_argument(
        "--copy-crops",
        dest="cfg__report__copy_crops",
        action="store_const",
        const=True,
        help="copy the crops into the report (key: report.copy_crops)",
    )
    p.add_argument("--title", dest="cfg__report__title", help="key: report.title")
    add_common(p)
    add_options(p, ReportOptions)
    p.set_defaults(func=run)


def report_paths(opts: ReportOptions, db: str) -> tuple[Path, Path | None]:
    """(report folder, annotated-video folder) from the config, defaulting beside the db."""
    from reid_pipeline.gallery.engine import is_url

    beside = None if is_url(db) else Path(db).expanduser().resolve().parent
    if opts.out:
        out = Path(opts.out)
    elif beside is not None:
        out = beside / "report"
    else:
        raise ConfigError(
            "config key 'report.out': the gallery is a server database; "
            "say where the report goes (--out)"
        )
    videos = (
        Path(opts.videos) if opts.videos else (beside / "videos" if beside is not None else None)
    )
    return out, videos


def run(args: argparse.Namespace, cfg: Config) -> int:
    from reid_pipeline.commands.common import options_from_args
    from reid_pipeline.gallery.manage import open_existing
    from reid_pipeline.pipeline.build import default_db_url
    from reid_pipeline.report.site import SiteOptions, build_report

    db = default_db_url(cfg)
    r = options_from_args(args, ReportOptions)
    out, videos = report_paths(r, db)
    opts = SiteOptions(
        title=r.title,
        page_size=r.page_size,
        crops_per_camera=r.crops_per_camera,
        copy_crops=r.copy_crops,
    )
    with open_existing(db, cfg) as gallery:
        index = build_report(gallery, out, opts, videos)
    print(f"report: {index}")
    return 0
