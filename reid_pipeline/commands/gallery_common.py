"""What every ``reid gallery ACTION`` shares: the ``--db``/``--crops-dir`` options and
opening the (existing) gallery they name.

Its own module so that ``commands/gallery.py`` (the ``gallery`` command, reading actions)
and ``commands/gallery_manage.py`` (the management actions it registers) both use it
without importing each other.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reid_pipeline.config import Config
    from reid_pipeline.gallery import Gallery


def add_db(p: argparse.ArgumentParser) -> None:
    """The gallery option every action takes."""
    p.add_argument(
        "--db",
        dest="cfg__gallery__db",
        metavar="PATH_OR_URL",
        help="gallery database: SQLite file or SQLAlchemy URL "
        "(key: gallery.db; default <output.out>/reid.db)",
    )
    p.add_argument(
        "--crops-dir",
        dest="cfg__gallery__crops_dir",
        metavar="DIR",
        help="where the crop JPEGs are (key: gallery.crops_dir; default: recorded in the gallery)",
    )


def open_gallery(cfg: Config) -> Gallery:
    """Open the configured gallery, which must exist (reading never creates one)."""
    from reid_pipeline.gallery.manage import open_existing
    from reid_pipeline.pipeline.build import default_db_url

    return open_existing(default_db_url(cfg), cfg)
