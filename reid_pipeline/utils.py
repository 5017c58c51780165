"""Small helpers shared by every stage: credential redaction, devices, progress bars, logging."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

_CRED_RE = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<cred>[^/@\s]+)@")


def redact_url(text: str) -> str:
    """Hide credentials in any ``scheme://user:pass@host`` inside ``text``.

    Applied to everything that names a source or database URL before it reaches a log, an
    event, the database or a report: ``rtsp://admin:pw@cam/x`` -> ``rtsp://***@cam/x``.
    """
    return _CRED_RE.sub(lambda m: f"{m.group('scheme')}***@", str(text))


class RedactingFilter(logging.Filter):
    """Logging filter that redacts URL credentials in every record's final message."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        red = redact_url(msg)
        if red != msg:
            record.msg, record.args = red, None
        return True


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted, not the stream that
    was current when logging was set up (a test harness, or an embedding program, swaps
    it; a handler holding the old one would write to a closed file)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def setup_logging(level: str = "INFO") -> None:
    """Configure root logging for the CLI (library code only calls ``logging.getLogger``)."""
    handler = _CurrentStderr()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    handler.addFilter(RedactingFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("ultralytics", "PIL", "matplotlib", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def resolve_device(name: str = "auto") -> Any:
    """``auto`` -> ``cuda`` when available, else ``cpu``. Returns a ``torch.device``."""
    import torch

    from reid_pipeline.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"config key 'device': {name!r} requested but CUDA is not available")
    return torch.device(name)


def progress(
    it: Iterable[T], desc: str = "", total: int | None = None, unit: str = "it", **kw: Any
) -> Iterator[T]:
    """A tqdm progress bar on stderr; silent when REID_NO_PROGRESS=1 (tests, logs to files)."""
    from tqdm.auto import tqdm

    disable = os.environ.get("REID_NO_PROGRESS") == "1"
    return iter(
        tqdm(
            it,
            desc=desc,
            total=total,
            unit=unit,
            disable=disable,
            dynamic_ncols=True,
            leave=False,
            **kw,
        )
    )
