"""Search by photo for the console: the same code path as ``reid search``.

An upload is checked (size, then the picture's own magic bytes: JPEG, PNG, BMP, WebP,
TIFF), written to a private temporary file and handed to ``pipeline.search.search_photo``
with the model the gallery was built with (``model.checkpoint``), loaded on the first
search. Searches run one at a time (one model, one embedder).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reid_pipeline.errors import InputError

if TYPE_CHECKING:
    from reid_pipeline.config import Config
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.pipeline.search import SearchResult

log = logging.getLogger(__name__)

MAGIC: list[tuple[bytes, int, str]] = [  # (bytes, offset, suffix)
    (b"\xff\xd8\xff", 0, ".jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, ".png"),
    (b"BM", 0, ".bmp"),
    (b"WEBP", 8, ".webp"),
    (b"II*\x00", 0, ".tif"),
    (b"MM\x00*", 0, ".tif"),
]


class UnsupportedPhoto(InputError):
    """An upload that is not a picture the search reads (the console answers 415)."""


def photo_suffix(data: bytes) -> str | None:
    """The file suffix of the picture format ``data`` starts with, None if not a picture."""
    for magic, offset, suffix in MAGIC:
        if data[offset : offset + len(magic)] == magic:
            if suffix == ".webp" and not data.startswith(b"RIFF"):
                continue
            return suffix
    return None


class PhotoSearch:
    """Loads the model, embedder and detector once, then answers searches."""

    def __init__(self, gallery: Gallery, cfg: Config) -> None:
        self.gallery = gallery
        self.cfg = cfg
        self._lock = threading.Lock()
        self._parts: dict[str, Any] = {}

    def _load(self, detector: bool) -> dict[str, Any]:
        from reid_pipeline.pipeline.build import build_embedder, build_model
        from reid_pipeline.utils import resolve_device

        p = self._parts
        if "model" not in p:
            device = resolve_device(self.cfg.device)
            p["device"] = device
            p["model"] = build_model(self.cfg, device)
            p["embedder"] = build_embedder(self.cfg, p["model"], device)
            log.info("console search: model %s loaded", p["model"].model_version)
        if detector and "detector" not in p:
            from reid_pipeline.detect import build_detector

            dcfg = self.cfg.detector
            if dcfg.kind == "mot":  # public detections belong to videos, not to a photo
                dcfg = dataclasses.replace(dcfg, kind="auto")
            p["detector"] = build_detector(dcfg, p["device"])
        return p

    def search(self, data: bytes, top: int, mode: str = "auto") -> SearchResult:
        """Search the gallery for the person in the picture ``data`` (already size-checked)."""
        from reid_pipeline.pipeline.search import read_photo, search_photo

        suffix = photo_suffix(data)
        if suffix is None:
            raise UnsupportedPhoto(
                "the upload is not a picture (JPEG, PNG, BMP, WebP or TIFF expected)"
            )
        if mode not in ("auto", "frame", "crop"):
            raise InputError(f"search mode {mode!r}: choose auto, frame or crop")
        folder = tempfile.mkdtemp(prefix="reid-search-")  # 0700: the photo is personal data
        path = Path(folder) / f"photo{suffix}"
        try:
            path.write_bytes(data)
            try:
                read_photo(path)  # a picture that does not decode fails before any model work
            except InputError:
                raise InputError(
                    "the upload is not a readable image (JPEG, PNG, BMP, WebP or TIFF)"
                ) from None
            with self._lock:
                parts = self._load(detector=mode != "crop")
                try:
                    return search_photo(
                        self.gallery,
                        path,
                        parts["model"],
                        parts["embedder"],
                        parts.get("detector"),
                        top=top,
                        mode=mode,
                    )
                except InputError as e:  # name the upload, not the temporary file
                    raise type(e)(str(e).replace(repr(str(path)), "'upload'")) from None
        finally:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
                os.rmdir(folder)

    def embed(self, images: list[Any]) -> tuple[Any, str]:
        """Re-embed crops for a merge or split (``GalleryManager``'s ``embed``)."""
        with self._lock:
            parts = self._load(detector=False)
            vecs = parts["embedder"].embed_crops(images).float().cpu().numpy()
            return vecs, parts["model"].model_version
