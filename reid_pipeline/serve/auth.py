"""Who may use the console: the binding rule and the access token.

* On the loopback interface (the default, 127.0.0.1) only local users reach the console;
  no token is needed unless one is configured.
* On any other address a token is required (``serve.token`` or the first line of
  ``serve.token_file``): without one the console refuses to start. Every request but the
  login page, the static assets and the API schema then needs it: a browser logs in once
  (``POST /login``; the session cookie is an HMAC of the token, ``HttpOnly``,
  ``SameSite=Strict``), an API client sends ``Authorization: Bearer <token>``.
* Tokens are compared in constant time (``hmac.compare_digest``), never logged, never put in
  a URL (URLs end up in access logs and browser history).
* A write with a session cookie must come from the console's own pages: a cross-site
  ``Origin`` is refused (``SameSite=Strict`` already keeps the cookie off cross-site
  requests; this is the second lock).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from reid_pipeline.config.serve import is_loopback
from reid_pipeline.errors import ConfigError

if TYPE_CHECKING:
    from reid_pipeline.config.serve import ServeConfig

log = logging.getLogger(__name__)

COOKIE = "reid_session"
MIN_TOKEN = 12


def resolve_token(cfg: ServeConfig) -> str | None:
    """The configured token (``token``, or ``token_file``'s first line), None if none."""
    if cfg.token:
        return cfg.token
    if not cfg.token_file:
        return None
    path = Path(cfg.token_file).expanduser()
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise ConfigError(
            f"config key 'serve.token_file': cannot read {str(path)!r} ({e.strerror or e})"
        ) from None
    except UnicodeDecodeError:
        raise ConfigError(
            f"config key 'serve.token_file': {str(path)!r} is not a text file"
        ) from None
    token = lines[0].strip() if lines else ""
    if len(token) < MIN_TOKEN:  # the token itself is never shown
        raise ConfigError(
            f"config key 'serve.token_file': the token in {str(path)!r} is empty or shorter "
            f"than {MIN_TOKEN} characters"
        )
    return token


def check_binding(host: str, token: str | None) -> None:
    """Refuse a non-loopback address without a token."""
    if not is_loopback(host) and not token:
        raise ConfigError(
            f"config key 'serve.host': listening on {host!r} (not the loopback interface) "
            "needs an access token: set serve.token_file (or serve.token / --token)"
        )


class Auth:
    """The access check of one console (``enabled`` when a token is configured)."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode("utf-8") if token else None
        self._session = (
            hmac.new(self._token, b"reid-console-session", hashlib.sha256).hexdigest()
            if self._token
            else None
        )

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def token_ok(self, given: str | None) -> bool:
        if self._token is None:
            return True
        return given is not None and hmac.compare_digest(given.encode("utf-8"), self._token)

    @property
    def session_value(self) -> str:
        """The session cookie's value (an HMAC of the token, not the token)."""
        return self._session or ""

    def allowed(self, request: Any) -> bool:
        """True when ``request`` (a Starlette request) carries the token or the session."""
        if self._token is None:
            return True
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and self.token_ok(value.strip()):
            return True
        cookie = request.cookies.get(COOKIE)
        if cookie and self._session and hmac.compare_digest(cookie, self._session):
            return self.same_origin(request)
        return False

    @staticmethod
    def same_origin(request: Any) -> bool:
        """A write by cookie must come from this console's own pages."""
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        origin = request.headers.get("origin")
        if not origin:
            return True
        host = request.headers.get("host", "")
        try:
            return urlsplit(origin).netloc == host
        except ValueError:
            return False


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this server only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
