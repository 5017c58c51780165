"""The static identity report: an index of identities and one page per identity.

Why a static site: analysts open it from a shared folder or a USB stick, on a machine with no
server and often no network. So every link is relative, there are no external assets (CSS and
the small script are written beside the pages) and images point at the crop JPEGs that the
gallery keeps on disk.

By default the pages *link* to the gallery's crops instead of copying them: the report then
holds no second copy of the personal data, so deleting an identity from the gallery
(``reid gallery delete``) really erases its pictures, and the next ``reid report`` drops its
page. ``copy_crops=True`` makes a portable site (crops copied under ``<out>/crops``) for
hand-over; such copies are outside the gallery's erasure and retention.

The pages are rendered from the templates the operator console (``reid serve``) uses too
(``report/templates.py``: Jinja2 with autoescaping, the one escaping path for user-given
names); only the links differ (``StaticLinks`` here: relative files). The renderer
(``write_site``) takes plain view records (``IdentityView``), so it knows nothing of SQL;
``gallery_views`` builds them from an open ``Gallery``'s read methods (``identities``,
``tracklet_spans``, ``crops``), ``identity_view`` one of them, and ``build_report`` does
both (what ``reid report`` calls).
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from markupsafe import Markup, escape

from reid_pipeline.errors import OutputError
from reid_pipeline.report.templates import EPOCH_MIN, asset_text, fmt_time, render

if TYPE_CHECKING:
    from reid_pipeline.gallery import Gallery

__all__ = [
    "EPOCH_MIN",
    "MARKER",
    "VIDEO_EXTENSIONS",
    "CameraSection",
    "CropView",
    "IdentityView",
    "IntervalView",
    "SiteOptions",
    "SiteWriter",
    "StaticLinks",
    "build_report",
    "camera_file_name",
    "esc",
    "find_videos",
    "fmt_time",
    "gallery_views",
    "identity_sections",
    "identity_view",
    "rel_href",
    "standalone_page",
    "summary_view",
    "video_fps",
    "write_site",
]

log = logging.getLogger(__name__)

MARKER = ".reid-report"  # written in the output folder; only such folders are cleaned on rebuild
# annotated videos, in the order they are looked for (what browsers play first)
VIDEO_EXTENSIONS = (".webm", ".mp4", ".mkv", ".avi")


@dataclass
class CropView:
    """One crop picture of an identity."""

    path: Path  # the JPEG on disk
    camera: str
    timestamp: float
    video_time: float | None = None  # seconds into the camera's annotated video, if known
    crop_id: int | None = None  # the gallery's crop row (the console serves crops by id)


@dataclass
class IntervalView:
    """One tracklet of an identity: when it was in view of one camera."""

    camera: str
    start: float
    end: float
    video_time: float | None = None  # where ``start`` is in the annotated video
    tracklet_id: int | None = None


@dataclass
class IdentityView:
    """Everything the report shows about one identity."""

    id: int
    name: str | None
    first_seen: float
    last_seen: float
    sightings: int
    cameras: list[str] = field(default_factory=list)
    crops: list[CropView] = field(default_factory=list)
    intervals: list[IntervalView] = field(default_factory=list)
    flagged: bool = False

    @property
    def label(self) -> str:
        return f"#{self.id} {self.name}" if self.name else f"#{self.id}"

    @property
    def thumbnail(self) -> CropView | None:
        return self.crops[len(self.crops) // 2] if self.crops else None


@dataclass
class SiteOptions:
    """How the site is laid out (from the ``report`` config section)."""

    title: str = "Identities"
    page_size: int = 50  # identity cards per index page
    crops_per_camera: int = 24  # crops shown per camera on an identity page
    copy_crops: bool = False


# ---------------------------------------------------------------- helpers


def esc(text: object) -> str:
    """``text`` escaped for HTML text and attribute values (quotes included): the template
    engine's own escape, for the few callers that still assemble a fragment."""
    return str(escape(str(text)))


def rel_href(target: Path, page_dir: Path) -> str:
    """A relative, URL-quoted link from a page in ``page_dir`` to ``target`` (file:// safe)."""
    rel = os.path.relpath(os.path.abspath(target), os.path.abspath(page_dir))
    return quote(Path(rel).as_posix())


def _spread(items: Sequence[CropView], k: int) -> list[CropView]:
    """At most ``k`` items spread evenly over the sequence (first and last kept)."""
    n = len(items)
    if k <= 0:
        return []
    if n <= k:
        return list(items)
    if k == 1:
        return [items[n // 2]]
    return [items[round(i * (n - 1) / (k - 1))] for i in range(k)]


CSS = asset_text("report.css")
JS = asset_text("report.js")


class _InlineLinks:
    """Links of a standalone page: assets inlined, nothing else linked."""

    console = False

    def asset(self, name: str) -> str:
        return name

    def index(self, page: int) -> str:
        return "#"

    def identity(self, identity: int) -> str:
        return "#"

    def crop(self, crop: Any) -> str:
        return "#"

    def video(self, camera: str, t: float | None) -> str | None:
        return None


def standalone_page(title: str, body: str) -> str:
    """A single page with the stylesheet and script inlined (e.g. a search result);
    ``body`` is HTML already escaped by its maker."""
    return render(
        "standalone.html",
        title=title,
        body=Markup(body),
        links=_InlineLinks(),
        inline_assets=True,
        inline_css=CSS,
        inline_js=JS,
    )


# ---------------------------------------------------------------- identity page sections


@dataclass
class CameraSection:
    """One camera of an identity page: timeline marks, crops, the annotated video."""

    camera: str
    intervals: list[IntervalView]
    marks: list[dict[str, Any]]
    figs: list[dict[str, Any]]
    video: str | None
    first: float | None
    last: float | None


def identity_sections(
    ident: IdentityView, links: Any, crops_per_camera: int
) -> list[CameraSection]:
    """The per-camera sections of ``ident``'s page, links made by ``links``."""
    span = max(ident.last_seen - ident.first_seen, 1e-6)
    out = []
    for cam in ident.cameras:
        crops = sorted((c for c in ident.crops if c.camera == cam), key=lambda c: c.timestamp)
        ivs = sorted((i for i in ident.intervals if i.camera == cam), key=lambda i: i.start)
        marks = []
        for iv in ivs:
            left = 100.0 * (iv.start - ident.first_seen) / span
            width = max(0.5, 100.0 * (iv.end - iv.start) / span)
            marks.append(
                {
                    "href": links.video(cam, iv.video_time),
                    "seek": _seek(iv.video_time),
                    "tip": f"{fmt_time(iv.start)} - {fmt_time(iv.end)}",
                    "style": f"left:{min(left, 99.5):.2f}%;width:{min(width, 100 - left):.2f}%",
                }
            )
        figs = [
            {
                "src": links.crop(c),
                "when": fmt_time(c.timestamp),
                "href": links.video(cam, c.video_time),
                "seek": _seek(c.video_time),
            }
            for c in _spread(crops, crops_per_camera)
        ]
        out.append(
            CameraSection(
                camera=cam,
                intervals=ivs,
                marks=marks,
                figs=figs,
                video=links.video(cam, ivs[0].video_time if ivs else None),
                first=ivs[0].start if ivs else None,
                last=ivs[-1].end if ivs else None,
            )
        )
    return out


def _seek(t: float | None) -> str:
    return "" if t is None else f"{max(0.0, t):.2f}"


# ---------------------------------------------------------------- the writer


class StaticLinks:
    """Links of the static site: relative files, from the page's own folder."""

    console = False

    def __init__(self, writer: SiteWriter, page_dir: Path) -> None:
        self.w = writer
        self.page_dir = page_dir
        self.prefix = "" if page_dir == writer.out else "../"

    def asset(self, name: str) -> str:
        return f"{self.prefix}assets/{name}"

    def index(self, page: int) -> str:
        return self.prefix + _index_name(page)

    def identity(self, identity: int) -> str:
        return f"{self.prefix}identities/{identity}.html"

    def crop(self, crop: CropView) -> str:
        return self.w.img_src(crop, self.w.owner.get(Path(crop.path), 0), self.page_dir)

    def video(self, camera: str, t: float | None) -> str | None:
        return self.w.video_href(camera, t, self.page_dir)


class SiteWriter:
    """Writes the site for a set of identities into ``out_dir``."""

    def __init__(
        self,
        out_dir: str | Path,
        options: SiteOptions | None = None,
        videos: dict[str, Path] | None = None,
    ) -> None:
        self.out = Path(out_dir)
        self.opt = options or SiteOptions()
        self.videos = {k: Path(v) for k, v in (videos or {}).items()}
        self._copied: dict[Path, Path] = {}
        self.owner: dict[Path, int] = {}  # crop file -> its identity (copies are filed by it)

    # -- file system
    def _prepare(self) -> None:
        """Create the folder; on a rebuild remove only what an earlier build wrote."""
        try:
            if self.out.exists() and any(self.out.iterdir()) and not (self.out / MARKER).exists():
                raise OutputError(
                    f"report folder {str(self.out)!r} exists and is not a report; "
                    "choose an empty or new folder"
                )
            if (self.out / MARKER).exists():
                for sub in ("identities", "assets", "crops"):
                    shutil.rmtree(self.out / sub, ignore_errors=True)
                for p in self.out.glob("index*.html"):
                    p.unlink()
            (self.out / "identities").mkdir(parents=True, exist_ok=True)
            (self.out / "assets").mkdir(exist_ok=True)
            (self.out / MARKER).write_text("written by `reid report`; safe to delete\n")
            (self.out / "assets" / "report.css").write_text(CSS)
            (self.out / "assets" / "report.js").write_text(JS)
        except OSError as e:
            raise OutputError(f"report folder {str(self.out)!r}: cannot write ({e})") from None

    def img_src(self, crop: CropView, identity: int, page_dir: Path) -> str:
        src = Path(crop.path)
        if self.opt.copy_crops:
            dst = self._copied.get(src)
            if dst is None:
                dst = self.out / "crops" / str(identity) / f"{len(self._copied):06d}{src.suffix}"
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_file():
                    shutil.copyfile(src, dst)
                self._copied[src] = dst
            src = dst
        return rel_href(src, page_dir)

    def video_href(self, camera: str, t: float | None, page_dir: Path) -> str | None:
        video = self.videos.get(camera)
        if video is None or t is None or not video.is_file():
            return None
        return f"{rel_href(video, page_dir)}#t={max(0.0, t):.2f}"

    # -- pages
    def write(self, identities: Iterable[IdentityView]) -> Path:
        """Write every page; returns the index page's path."""
        self._prepare()
        idents = sorted(identities, key=lambda i: (i.first_seen, i.id))
        self.owner = {Path(c.path): i.id for i in idents for c in i.crops}
        size = self.opt.page_size
        pages = max(1, math.ceil(len(idents) / size))
        for p in range(pages):
            chunk = idents[p * size : (p + 1) * size]
            self._write(
                self.out / _index_name(p + 1), self._index_page(chunk, p + 1, pages, len(idents))
            )
        for ident in idents:
            self._write(self.out / "identities" / f"{ident.id}.html", self._identity_page(ident))
        log.info("report: %d identities on %d index pages", len(idents), pages)
        return self.out / "index.html"

    def _write(self, path: Path, text: str) -> None:
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as e:
            raise OutputError(f"report page {str(path)!r}: cannot write ({e})") from None

    def _index_page(self, idents: list[IdentityView], page: int, pages: int, total: int) -> str:
        return render(
            "index.html",
            title=self.opt.title,
            heading=self.opt.title,
            links=StaticLinks(self, self.out),
            identities=idents,
            page=page,
            pages=pages,
            total=total,
        )

    def _identity_page(self, ident: IdentityView) -> str:
        links = StaticLinks(self, self.out / "identities")
        return render(
            "identity.html",
            title=f"{self.opt.title}: {ident.label}",
            links=links,
            ident=ident,
            sections=identity_sections(ident, links, self.opt.crops_per_camera),
        )


def _index_name(page: int) -> str:
    return "index.html" if page == 1 else f"index-{page}.html"


def write_site(
    identities: Iterable[IdentityView],
    out_dir: str | Path,
    options: SiteOptions | None = None,
    videos: dict[str, Path] | None = None,
) -> Path:
    """Write the static report for ``identities`` into ``out_dir``; returns index.html."""
    return SiteWriter(out_dir, options, videos).write(identities)


# ---------------------------------------------------------------- from a gallery


def camera_file_name(camera: str) -> str:
    """How ``reid process`` names a camera's annotated video (``videos/<name>.webm``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in camera) or "camera"


def find_videos(folder: str | Path | None, cameras: Iterable[str]) -> dict[str, Path]:
    """The annotated video of each camera that has one in ``folder``."""
    if not folder:
        return {}
    base = Path(folder)
    found = {}
    for cam in cameras:
        for ext in VIDEO_EXTENSIONS:
            p = base / f"{camera_file_name(cam)}{ext}"
            if p.is_file():
                found[cam] = p
                break
    return found


def video_fps(path: Path) -> float | None:
    """Frames per second of a video file (to turn frame numbers into ``#t=`` seconds)."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if cap.isOpened() else 0.0
    finally:
        cap.release()
    return fps if fps > 0 else None


def summary_view(summary: Any, crops: Sequence[CropView] = ()) -> IdentityView:
    """An ``IdentityView`` of a gallery ``IdentitySummary`` (crops: for its thumbnail)."""
    return IdentityView(
        id=summary.id,
        name=summary.name,
        first_seen=float(summary.first_seen or 0.0),
        last_seen=float(summary.last_seen or 0.0),
        sightings=summary.sightings,
        cameras=list(summary.cameras),
        crops=list(crops),
        flagged=bool(summary.flagged),
    )


def _crop_view(c: Any, rate: float | None) -> CropView:
    return CropView(
        Path(c.path),
        c.camera,
        float(c.timestamp if c.timestamp is not None else 0.0),
        c.frame / rate if rate else None,
        c.crop_id,
    )


def identity_view(
    gallery: Gallery, summary: Any, fps: dict[str, float | None] | None = None
) -> IdentityView:
    """The full ``IdentityView`` (crops, tracklet intervals) of one identity's summary;
    ``fps``: each camera's annotated-video frame rate, for the video times."""
    rates = fps or {}
    view = summary_view(
        summary,
        sorted(
            (
                _crop_view(c, rates.get(c.camera))
                for c in gallery.crops(identity_id=summary.id)
                if c.path is not None
            ),
            key=lambda c: (c.camera, c.timestamp),
        ),
    )
    view.intervals = [
        IntervalView(
            t.camera,
            t.start,
            t.end,
            t.first_frame / rate if (rate := rates.get(t.camera)) else None,
            t.tracklet_id,
        )
        for t in gallery.tracklet_spans(identity_id=summary.id)
    ]
    view.intervals.sort(key=lambda v: v.start)
    return view


def gallery_views(gallery: Gallery, videos: dict[str, Path] | None = None) -> list[IdentityView]:
    """One ``IdentityView`` per identity with at least one tracklet, read from ``gallery``.

    Video times come from frame numbers and the annotated video's frame rate: the annotated
    video has every frame of its source, so frame ``n`` plays at ``n / fps``.
    """
    fps = {cam: video_fps(p) for cam, p in (videos or {}).items()}
    summaries = [i for i in gallery.identities() if i.tracklets > 0]
    intervals: dict[int, list[IntervalView]] = {}
    for t in gallery.tracklet_spans():
        rate = fps.get(t.camera)
        intervals.setdefault(t.identity_id, []).append(
            IntervalView(
                t.camera, t.start, t.end, t.first_frame / rate if rate else None, t.tracklet_id
            )
        )
    crops: dict[int, list[CropView]] = {}
    for c in gallery.crops():
        if c.identity_id is None or c.path is None:
            continue
        crops.setdefault(c.identity_id, []).append(_crop_view(c, fps.get(c.camera)))
    views = []
    for i in summaries:
        v = summary_view(i, sorted(crops.get(i.id, []), key=lambda c: (c.camera, c.timestamp)))
        v.intervals = sorted(intervals.get(i.id, []), key=lambda v: v.start)
        views.append(v)
    return views


def build_report(
    gallery: Gallery,
    out_dir: str | Path,
    options: SiteOptions | None = None,
    videos_dir: str | Path | None = None,
) -> Path:
    """Read ``gallery`` and write its static report into ``out_dir``; returns index.html."""
    cams = {c for i in gallery.identities() for c in i.cameras}
    videos = find_videos(videos_dir, cams)
    return write_site(gallery_views(gallery, videos), out_dir, options, videos)
