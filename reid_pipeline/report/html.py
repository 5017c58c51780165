"""The HTML identity report of a ``reid process`` run, read from the gallery database.

``write_html_report(gallery, out_dir)`` is the one entry point the pipeline calls: the
site module reads the gallery's identities, tracklet intervals, crop files and video times
(``site.gallery_views``) and renders the static site (one card per
identity with crops from every camera it was seen in, first/last seen). Extending the report
means extending the views or the renderer; the pipeline does not change.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from reid_pipeline.report.site import SiteOptions, gallery_views, write_site

if TYPE_CHECKING:
    from reid_pipeline.gallery import Gallery

log = logging.getLogger(__name__)


def write_html_report(
    gallery: Gallery,
    out_dir: str | Path,
    crops_per_camera: int = 4,
    videos: dict[str, Path] | None = None,
    title: str = "Identities",
) -> Path:
    """Write the report site into ``out_dir``; returns the path of its ``index.html``."""
    views = gallery_views(gallery, videos)  # video links at each crop's time
    opts = SiteOptions(title=title, crops_per_camera=max(1, crops_per_camera))
    index = write_site(views, out_dir, opts, videos=videos)
    log.info("HTML report: %s (%d identities)", index, len(views))
    return index
