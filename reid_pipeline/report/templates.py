"""The page templates shared by the static report and the operator console (``reid serve``).

One Jinja2 environment with autoescaping on every template: identity names are user input
(``reid gallery rename``, the console's rename), so every value reaches HTML through the
template engine's escaping, never through hand-built strings. Links differ between the two
outputs (relative files in the report, server URLs in the console), so templates never build
a URL themselves: they ask a ``links`` object (``Links``) passed in by the caller.

Templates live in ``report/templates/``, the stylesheet and script in ``report/static/``.
"""

from __future__ import annotations

import datetime as _dt
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from jinja2 import Environment

EPOCH_MIN = 1e8  # timestamps above this are Unix times (1973+); below, seconds into a video


def fmt_time(t: float | None) -> str:
    """Unix times as UTC date-times; small values (seconds into a video) as h:mm:ss.s."""
    if t is None:
        return ""
    if t >= EPOCH_MIN:
        return _dt.datetime.fromtimestamp(t, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    sign = "-" if t < 0 else ""
    t = abs(t)
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{sign}{int(h)}:{int(m):02d}:{s:04.1f}"


class Links(Protocol):
    """Where a page's links point (files of the static site, or console URLs)."""

    console: bool  # True: the page is served by `reid serve` (management, live panels)

    def asset(self, name: str) -> str: ...

    def index(self, page: int) -> str: ...

    def identity(self, identity: int) -> str: ...

    def crop(self, crop: Any) -> str: ...  # a report.site.CropView

    def video(self, camera: str, t: float | None) -> str | None: ...


@lru_cache(maxsize=1)
def environment() -> Environment:
    """The one template environment (autoescape on, undefined names are errors)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("reid_pipeline.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = fmt_time
    return env


def render(template: str, **context: Any) -> str:
    """Render ``template`` (a file of ``report/templates``) with ``context``."""
    return environment().get_template(template).render(**context)


def asset_names() -> list[str]:
    """The files of ``report/static`` (stylesheet, script)."""
    return sorted(
        p.name for p in resources.files("reid_pipeline.report").joinpath("static").iterdir()
    )


def asset_text(name: str) -> str:
    """The text of one static asset (``report.css``, ``report.js``)."""
    if name not in asset_names():
        raise KeyError(name)
    return (
        resources.files("reid_pipeline.report").joinpath("static").joinpath(name).read_text("utf-8")
    )
