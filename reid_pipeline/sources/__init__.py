"""Video sources: one camera's frames as ``Frame`` records, whatever the medium.

``open_source(spec, camera)`` picks the reader from the spec:

* ``rtsp://``, ``rtsps://``, ``http(s)://`` URLs -> ``reid_pipeline.sources.rtsp.RtspSource``
  (live, reconnecting; imported lazily so file users never pay for it);
* a folder -> ``ImageFolderSource`` (sorted images, natural order, fixed fps);
* a digit string (``"0"``) or ``webcam:N`` with no such file -> ``WebcamSource``;
* anything else -> ``VideoFileSource`` (OpenCV/FFmpeg).

Every source validates eagerly (opens and decodes the first frame in ``__init__``) so a bad
input fails before any work starts, with a ``SourceError`` naming it. Sources support
``start_frame`` so an interrupted run resumes where its last committed frame left off, and
``fingerprint()`` identifies the content so a re-run of the same video is recognised.
The ``VideoSource`` protocol lives in ``sources/base.py`` (re-exported here).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from reid_pipeline.sources.base import DEFAULT_FPS, VideoSource
from reid_pipeline.utils import redact_url

log = logging.getLogger(__name__)

URL_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://")


def is_url(spec: str) -> bool:
    return spec.lower().startswith(URL_SCHEMES)


def open_source(
    spec: str,
    camera: str,
    stream_cfg: Any = None,
    *,
    start_frame: int = 0,
    fps: float | None = None,
) -> VideoSource:
    """Open the right reader for ``spec`` (URL, folder, webcam index or video file).

    ``stream_cfg`` (``config.StreamConfig``) only matters for URLs; ``fps`` overrides the
    frame rate (folders default to 10 fps, files to their container's rate).
    """
    from reid_pipeline.errors import SourceError
    from reid_pipeline.sources.files import ImageFolderSource, VideoFileSource, WebcamSource

    spec = str(spec)
    if not spec.strip():
        raise SourceError(
            f"camera {camera!r}: empty source (give a video file, a folder of "
            "frames, a webcam index or a stream URL)"
        )
    if start_frame < 0:
        raise SourceError(
            f"source {redact_url(spec)!r}: start_frame must be >= 0, got {start_frame}"
        )
    if is_url(spec):
        from reid_pipeline.config import StreamConfig
        from reid_pipeline.sources.rtsp import RtspSource

        return RtspSource(spec, camera, stream_cfg if stream_cfg is not None else StreamConfig())
    path = Path(spec)
    if path.is_dir():
        return ImageFolderSource(path, camera, fps=fps, start_frame=start_frame)
    webcam = spec.removeprefix("webcam:")
    if webcam.isdigit() and not path.exists():
        return WebcamSource(int(webcam), camera, fps=fps)
    return VideoFileSource(path, camera, fps=fps, start_frame=start_frame)


__all__ = ["DEFAULT_FPS", "VideoSource", "is_url", "open_source"]
