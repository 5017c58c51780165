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

The renderer (``write_site``) takes plain view records (``IdentityView``), so it knows
nothing of SQL; ``gallery_views`` builds them from an open ``Gallery``'s read methods
(``identities``, ``tracklet_spans``, ``crops``) and ``build_report`` does both (what
``reid report`` calls).
"""

from __future__ import annotations

import datetime as _dt
import html
import logging
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from reid_pipeline.errors import OutputError

if TYPE_CHECKING:
    from reid_pipeline.gallery import Gallery

log = logging.getLogger(__name__)

MARKER = ".reid-report"  # written in the output folder; only such folders are cleaned on rebuild
EPOCH_MIN = 1e8  # timestamps above this are Unix times (1973+); below, seconds into a video


@dataclass
class CropView:
    """One crop picture of an identity."""

    path: Path  # the JPEG on disk
    camera: str
    timestamp: float
    video_time: float | None = None  # seconds into the camera's annotated video, if known


@dataclass
class IntervalView:
    """One tracklet of an identity: when it was in view of one camera."""

    camera: str
    start: float
    end: float
    video_time: float | None = None  # where ``start`` is in the annotated video


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


# ---------------------------------------------------------------- formatting helpers


def fmt_time(t: float) -> str:
    """Unix times as UTC date-times; small values (seconds into a video) as h:mm:ss.s."""
    if t >= EPOCH_MIN:
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    sign = "-" if t < 0 else ""
    t = abs(t)
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{sign}{int(h)}:{int(m):02d}:{s:04.1f}"


def esc(text: object) -> str:
    """``text`` escaped for HTML text and attribute values (quotes included)."""
    return html.escape(str(text), quote=True)


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


# ---------------------------------------------------------------- static assets

CSS = """
:root { --fg:#1d2330; --muted:#5b6577; --line:#d8dde6; --bg:#f6f7f9; --accent:#2c6bd6; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg);
       margin: 0; padding: 16px 24px; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 20px 0 8px; }
a { color: var(--accent); }
.meta { color: var(--muted); margin-bottom: 12px; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(220px, 1fr)); gap: 12px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px;
        display: flex; gap: 10px; text-decoration: none; color: inherit; }
.card img, .card .noimg { width: 64px; height: 128px; object-fit: cover; border-radius: 3px;
        background: #e9ecf1; flex: none; }
.card dl { margin: 0; font-size: 12px; } .card dt { color: var(--muted); }
.card dd { margin: 0 0 3px; }
.card .name { font-weight: 600; font-size: 14px; margin-bottom: 4px; }
.pager { margin: 16px 0; display: flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.pager a, .pager span { padding: 2px 8px; border: 1px solid var(--line); border-radius: 4px;
        background: #fff; text-decoration: none; }
.pager .cur { background: var(--accent); color: #fff; }
.camera { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
          margin-bottom: 12px; }
.timeline { position: relative; height: 14px; background: #eef1f5; border-radius: 7px;
            margin: 6px 0 10px; }
.timeline a, .timeline span { position: absolute; top: 2px; height: 10px; min-width: 4px;
            background: var(--accent); border-radius: 5px; }
.crops { display: flex; flex-wrap: wrap; gap: 8px; }
.crops figure { margin: 0; width: 72px; font-size: 11px; text-align: center; }
.crops img { width: 64px; height: 128px; object-fit: cover; background: #e9ecf1;
             border-radius: 3px; }
img[data-state=broken] { outline: 2px dashed #c0392b; }
video { max-width: 480px; width: 100%; margin-top: 6px; background: #000; }
"""

# Marks each picture as loaded or broken (a deleted crop shows as a dashed outline) and
# counts them on <body>, so a person or a test can tell at a glance that the page is whole.
JS = """
(function () {
  function mark() {
    var imgs = document.getElementsByTagName('img'), ok = 0, broken = 0;
    for (var i = 0; i < imgs.length; i++) {
      var good = imgs[i].complete && imgs[i].naturalWidth > 0;
      imgs[i].setAttribute('data-state', good ? 'ok' : 'broken');
      if (good) { ok++; } else { broken++; }
    }
    document.body.setAttribute('data-images-ok', ok);
    document.body.setAttribute('data-images-broken', broken);
  }
  window.addEventListener('load', mark);
})();
"""


def standalone_page(title: str, body: str) -> str:
    """A single page with the stylesheet and script inlined (e.g. a search result)."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{esc(title)}</title><style>{CSS}</style><script>{JS}</script>"
        f"</head>\n<body>\n{body}\n</body></html>\n"
    )


def _page(title: str, body: str, asset_prefix: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title>"
        f'<link rel="stylesheet" href="{asset_prefix}assets/report.css">'
        f'<script src="{asset_prefix}assets/report.js"></script>'
        f"</head>\n<body>\n{body}\n</body></html>\n"
    )


# ---------------------------------------------------------------- the writer


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

    def _img_src(self, crop: CropView, identity: int, page_dir: Path) -> str:
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

    def _video_href(self, camera: str, t: float | None, page_dir: Path) -> str | None:
        video = self.videos.get(camera)
        if video is None or t is None or not video.is_file():
            return None
        return f"{rel_href(video, page_dir)}#t={max(0.0, t):.2f}"

    # -- pages
    def write(self, identities: Iterable[IdentityView]) -> Path:
        """Write every page; returns the index page's path."""
        self._prepare()
        idents = sorted(identities, key=lambda i: (i.first_seen, i.id))
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
        cards = []
        for ident in idents:
            thumb = ident.thumbnail
            img = (
                f'<img src="{self._img_src(thumb, ident.id, self.out)}" alt="{esc(ident.label)}">'
                if thumb
                else '<div class="noimg"></div>'
            )
            cards.append(
                f'<a class="card" data-identity="{ident.id}" '
                f'href="identities/{ident.id}.html">{img}<div>'
                f'<div class="name">{esc(ident.label)}</div><dl>'
                f'<dt>cameras</dt><dd class="cameras">{esc(", ".join(ident.cameras))}</dd>'
                f"<dt>first seen</dt><dd>{esc(fmt_time(ident.first_seen))}</dd>"
                f"<dt>last seen</dt><dd>{esc(fmt_time(ident.last_seen))}</dd>"
                f'<dt>sightings</dt><dd class="sightings">{ident.sightings}</dd>'
                "</dl></div></a>"
            )
        body = (
            f"<h1>{esc(self.opt.title)}</h1>"
            f'<div class="meta" id="summary" data-total="{total}" data-page="{page}" '
            f'data-pages="{pages}">{total} identities'
            + (f" &middot; page {page} of {pages}" if pages > 1 else "")
            + "</div>"
            + _pager(page, pages)
            + '<div class="cards">'
            + "\n".join(cards)
            + "</div>"
            + _pager(page, pages)
        )
        return _page(self.opt.title, body, "")

    def _identity_page(self, ident: IdentityView) -> str:
        page_dir = self.out / "identities"
        span = max(ident.last_seen - ident.first_seen, 1e-6)
        sections = []
        for cam in ident.cameras:
            crops = sorted((c for c in ident.crops if c.camera == cam), key=lambda c: c.timestamp)
            ivs = sorted((i for i in ident.intervals if i.camera == cam), key=lambda i: i.start)
            marks = []
            for iv in ivs:
                left = 100.0 * (iv.start - ident.first_seen) / span
                width = max(0.5, 100.0 * (iv.end - iv.start) / span)
                tip = esc(f"{fmt_time(iv.start)} - {fmt_time(iv.end)}")
                href = self._video_href(cam, iv.video_time, page_dir)
                style = f"left:{min(left, 99.5):.2f}%;width:{min(width, 100 - left):.2f}%"
                marks.append(
                    f'<a href="{href}" title="{tip}" style="{style}"></a>'
                    if href
                    else f'<span title="{tip}" style="{style}"></span>'
                )
            figs = []
            for c in _spread(crops, self.opt.crops_per_camera):
                when = esc(fmt_time(c.timestamp))
                href = self._video_href(cam, c.video_time, page_dir)
                cap = f'<a href="{href}">{when}</a>' if href else when
                figs.append(
                    f'<figure><img src="{self._img_src(c, ident.id, page_dir)}" '
                    f'alt="{esc(cam)} {when}"><figcaption>{cap}</figcaption></figure>'
                )
            first_video = self._video_href(cam, ivs[0].video_time if ivs else None, page_dir)
            video = (
                f'<video controls preload="none" src="{first_video}"></video>'
                if first_video
                else ""
            )
            seen = f"{fmt_time(ivs[0].start)} &ndash; {fmt_time(ivs[-1].end)}" if ivs else ""
            sections.append(
                f'<section class="camera" data-camera="{esc(cam)}"><h2>{esc(cam)}</h2>'
                f'<div class="meta">{len(ivs)} tracklet(s) &middot; {seen}</div>'
                f'<div class="timeline">{"".join(marks)}</div>'
                f'<div class="crops">{"".join(figs)}</div>{video}</section>'
            )
        body = (
            f'<p><a href="../index.html">&larr; all identities</a></p>'
            f'<h1 data-identity="{ident.id}">{esc(ident.label)}</h1>'
            f'<div class="meta">first seen {esc(fmt_time(ident.first_seen))} &middot; '
            f"last seen {esc(fmt_time(ident.last_seen))} &middot; {ident.sightings} sightings "
            f"&middot; cameras: {esc(', '.join(ident.cameras))}</div>" + "".join(sections)
        )
        return _page(f"{self.opt.title}: {ident.label}", body, "../")


def _index_name(page: int) -> str:
    return "index.html" if page == 1 else f"index-{page}.html"


def _pager(page: int, pages: int) -> str:
    if pages <= 1:
        return ""
    parts = []
    if page > 1:
        parts.append(f'<a rel="prev" href="{_index_name(page - 1)}">&larr; prev</a>')
    for p in range(1, pages + 1):
        if p == page:
            parts.append(f'<span class="cur">{p}</span>')
        elif p in (1, pages) or abs(p - page) <= 2:
            parts.append(f'<a href="{_index_name(p)}">{p}</a>')
        elif abs(p - page) == 3:
            parts.append("<span>&hellip;</span>")
    if page < pages:
        parts.append(f'<a rel="next" href="{_index_name(page + 1)}">next &rarr;</a>')
    return '<nav class="pager">' + "".join(parts) + "</nav>"


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
    """How ``reid process`` names a camera's annotated video (``videos/<name>.mp4``)."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in camera) or "camera"


def find_videos(folder: str | Path | None, cameras: Iterable[str]) -> dict[str, Path]:
    """The annotated video of each camera that has one in ``folder``."""
    if not folder:
        return {}
    base = Path(folder)
    found = {}
    for cam in cameras:
        for ext in (".mp4", ".avi", ".mkv", ".webm"):
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
            IntervalView(t.camera, t.start, t.end, t.first_frame / rate if rate else None)
        )
    crops: dict[int, list[CropView]] = {}
    for c in gallery.crops():
        if c.identity_id is None or c.path is None:
            continue
        rate = fps.get(c.camera)
        crops.setdefault(c.identity_id, []).append(
            CropView(
                Path(c.path),
                c.camera,
                float(c.timestamp if c.timestamp is not None else 0.0),
                c.frame / rate if rate else None,
            )
        )
    return [
        IdentityView(
            id=i.id,
            name=i.name,
            first_seen=float(i.first_seen or 0.0),
            last_seen=float(i.last_seen or 0.0),
            sightings=i.sightings,
            cameras=list(i.cameras),
            crops=sorted(crops.get(i.id, []), key=lambda c: (c.camera, c.timestamp)),
            intervals=sorted(intervals.get(i.id, []), key=lambda v: v.start),
        )
        for i in summaries
    ]


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
