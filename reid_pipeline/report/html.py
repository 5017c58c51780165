"""The HTML identity report of a ``reid process`` run, read from the gallery database.

``write_html_report(gallery, out_dir)`` is the one entry point the pipeline calls: it turns
the gallery's identities, tracklet intervals and crop files into the plain view records of
``reid_pipeline.report.site`` and lets that renderer write the static site (one card per
identity with crops from every camera it was seen in, first/last seen). Extending the report
means extending the views or the renderer; the pipeline does not change.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

from reid_pipeline.report.site import CropView, IdentityView, IntervalView, SiteOptions, write_site

log = logging.getLogger(__name__)


def identity_views(gallery: Any, crops_per_camera: int = 4) -> list[IdentityView]:
    """Build one ``IdentityView`` per identity that has at least one tracklet."""
    idents = [i for i in gallery.identities() if i.tracklets > 0]
    intervals: dict[int, list[IntervalView]] = defaultdict(list)
    for iv in gallery.intervals():
        intervals[iv.identity_id].append(IntervalView(iv.camera, iv.start, iv.end))
    crops: dict[int, dict[str, list[CropView]]] = defaultdict(lambda: defaultdict(list))
    for c in gallery.crops():
        if c.identity_id is None or c.path is None:
            continue
        crops[c.identity_id][c.camera].append(
            CropView(Path(c.path), c.camera, float(c.timestamp or 0.0)))
    views = []
    for i in idents:
        chosen: list[CropView] = []
        for cam in sorted(crops.get(i.id, {})):
            cs = crops[i.id][cam]
            if crops_per_camera > 0 and len(cs) > crops_per_camera:
                step = len(cs) / crops_per_camera  # spread over the identity's time in view
                cs = [cs[int(k * step)] for k in range(crops_per_camera)]
            chosen.extend(cs)
        views.append(IdentityView(
            id=i.id, name=i.name, first_seen=float(i.first_seen or 0.0),
            last_seen=float(i.last_seen or 0.0), sightings=i.sightings,
            cameras=list(i.cameras), crops=chosen,
            intervals=sorted(intervals.get(i.id, []), key=lambda v: v.start)))
    return views


def write_html_report(gallery: Any, out_dir: str | Path, crops_per_camera: int = 4,
                      videos: dict[str, Path] | None = None, title: str = "Identities") -> Path:
    """Write the report site into ``out_dir``; returns the path of its ``index.html``."""
    views = identity_views(gallery, crops_per_camera)
    opts = SiteOptions(title=title, crops_per_camera=max(1, crops_per_camera))
    index = write_site(views, out_dir, opts, videos=videos)
    log.info("HTML report: %s (%d identities)", index, len(views))
    return index
