"""Which files the console serves: crops and annotated videos, from the gallery's folders only.

A crop is asked for by its gallery row id, never by a path: the path comes from the row
(rows are data, so it is checked too), and an erased person's rows are gone in the same
transaction that erased them, so their crops 404 at once even if a file was left behind.
A video is asked for by file name (``lobby.webm``) inside the configured video folder.

Every path is refused (``None``: the caller answers 404) when it is absolute, has a ``..``
part, a backslash or NUL, passes through a symbolic link, or resolves outside its folder.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from reid_pipeline.report.site import VIDEO_EXTENSIONS, camera_file_name

if TYPE_CHECKING:
    from reid_pipeline.gallery import Gallery

log = logging.getLogger(__name__)

VIDEO_TYPES = {".webm": "video/webm", ".mp4": "video/mp4", ".mkv": "video/x-matroska"}
VIDEO_TYPES[".avi"] = "video/x-msvideo"
_VIDEO_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}$")


def safe_file(root: Path | None, rel: str) -> Path | None:
    """``root / rel`` if it is a regular file inside ``root`` reached without symbolic
    links; None otherwise."""
    if root is None or not rel or "\x00" in rel or "\\" in rel:
        return None
    pure = PurePosixPath(rel)
    if pure.is_absolute() or any(p in ("..", "") for p in pure.parts) or rel.startswith("/"):
        return None
    base = Path(root)
    try:
        real_root = base.resolve(strict=True)
        cur = base
        for part in pure.parts:
            cur = cur / part
            if cur.is_symlink():
                return None
        target = cur.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if real_root not in target.parents or not target.is_file():
        return None
    return target


def crop_file(gallery: Gallery, crop_id: int) -> Path | None:
    """The JPEG of crop row ``crop_id`` (None: no such row, no identity, or refused)."""
    info = gallery.crop(crop_id)
    if info is None or info.identity_id is None:
        return None
    return safe_file(gallery.crops_dir, info.relpath)


class VideoFolder:
    """The annotated videos (``<camera>.webm``) of one folder."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder

    def file(self, name: str) -> Path | None:
        """The video called ``name`` in the folder, or None (refused or missing)."""
        if self.folder is None or not _VIDEO_NAME.match(name):
            return None
        if Path(name).suffix.lower() not in VIDEO_TYPES:
            return None
        return safe_file(self.folder, name)

    def for_camera(self, camera: str) -> Path | None:
        """The camera's annotated video (``.webm`` first: what browsers play)."""
        for ext in VIDEO_EXTENSIONS:
            p = self.file(camera_file_name(camera) + ext)
            if p is not None:
                return p
        return None
