"""Annotated video per camera: each box with its global identity and track id.

Why a second pass over the input: a tracklet's identity is only final when the tracklet
ends, so boxes are drawn after the run from the committed sightings, never guessed early.
The annotator (drawing) is separate from the writer (decode, draw, encode) in the
supervision style, so other outputs (the console's live tiles) reuse ``annotate``.

The container follows the file name: ``.webm`` (what ``reid process`` writes) is VP8 in
WebM, which browsers play and seek (the report's and the console's links into the video);
OpenCV's bundled FFmpeg has no H.264 encoder, and the MPEG-4 Part 2 (``mp4v``) it writes
for ``.mp4`` plays in desktop players only. ``.mp4``/``.avi`` stay available for tools that
want them (``write_annotated_video(..., out_path="x.mp4")``).
"""

from __future__ import annotations

import colorsys
import logging
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from reid_pipeline.errors import OutputError
from reid_pipeline.types import Sighting
from reid_pipeline.utils import progress

log = logging.getLogger(__name__)


def identity_color(identity: int | None) -> tuple[int, int, int]:
    """A stable, well separated BGR colour per identity (grey when unassigned)."""
    if identity is None:
        return (160, 160, 160)
    h = (identity * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def annotate(image: np.ndarray, sightings: Iterable[Sighting]) -> np.ndarray:
    """Draw boxes and ``ID n  t m`` labels on ``image`` in place; returns it."""
    import cv2

    for s in sightings:
        x1, y1, x2, y2 = (round(v) for v in s.bbox)
        col = identity_color(s.identity)
        cv2.rectangle(image, (x1, y1), (x2, y2), col, 2)
        label = f"ID {s.identity}" if s.identity is not None else "ID ?"
        label += f"  t{s.track}"
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(th + 2, y1)
        cv2.rectangle(image, (x1, ty - th - 3), (x1 + tw + 4, ty + base - 2), col, -1)
        cv2.putText(
            image,
            label,
            (x1 + 2, ty - 2),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return image


# file suffix -> OpenCV FourCC: VP8 is what Chromium and Firefox play from OpenCV's FFmpeg
# (VP9 plays too but encodes ~2.5x slower here); mp4v/MJPG only for desktop players
CODECS = {".webm": "VP80", ".mp4": "mp4v", ".avi": "MJPG", ".mkv": "VP80"}


def video_writer(out: Path, fps: float, size: tuple[int, int]) -> Any:
    """An opened ``cv2.VideoWriter`` for ``out``, its codec chosen by the suffix."""
    import cv2

    fourcc = CODECS.get(out.suffix.lower())
    if fourcc is None:
        raise OutputError(
            f"annotated video {str(out)!r}: unknown container; use one of {sorted(CODECS)}"
        )
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*fourcc), float(fps), size)
    if not writer.isOpened():
        raise OutputError(f"cannot write annotated video {str(out)!r}")
    return writer


def write_annotated_video(
    spec: str,
    camera: str,
    sightings: Iterable[Sighting],
    out_path: str | Path,
    fps: float | None = None,
) -> Path:
    """Decode ``spec`` again, draw the camera's sightings, encode ``out_path`` (the codec
    follows its suffix: ``.webm`` VP8 for browsers, see ``CODECS``)."""
    import cv2

    from reid_pipeline.sources import open_source

    by_frame: dict[int, list[Sighting]] = defaultdict(list)
    for s in sightings:
        by_frame[s.frame].append(s)
    out = Path(out_path)
    src = open_source(spec, camera, fps=fps)
    try:
        w, h = src.size
        writer = video_writer(out, float(src.fps), (int(w), int(h)))
        try:
            for fr in progress(src, desc=f"video {camera}", total=src.frame_count, unit="frame"):
                img = fr.image.copy()
                annotate(img, by_frame.get(fr.index, ()))
                cv2.putText(
                    img,
                    f"{camera}  #{fr.index}",
                    (6, 16),
                    cv2.FONT_HERSHEY_SIMPLEX,
                    0.45,
                    (255, 255, 255),
                    1,
                    cv2.LINE_AA,
                )
                writer.write(img)
        finally:
            writer.release()
    finally:
        src.close()
    log.info("annotated video for camera %s: %s", camera, out)
    return out
