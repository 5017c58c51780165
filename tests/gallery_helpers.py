"""Shared fixtures data for the gallery/matcher tests: galleries on SQLite and PostgreSQL.

PostgreSQL runs in CI (127.0.0.1:5432, database ``test``, or ``REID_TEST_PG_URL``); each
test gets its own schema (``search_path`` in the URL), dropped afterwards, so parallel runs
never see each other's tables. An unreachable server fails the test: it is never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from reid_pipeline.config import GalleryConfig
from reid_pipeline.gallery import Gallery
from reid_pipeline.types import TrackedBox, Tracklet

PG_URL = os.environ.get("REID_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh schema; yields a gallery URL whose tables live in it."""
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextmanager
def open_gallery(backend: str, tmp_path: Path, **cfg: object) -> Iterator[Gallery]:
    """A new empty gallery on ``backend`` ('sqlite' or 'postgresql') with crops in tmp_path."""
    gcfg = GalleryConfig(**cfg)  # type: ignore[arg-type]
    if backend == "sqlite":
        with Gallery.open(str(tmp_path / "reid.db"), gcfg) as g:
            yield g
        return
    with pg_schema() as url, Gallery.open(url, gcfg, tmp_path / "crops") as g:
        yield g


def make_tracklet(
    camera: str,
    track_id: int,
    frames: range,
    fps: float = 25.0,
    crops_every: int = 5,
    seed: int = 0,
) -> Tracklet:
    """A synthetic tracklet: a box drifting right, a small colored crop every few frames."""
    rng = np.random.default_rng(seed + track_id)
    boxes = [
        TrackedBox(camera, f, f / fps, (10.0 + f, 20.0, 40.0 + f, 100.0), 0.9, track_id)
        for f in frames
    ]
    crop_frames = [f for f in frames if (f - frames.start) % crops_every == 0]
    crops = [rng.integers(0, 255, (64, 32, 3), dtype=np.uint8) for _ in crop_frames]
    return Tracklet(camera, track_id, boxes, crops, crop_frames, finished=True)
