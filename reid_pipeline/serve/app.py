"""The operator console: a FastAPI app over one open gallery (and, beside ``reid stream``,
its live loop).

``create_app(gallery, cfg, live=None)`` builds it. The API (schema at ``/openapi.json``):

==========================================  ===================================================
``GET  /api/identities``                    one page of identities (``offset``, ``limit``,
                                            ``camera``, ``since``, ``until``, ``flagged``)
``GET  /api/identities/{id}``               one identity: per camera its sightings, tracklets,
                                            crops and the annotated video's times
``POST /api/identities/{id}/rename``        ``{"name": ...}`` (``GalleryManager.rename``)
``POST /api/identities/{id}/merge``         ``{"other": id, "force": false}``
``POST /api/identities/{id}/split``         ``{"tracklets": [...]}`` -> the new identity
``DELETE /api/identities/{id}``             erase the person (rows and crop files)
``POST /api/purge``                         ``{"older_than": "30d"}``
``GET/PUT/DELETE /api/watchlist[/{id}]``    the watch list (flagged identities)
``POST /api/search``                        multipart ``photo`` (+ ``top``, ``mode``): the
                                            ranked identities (``search_photo``)
``GET  /api/cameras``                       cameras with their live state
``GET  /api/events``                        server-sent events: what ``reid stream`` prints
``GET  /api/events/recent``                 the last events as JSON
``GET  /media/crops/{crop_id}``             a crop JPEG (gallery rows only)
``GET  /media/videos/{file}``               an annotated video (range requests: seeking)
``GET  /media/live/{camera}/stream.mjpeg``  the camera's annotated frames (MJPEG)
``GET  /media/live/{camera}/frame.jpg``     its newest annotated frame
==========================================  ===================================================

Pages (rendered from the report's templates, ``report/templates.py``): ``/live`` (tiles and
alerts), ``/identities`` and ``/identities/{id}`` (with rename, watch list, merge, split
and delete), ``/search``, ``/login``. Access rules: ``serve/auth.py``; file rules:
``serve/media.py``; the live side: ``serve/live.py``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from markupsafe import Markup
from pydantic import BaseModel, Field

from reid_pipeline import __version__
from reid_pipeline.errors import (
    DatabaseError,
    InputError,
    NotFoundError,
    ReidError,
)
from reid_pipeline.report.site import (
    CropView,
    IdentityView,
    identity_sections,
    identity_view,
    summary_view,
    video_fps,
)
from reid_pipeline.report.templates import asset_names, asset_text, render
from reid_pipeline.serve.auth import COOKIE, Auth, check_binding, resolve_token, safe_next
from reid_pipeline.serve.media import VIDEO_TYPES, VideoFolder, crop_file
from reid_pipeline.serve.search import PhotoSearch, UnsupportedPhoto
from reid_pipeline.utils import redact_url

if TYPE_CHECKING:
    from reid_pipeline.config import Config
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.serve.live import LiveHub

log = logging.getLogger(__name__)

T = TypeVar("T")
MAX_ID = 2**31 - 1  # database integer ids
IdPath = Annotated[int, PathParam(ge=1, le=MAX_ID)]
STATIC = Path(__file__).resolve().parent / "static"
CONSOLE_ASSETS = {"console.css": "text/css", "console.js": "text/javascript"}
NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"  # names and filters: no control characters (NUL)
SMALL_BODY = 64 * 1024  # every request body but a photo upload
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' data:; media-src 'self'; "
        b"style-src 'self' 'unsafe-inline'; script-src 'self'; object-src 'none'; "
        b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


# ---------------------------------------------------------------- response models


class IdentityOut(BaseModel):
    id: int
    name: str | None
    flagged: bool
    cameras: list[str]
    first_seen: float | None
    last_seen: float | None
    sightings: int
    tracklets: int
    thumbnail: str | None = Field(description="URL of a crop picture")
    url: str = Field(description="the identity's page")


class IdentityPageOut(BaseModel):
    total: int
    offset: int
    limit: int
    items: list[IdentityOut]


class CropOut(BaseModel):
    crop_id: int
    url: str
    timestamp: float
    video_time: float | None


class IntervalOut(BaseModel):
    tracklet_id: int | None
    start: float
    end: float
    video_time: float | None


class CameraSightingsOut(BaseModel):
    camera: str
    first_seen: float | None
    last_seen: float | None
    sightings: int
    tracklets: int
    video: str | None = Field(description="the annotated video, if the camera has one")
    intervals: list[IntervalOut]
    crops: list[CropOut]


class IdentityDetailOut(IdentityOut):
    per_camera: list[CameraSightingsOut]


class ResultOut(BaseModel):
    identity: int | None
    rows: dict[str, int]
    files: int


class RenameIn(BaseModel):
    name: str | None = Field(default=None, max_length=200, pattern=NO_CONTROL)


class MergeIn(BaseModel):
    other: int = Field(ge=1, le=MAX_ID)
    force: bool = False


class SplitIn(BaseModel):
    tracklets: list[Annotated[int, Field(ge=1, le=MAX_ID)]] = Field(min_length=1, max_length=10_000)


class PurgeIn(BaseModel):
    older_than: str = Field(pattern=r"^[0-9]{1,6}(\.[0-9]{1,3})?[smhdw]?$", examples=["30d"])


class WatchListOut(BaseModel):
    ids: list[int]


class SearchCameraOut(BaseModel):
    camera: str
    first_seen: float
    last_seen: float
    sightings: int
    tracklets: int


class SearchHitOut(BaseModel):
    rank: int
    identity: int
    name: str | None
    probability: float
    cameras: list[SearchCameraOut]
    thumbnail: str | None
    url: str


class SearchOut(BaseModel):
    mode: str
    box: list[int] | None
    model_version: str
    scored: int
    query: str = Field(description="the person searched for, as a data: URL")
    hits: list[SearchHitOut]


class CameraOut(BaseModel):
    name: str
    live: bool
    state: str
    fps: float | None = None
    fps_done: float | None = None
    dropped: int | None = None
    reconnects: int | None = None
    last_error: str | None = None
    last_frame: float | None = None
    tile_frames_sent: int | None = None
    tile_frames_encoded: int | None = None
    stream: str | None = Field(default=None, description="MJPEG of annotated frames")
    frame: str | None = Field(default=None, description="the newest annotated frame")
    video: str | None = Field(default=None, description="the annotated video, if any")


class EventOut(BaseModel):
    id: int
    event: dict[str, Any]


class LoginRequired(Exception):
    """A page asked for without the token: the browser goes to the login page."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


# ---------------------------------------------------------------- the console's state


class Console:
    """What the routes share: the gallery, config, live hub, search and access check."""

    def __init__(
        self,
        gallery: Gallery,
        cfg: Config,
        live: LiveHub | None,
        search: PhotoSearch,
        auth: Auth,
    ) -> None:
        self.gallery = gallery
        self.cfg = cfg
        self.scfg = cfg.serve
        self.live = live
        self.searcher = search
        self.auth = auth
        self.videos = VideoFolder(_videos_dir(gallery, cfg))
        self._fps: dict[Path, tuple[float, float | None]] = {}
        self._write_lock = threading.Lock()

    def write(self, fn: Callable[[], T]) -> T:
        """Run a gallery write: in the live loop's thread beside ``reid stream``."""
        if self.live is not None:
            return self.live.run_write(fn)
        with self._write_lock:
            return fn()

    def manager(self) -> Any:
        from reid_pipeline.gallery.manage import GalleryManager

        return GalleryManager(
            self.gallery, exemplars=self.cfg.match.exemplars, embed=self.searcher.embed
        )

    def video_of(self, camera: str) -> Path | None:
        return self.videos.for_camera(camera)

    def fps_of(self, video: Path) -> float | None:
        mtime = video.stat().st_mtime
        got = self._fps.get(video)
        if got is None or got[0] != mtime:
            got = (mtime, video_fps(video))
            self._fps[video] = got
        return got[1]

    def camera_fps(self, cameras: list[str]) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for cam in cameras:
            v = self.video_of(cam)
            out[cam] = self.fps_of(v) if v is not None else None
        return out

    def thumbnails(self, ids: list[int]) -> dict[int, CropView]:
        """The middle crop of each identity (what the report's cards show)."""
        by: dict[int, list[CropView]] = {}
        for c in self.gallery.crops(identity_ids=ids):
            if c.identity_id is None:
                continue
            by.setdefault(c.identity_id, []).append(
                CropView(
                    Path(c.relpath),
                    c.camera,
                    float(c.timestamp or 0.0),
                    None,
                    c.crop_id,
                )
            )
        out = {}
        for iid, crops in by.items():
            crops.sort(key=lambda c: (c.camera, c.timestamp))
            out[iid] = crops[len(crops) // 2]
        return out


def _videos_dir(gallery: Gallery, cfg: Config) -> Path | None:
    if cfg.serve.videos:
        return Path(cfg.serve.videos).expanduser()
    if gallery.sqlite_file is not None:
        return Path(gallery.sqlite_file).parent / "videos"
    return None


class ConsoleLinks:
    """Links of the console's pages (server URLs)."""

    console = True

    def __init__(self, c: Console, query: dict[str, str] | None = None) -> None:
        self.c = c
        self.query = {k: v for k, v in (query or {}).items() if v}

    def asset(self, name: str) -> str:
        return f"/assets/{name}"

    def index(self, page: int) -> str:
        q = {**self.query, "page": str(page)} if page > 1 else dict(self.query)
        return "/identities" + (f"?{urlencode(q)}" if q else "")

    def identity(self, identity: int) -> str:
        return f"/identities/{int(identity)}"

    def crop(self, crop: CropView) -> str:
        return crop_url(crop.crop_id)

    def video(self, camera: str, t: float | None) -> str | None:
        v = self.c.video_of(camera)
        if v is None or t is None:
            return None
        return f"{video_url(v)}#t={max(0.0, t):.2f}"


def crop_url(crop_id: int | None) -> str:
    return f"/media/crops/{int(crop_id)}" if crop_id is not None else ""


def video_url(path: Path) -> str:
    return f"/media/videos/{quote(path.name)}"


def _identity_out(s: Any, thumb: CropView | None) -> IdentityOut:
    return IdentityOut(
        id=s.id,
        name=s.name,
        flagged=bool(s.flagged),
        cameras=list(s.cameras),
        first_seen=s.first_seen,
        last_seen=s.last_seen,
        sightings=s.sightings,
        tracklets=s.tracklets,
        thumbnail=crop_url(thumb.crop_id) if thumb else None,
        url=f"/identities/{s.id}",
    )


def _result_out(r: Any) -> ResultOut:
    return ResultOut(identity=r.identity, rows=dict(r.rows), files=int(r.files))


def _utc_local(text: str | None) -> float | None:
    """A page's ``datetime-local`` value, read as UTC (the times the pages show)."""
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc).timestamp()
    except ValueError:
        raise InputError(f"time {text!r}: expected YYYY-MM-DDTHH:MM") from None


# ---------------------------------------------------------------- ASGI middleware


class Guard:
    """Body limits (413 before the app reads a byte too many) and security headers."""

    def __init__(self, app: Any, upload_limit: int) -> None:
        self.app = app
        self.upload_limit = upload_limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        limit = self.upload_limit if path in ("/api/search", "/search") else SMALL_BODY
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_big = int(length) > limit
            except ValueError:
                too_big = True
            if too_big:
                await _send_413(send, limit)
                return
        seen = 0
        refused = False

        async def limited() -> Any:
            nonlocal seen, refused
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    refused = True
                    return {"type": "http.disconnect"}
            return msg

        started = False

        async def with_headers(msg: Any) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
                msg = dict(msg)
                msg["headers"] = list(msg.get("headers", [])) + SECURITY_HEADERS
            await send(msg)

        try:
            await self.app(scope, limited, with_headers)
        except Exception:
            if refused and not started:
                await _send_413(send, limit)
                return
            raise
        if refused and not started:
            await _send_413(send, limit)


async def _send_413(send: Any, limit: int) -> None:
    body = json.dumps({"detail": f"request body larger than {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", b"application/json"), *SECURITY_HEADERS],
        }
    )
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------- the app


def create_app(
    gallery: Gallery,
    cfg: Config,
    live: LiveHub | None = None,
    *,
    search: PhotoSearch | None = None,
) -> FastAPI:
    """The console over ``gallery`` (open; the caller closes it) with ``cfg.serve``'s rules;
    ``live``: the hub of a running ``reid stream`` (tiles, events, camera states)."""
    token = resolve_token(cfg.serve)
    check_binding(cfg.serve.host, token)
    auth = Auth(token)
    c = Console(gallery, cfg, live, search or PhotoSearch(gallery, cfg), auth)
    app = FastAPI(
        title="reid operator console",
        version=__version__,
        docs_url=None,  # the interactive docs load scripts from a CDN: not here
        redoc_url=None,
        description="Identities, search by photo, watch list, management and live events "
        "of a reid gallery. Off the loopback interface every request needs the access "
        "token (Authorization: Bearer, or the console's session cookie).",
    )
    app.state.console = c

    def need_token(request: Request) -> None:
        if not auth.allowed(request):
            raise HTTPException(
                401, "access token required", headers={"WWW-Authenticate": "Bearer"}
            )

    def need_login(request: Request) -> None:
        if not auth.allowed(request):
            if request.method != "GET":  # a form post without the token: no redirect
                raise HTTPException(401, "access token required")
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target)

    api = APIRouter(prefix="/api", dependencies=[Depends(need_token)])
    media = APIRouter(prefix="/media", dependencies=[Depends(need_token)])
    pages = APIRouter(dependencies=[Depends(need_login)], include_in_schema=False)

    # -- errors ----------------------------------------------------------------------------
    @app.exception_handler(ReidError)
    async def reid_error(request: Request, exc: ReidError) -> Response:
        status = 400
        if isinstance(exc, NotFoundError):
            status = 404
        elif isinstance(exc, UnsupportedPhoto):
            status = 415
        elif isinstance(exc, DatabaseError):
            status = 503
        msg = redact_url(str(exc))
        if status >= 500:
            log.warning("console: %s", msg)
        return JSONResponse({"detail": msg}, status_code=status)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?{urlencode({'next': exc.target})}", status_code=303)

    # -- identities --------------------------------------------------------------------------
    @api.get("/identities", response_model=IdentityPageOut, tags=["identities"])
    def list_identities(
        offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        camera: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL)] = None,
        since: Annotated[float | None, Query(ge=-1e12, le=1e12)] = None,
        until: Annotated[float | None, Query(ge=-1e12, le=1e12)] = None,
        flagged: bool | None = None,
    ) -> IdentityPageOut:
        """Identities seen (in ``camera``, between ``since`` and ``until``: seconds, Unix
        time for live cameras), most recently seen first."""
        total, items = c.gallery.identity_page(
            offset, limit, camera=camera, since=since, until=until, flagged=flagged
        )
        thumbs = c.thumbnails([i.id for i in items])
        return IdentityPageOut(
            total=total,
            offset=offset,
            limit=limit,
            items=[_identity_out(i, thumbs.get(i.id)) for i in items],
        )

    def summary(identity: int) -> Any:
        _, found = c.gallery.identity_page(0, 1, ids=[identity])
        if not found:
            raise NotFoundError(f"identity {identity} does not exist (or was never seen)")
        return found[0]

    def full_view(identity: int) -> IdentityView:
        s = summary(identity)
        return identity_view(c.gallery, s, c.camera_fps(list(s.cameras)))

    @api.get("/identities/{identity}", response_model=IdentityDetailOut, tags=["identities"])
    def get_identity(identity: IdPath) -> IdentityDetailOut:
        """One identity: per camera its time span, sightings, tracklets and crops, with
        where each is in the camera's annotated video."""
        s = summary(identity)
        view = identity_view(c.gallery, s, c.camera_fps(list(s.cameras)))
        presence = {p.camera: p for p in c.gallery.camera_presence([identity])}
        per = []
        for cam in view.cameras:
            p = presence.get(cam)
            v = c.video_of(cam)
            per.append(
                CameraSightingsOut(
                    camera=cam,
                    first_seen=p.first_seen if p else None,
                    last_seen=p.last_seen if p else None,
                    sightings=p.sightings if p else 0,
                    tracklets=p.tracklets if p else 0,
                    video=video_url(v) if v is not None else None,
                    intervals=[
                        IntervalOut(
                            tracklet_id=i.tracklet_id,
                            start=i.start,
                            end=i.end,
                            video_time=i.video_time,
                        )
                        for i in view.intervals
                        if i.camera == cam
                    ],
                    crops=[
                        CropOut(
                            crop_id=int(k.crop_id or 0),
                            url=crop_url(k.crop_id),
                            timestamp=k.timestamp,
                            video_time=k.video_time,
                        )
                        for k in view.crops
                        if k.camera == cam
                    ],
                )
            )
        thumb = view.thumbnail
        base = _identity_out(s, thumb)
        return IdentityDetailOut(**base.model_dump(), per_camera=per)

    @api.post("/identities/{identity}/rename", response_model=ResultOut, tags=["manage"])
    def rename(identity: IdPath, body: RenameIn) -> ResultOut:
        """Give the identity a name (empty or null clears it)."""
        return _result_out(c.write(lambda: c.manager().rename(identity, body.name)))

    @api.post("/identities/{identity}/merge", response_model=ResultOut, tags=["manage"])
    def merge(identity: IdPath, body: MergeIn) -> ResultOut:
        """Move everything of ``other`` into this identity and delete ``other`` (refused
        when both were in one camera at once, unless ``force``)."""
        return _result_out(
            c.write(lambda: c.manager().merge(identity, body.other, force=body.force))
        )

    @api.post("/identities/{identity}/split", response_model=ResultOut, tags=["manage"])
    def split(identity: IdPath, body: SplitIn) -> ResultOut:
        """Move these tracklets of the identity into a new identity (``identity`` of the
        result)."""
        return _result_out(c.write(lambda: c.manager().split(identity, body.tracklets)))

    @api.delete("/identities/{identity}", response_model=ResultOut, tags=["manage"])
    def delete(identity: IdPath) -> ResultOut:
        """Erase the person completely: every row about them and their crop files."""
        return _result_out(c.write(lambda: c.manager().delete(identity)))

    @api.post("/purge", response_model=ResultOut, tags=["manage"])
    def purge(body: PurgeIn) -> ResultOut:
        """Erase what was stored more than ``older_than`` ago (``30d``, ``12h``, ``2w``)."""
        from reid_pipeline.gallery.manage import parse_age

        age = parse_age(body.older_than)
        try:
            return _result_out(c.write(lambda: c.manager().purge(age)))
        except (OverflowError, ValueError):
            raise InputError(f"age {body.older_than!r}: too long ago") from None

    # -- watch list ------------------------------------------------------------------------
    @api.get("/watchlist", response_model=WatchListOut, tags=["watch list"])
    def watchlist() -> WatchListOut:
        """Identities on the watch list (their sightings raise alerts)."""
        return WatchListOut(ids=sorted(c.gallery.identity_ids(flagged=True)))

    @api.put("/watchlist/{identity}", response_model=WatchListOut, tags=["watch list"])
    def watch(identity: IdPath) -> WatchListOut:
        c.write(lambda: c.gallery.set_identity(identity, flagged=True))
        log.info("identity %d put on the watch list", identity)
        return watchlist()

    @api.delete("/watchlist/{identity}", response_model=WatchListOut, tags=["watch list"])
    def unwatch(identity: IdPath) -> WatchListOut:
        c.write(lambda: c.gallery.set_identity(identity, flagged=False))
        log.info("identity %d taken off the watch list", identity)
        return watchlist()

    # -- search ----------------------------------------------------------------------------
    def run_search(data: bytes, top: int, mode: str) -> tuple[Any, dict[int, CropView]]:
        res = c.searcher.search(data, top, mode)
        thumbs = c.thumbnails([h.identity for h in res.hits])
        return res, thumbs

    @api.post("/search", response_model=SearchOut, tags=["search"])
    def search_api(
        photo: Annotated[bytes, File(description="a camera still or a crop of one person")],
        top: Annotated[int, Form(ge=1, le=100)] = 10,
        mode: Annotated[Literal["auto", "frame", "crop"], Form()] = "auto",
    ) -> SearchOut:
        """Who is the person in this photo: identities by probability, and where and when
        each was seen (the same code as ``reid search``)."""
        res, thumbs = run_search(photo, top, mode)
        return SearchOut(
            mode=res.mode,
            box=list(res.box) if res.box else None,
            model_version=res.model_version,
            scored=res.scored,
            query=_data_url(res.crop),
            hits=[
                SearchHitOut(
                    rank=h.rank,
                    identity=h.identity,
                    name=h.name,
                    probability=h.probability,
                    cameras=[SearchCameraOut(**vars(k)) for k in h.cameras],
                    thumbnail=crop_url(t.crop_id) if (t := thumbs.get(h.identity)) else None,
                    url=f"/identities/{h.identity}",
                )
                for h in res.hits
            ],
        )

    # -- cameras and events ------------------------------------------------------------------
    @api.get("/cameras", response_model=list[CameraOut], tags=["live"])
    def cameras() -> list[CameraOut]:
        """Every camera: live ones (beside ``reid stream``) with their connection state,
        rates and tile URLs; the gallery's other cameras as recorded."""
        out = []
        seen = set()
        if c.live is not None:
            for st in c.live.camera_states():
                name = st["name"]
                seen.add(name)
                out.append(
                    CameraOut(
                        name=name,
                        live=True,
                        state=st["state"],
                        fps=st["fps"],
                        fps_done=st["fps_done"],
                        dropped=st["dropped"],
                        reconnects=st["reconnects"],
                        last_error=redact_url(st["last_error"]) or None,
                        last_frame=st["last_frame"],
                        tile_frames_sent=st["tile_frames_sent"],
                        tile_frames_encoded=st["tile_frames_encoded"],
                        stream=_live_url(name, "stream.mjpeg"),
                        frame=_live_url(name, "frame.jpg"),
                    )
                )
        for name in c.gallery.camera_names():
            if name in seen:
                continue
            v = c.video_of(name)
            out.append(
                CameraOut(
                    name=name,
                    live=False,
                    state="recorded",
                    video=video_url(v) if v is not None else None,
                )
            )
        return out

    @api.get("/events/recent", response_model=list[EventOut], tags=["live"])
    def recent_events(n: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[EventOut]:
        """The last ``n`` events of the live stream (none without one)."""
        if c.live is None:
            return []
        return [EventOut(id=s, event=d) for s, d in c.live.feed.recent(n)]

    @api.get(
        "/events",
        tags=["live"],
        response_class=StreamingResponse,
        responses={200: {"content": {"text/event-stream": {}}}},
    )
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: one ``stream`` event per line ``reid stream`` prints
        (JSON: camera, identity, name, status, kind, alert, track, captured, latency_s).
        A reconnecting client sends ``Last-Event-ID`` and gets what it missed (of the
        last ``serve.events_kept``)."""
        try:
            start = int(request.headers.get("last-event-id", ""))
        except ValueError:
            start = c.live.feed.last if c.live is not None else 0
        return StreamingResponse(
            _sse(c, request, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    # -- media -------------------------------------------------------------------------------
    @media.get("/crops/{crop_id}", tags=["media"], response_class=FileResponse)
    def crop(crop_id: IdPath) -> FileResponse:
        """A crop picture, by its gallery row (erased people's crops are gone at once)."""
        f = crop_file(c.gallery, crop_id)
        if f is None:
            raise HTTPException(404, "no such crop")
        return FileResponse(f, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @media.get("/videos/{name}", tags=["media"], response_class=FileResponse)
    def video(name: Annotated[str, PathParam(max_length=210)]) -> FileResponse:
        """An annotated video of the gallery's video folder (range requests: seeking)."""
        f = c.videos.file(name)
        if f is None:
            raise HTTPException(404, "no such video")
        return FileResponse(
            f,
            media_type=VIDEO_TYPES[f.suffix.lower()],
            headers={"Cache-Control": "no-store"},
        )

    def slot_of(camera: str) -> Any:
        slot = c.live.slots.get(camera) if c.live is not None else None
        if slot is None:
            raise HTTPException(404, "no such live camera")
        return slot

    @media.get("/live/{camera}/frame.jpg", tags=["media"], response_class=Response)
    async def live_frame(camera: Annotated[str, PathParam(max_length=200)]) -> Response:
        """The camera's newest frame with its boxes and identities drawn."""
        slot = slot_of(camera)
        got = await asyncio.to_thread(slot.jpeg, c.scfg.tile_quality)
        if got is None:
            raise HTTPException(404, "no frame from this camera yet")
        slot.sent += 1
        return Response(got[1], media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    @media.get(
        "/live/{camera}/stream.mjpeg",
        tags=["media"],
        response_class=StreamingResponse,
        responses={200: {"content": {"multipart/x-mixed-replace": {}}}},
    )
    async def live_stream(
        request: Request, camera: Annotated[str, PathParam(max_length=200)]
    ) -> StreamingResponse:
        """The camera's annotated frames as MJPEG, at most ``serve.tile_fps`` a second; a
        slow browser skips frames, it never holds the pipeline."""
        slot = slot_of(camera)
        return StreamingResponse(
            _mjpeg(c, request, slot),
            media_type="multipart/x-mixed-replace; boundary=frame",
            headers={"Cache-Control": "no-store"},
        )

    # -- pages -------------------------------------------------------------------------------
    def page(template: str, **ctx: Any) -> HTMLResponse:
        ctx.setdefault("links", ConsoleLinks(c))
        return HTMLResponse(render(template, auth_on=auth.enabled, **ctx))

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/live" if c.live is not None else "/identities", 303)

    @pages.get("/live")
    def live_page() -> HTMLResponse:
        cams = []
        if c.live is not None:
            for st in c.live.camera_states():
                cams.append(
                    {
                        "name": st["name"],
                        "state": st["state"],
                        "mjpeg": _live_url(st["name"], "stream.mjpeg"),
                        "jpeg": _live_url(st["name"], "frame.jpg"),
                    }
                )
        return page("live.html", title="Live", cameras=cams, tile_fps=c.scfg.tile_fps)

    @pages.get("/identities")
    def identities_page(
        page_no: Annotated[int, Query(alias="page", ge=1, le=1_000_000)] = 1,
        camera: Annotated[str, Query(max_length=200, pattern=NO_CONTROL)] = "",
        since_local: Annotated[str, Query(max_length=40)] = "",
        until_local: Annotated[str, Query(max_length=40)] = "",
        flagged: bool = False,
    ) -> HTMLResponse:
        size = c.scfg.page_size
        total, items = c.gallery.identity_page(
            (page_no - 1) * size,
            size,
            camera=camera or None,
            since=_utc_local(since_local),
            until=_utc_local(until_local),
            flagged=True if flagged else None,
        )
        thumbs = c.thumbnails([i.id for i in items])
        views = [summary_view(i, [thumbs[i.id]] if i.id in thumbs else []) for i in items]
        query = {
            "camera": camera,
            "since_local": since_local,
            "until_local": until_local,
            "flagged": "true" if flagged else "",
        }
        pages_n = max(1, -(-total // size))
        return page(
            "index.html",
            title="Identities",
            heading="Identities",
            links=ConsoleLinks(c, query),
            identities=views,
            page=page_no,
            pages=pages_n,
            total=total,
            cameras=c.gallery.camera_names(),
            filters={
                "camera": camera,
                "since_local": since_local,
                "until_local": until_local,
                "flagged": flagged,
            },
        )

    @pages.get("/identities/{identity}")
    def identity_page(identity: IdPath) -> HTMLResponse:
        try:
            view = full_view(identity)
        except NotFoundError:
            return HTMLResponse(
                render(
                    "standalone.html",
                    title="Not found",
                    body=Markup(
                        '<p><a href="/identities">&larr; all identities</a></p>'
                        "<h1>No such identity</h1><p>It was erased, merged away or never seen.</p>"
                    ),
                    links=ConsoleLinks(c),
                    auth_on=auth.enabled,
                ),
                status_code=404,
            )
        links = ConsoleLinks(c)
        return page(
            "identity.html",
            title=view.label,
            links=links,
            ident=view,
            sections=identity_sections(view, links, c.scfg.crops_per_camera),
        )

    @pages.get("/search")
    def search_page() -> HTMLResponse:
        return page("search.html", title="Search by photo", top=c.scfg.search_top)

    @pages.post("/search")
    def search_form(
        request: Request,
        photo: Annotated[bytes, File()],
        top: Annotated[int, Form(ge=1, le=100)] = 10,
        mode: Annotated[Literal["auto", "frame", "crop"], Form()] = "auto",
    ) -> HTMLResponse:
        try:
            res, thumbs = run_search(photo, top, mode)
        except ReidError as e:
            status = 415 if isinstance(e, UnsupportedPhoto) else 400
            html = f'<p class="error" id="search-error">{Markup.escape(str(e))}</p>'
            return HTMLResponse(html, status_code=status)
        hits = [
            {
                "rank": h.rank,
                "identity": h.identity,
                "label": h.label,
                "probability": h.probability,
                "cameras": h.cameras,
                "thumbnail": thumbs.get(h.identity),
            }
            for h in res.hits
        ]
        fragment = render(
            "search_results.html",
            links=ConsoleLinks(c),
            hits=hits,
            how="person detected in the photo" if res.box else "photo taken as a person crop",
            model_version=res.model_version,
            scored=res.scored,
            query_src=_data_url(res.crop),
        )
        if request.headers.get("x-fragment"):
            return HTMLResponse(fragment)
        return page("search.html", title="Search by photo", top=top, results=Markup(fragment))

    # -- login, assets, health ---------------------------------------------------------------
    @app.get("/login", include_in_schema=False)
    def login_page(next: Annotated[str, Query(max_length=2000)] = "/") -> HTMLResponse:
        return HTMLResponse(
            render(
                "login.html",
                title="Log in",
                links=ConsoleLinks(c),
                next=safe_next(next),
                failed=False,
                auth_on=False,
            )
        )

    @app.post("/login", include_in_schema=False)
    def login(
        token: Annotated[str, Form(max_length=1000)],
        next: Annotated[str, Form(max_length=2000)] = "/",
    ) -> Response:
        if not auth.enabled:
            return RedirectResponse(safe_next(next), 303)
        if not auth.token_ok(token):
            log.warning("console: a login with a wrong token was refused")
            return HTMLResponse(
                render(
                    "login.html",
                    title="Log in",
                    links=ConsoleLinks(c),
                    next=safe_next(next),
                    failed=True,
                    auth_on=False,
                ),
                status_code=401,
            )
        resp = RedirectResponse(safe_next(next), 303)
        resp.set_cookie(COOKIE, auth.session_value, httponly=True, samesite="strict", path="/")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        resp = RedirectResponse("/login", 303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @app.get("/assets/{name}", include_in_schema=False)
    def asset(name: str) -> Response:
        if name in CONSOLE_ASSETS:
            return Response(
                (STATIC / name).read_text("utf-8"),
                media_type=CONSOLE_ASSETS[name],
                headers={"Cache-Control": "no-cache"},
            )
        if name in asset_names():
            kind = "text/css" if name.endswith(".css") else "text/javascript"
            return Response(
                asset_text(name), media_type=kind, headers={"Cache-Control": "no-cache"}
            )
        raise HTTPException(404, "no such asset")

    @app.get("/healthz", tags=["health"])
    def healthz() -> dict[str, Any]:
        """Liveness: the console answers (no personal data)."""
        return {"ok": True, "live": c.live is not None}

    app.include_router(api)
    app.include_router(media)
    app.include_router(pages)
    upload_limit = int(cfg.serve.max_upload_mb * 1024 * 1024)
    app.add_middleware(Guard, upload_limit=upload_limit)
    return app


def _live_url(camera: str, what: str) -> str:
    return f"/media/live/{quote(camera, safe='')}/{what}"


def _data_url(image: Any) -> str:
    import cv2

    ok, buf = cv2.imencode(".jpg", image)
    return "data:image/jpeg;base64," + (base64.b64encode(buf.tobytes()).decode() if ok else "")


async def _sse(c: Console, request: Request, start: int) -> Any:
    """The event stream of one client, from ``start`` on, with a comment every 15 s."""
    yield b"retry: 2000\n\n"
    if c.live is None:
        while not await request.is_disconnected():
            await asyncio.sleep(15)
            yield b": no live stream\n\n"
        return
    feed = c.live.feed
    seq = start
    names: dict[int, str | None] = {}
    while not feed.closed:
        got = await feed.wait(seq, 15.0)
        if not got:
            if await request.is_disconnected():
                return
            yield b": keepalive\n\n"
            continue
        missing = {d["identity"] for _, d in got if d.get("identity") is not None} - set(names)
        if missing:
            names.update(await asyncio.to_thread(c.gallery.identity_names, missing))
        for s, d in got:
            d = dict(d, name=names.get(d["identity"]) if d.get("identity") is not None else None)
            d["url"] = f"/identities/{d['identity']}" if d.get("identity") is not None else None
            yield f"id: {s}\nevent: stream\ndata: {json.dumps(d)}\n\n".encode()
            seq = s


async def _mjpeg(c: Console, request: Request, slot: Any) -> Any:
    """Frames of one tile: the newest each time, never faster than ``serve.tile_fps``."""
    period = 1.0 / c.scfg.tile_fps
    last = -1
    while c.live is not None and not c.live.closed:
        if slot.version == last:
            await asyncio.sleep(min(period, 0.02))
            if await request.is_disconnected():
                return
            continue
        t0 = time.monotonic()
        got = await asyncio.to_thread(slot.jpeg, c.scfg.tile_quality)
        if got is None:
            await asyncio.sleep(period)
            continue
        last, data = got
        slot.sent += 1
        yield (
            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
            + str(len(data)).encode()
            + b"\r\n\r\n"
            + data
            + b"\r\n"
        )
        wait = period - (time.monotonic() - t0)
        if wait > 0:
            await asyncio.sleep(wait)


__all__ = ["Console", "ConsoleLinks", "create_app"]
