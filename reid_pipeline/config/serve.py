"""The operator console (``serve``): where ``reid serve`` (and ``reid stream --serve``)
listens, who may use it, and how much it accepts.

Binding to anything but the loopback interface needs an access token (``token``, or the
first line of ``token_file``); the token is never logged and never written into a run's
resolved ``config.yaml``.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from reid_pipeline.config.base import check

_LISTEN_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[^:\s]+|[0-9A-Fa-f:]*:[0-9A-Fa-f:]+):(\d{1,5})$")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    h = host.strip().strip("[]").lower()
    if h == "localhost":
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def parse_listen(text: str, key: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> (host, port); a ``ConfigError`` naming
    ``key`` otherwise."""
    m = _LISTEN_RE.match(text.strip())
    check(m is not None, key, f"must be HOST:PORT, e.g. 127.0.0.1:8080, got {text!r}")
    assert m is not None
    host, port = m.group(1).strip("[]"), int(m.group(2))
    check(1 <= port <= 65535, key, f"port must be in [1, 65535], got {port}")
    return host, port


@dataclass(frozen=True)
class ServeConfig:
    host: str = "127.0.0.1"  # any other address needs token or token_file
    port: int = 8080
    listen: str = ""  # reid stream --serve HOST:PORT: run the console beside the live loop
    token: str = ""  # access token (prefer token_file: a flag shows in `ps`)
    token_file: str = ""  # file whose first line is the token
    videos: str = ""  # folder of annotated videos <camera>.webm; empty: <db folder>/videos
    max_upload_mb: float = 10.0  # largest photo accepted by the search
    page_size: int = 50  # identities per page (API default and the web page)
    crops_per_camera: int = 24  # crops per camera on an identity page
    search_top: int = 10  # identities a search lists
    tile_fps: float = 10.0  # most frames per second a live tile sends to one browser
    tile_quality: int = 75  # JPEG quality of live tile frames
    events_kept: int = 500  # recent events kept for the feed (a reconnecting page catches up)

    def validate(self, p: str) -> None:
        check(bool(self.host.strip()), f"{p}.host", "must not be empty")
        check(1 <= self.port <= 65535, f"{p}.port", f"must be in [1, 65535], got {self.port}")
        if self.listen:
            parse_listen(self.listen, f"{p}.listen")
        # the token's value is never shown in a message
        check(
            not self.token or len(self.token) >= 12,
            f"{p}.token",
            "is too short: use at least 12 characters",
        )
        check(
            not (self.token and self.token_file),
            f"{p}.token",
            "give token or token_file, not both",
        )
        check(
            0 < self.max_upload_mb <= 200,
            f"{p}.max_upload_mb",
            f"must be in (0, 200], got {self.max_upload_mb}",
        )
        check(self.page_size >= 1, f"{p}.page_size", f"must be >= 1, got {self.page_size}")
        check(self.crops_per_camera >= 1, f"{p}.crops_per_camera", "must be >= 1")
        check(self.search_top >= 1, f"{p}.search_top", f"must be >= 1, got {self.search_top}")
        check(0 < self.tile_fps <= 60, f"{p}.tile_fps", f"must be in (0, 60], got {self.tile_fps}")
        check(1 <= self.tile_quality <= 100, f"{p}.tile_quality", "must be in [1, 100]")
        check(self.events_kept >= 1, f"{p}.events_kept", "must be >= 1")
