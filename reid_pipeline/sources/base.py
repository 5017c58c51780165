"""The video-source protocol and the constants every reader shares (no reader here).

``VideoSource`` is a ``typing.Protocol``: the pipeline types its sources by it, and any
object with these members is one. The readers in this package also subclass it explicitly
to inherit the shared parts (``close`` as a no-op, ``is_live``, the context manager and
``repr``); they implement ``__iter__`` and ``fingerprint``.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from reid_pipeline.types import Frame

if TYPE_CHECKING:  # typing.Self is 3.11+; only type checkers need it
    from typing_extensions import Self

DEFAULT_FPS = 10.0  # folders of frames and files whose container lacks a frame rate


@runtime_checkable
class VideoSource(Protocol):
    """One camera's frames, iterated once, in order.

    Attributes (read by the pipeline and reports):
      ``camera``: the camera name frames are tagged with;
      ``uri``: the input as it may be displayed (URL credentials redacted);
      ``fps``: frames per second used for timestamps (``index / fps``);
      ``frame_count``: frames in the source, ``None`` when unknown (live);
      ``size``: ``(width, height)`` of the frames;
      ``start_frame``: the first frame index this source yields.
    """

    camera: str
    uri: str
    fps: float
    frame_count: int | None
    size: tuple[int, int]
    start_frame: int = 0

    @abstractmethod
    def __iter__(self) -> Iterator[Frame]:
        """Yield frames from ``start_frame`` on; raise ``SourceError`` when reading fails."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A stable id of the content, so re-running the same input is recognised."""

    def close(self) -> None:
        """Release the decoder; safe to call twice (nothing to release by default)."""
        return None

    @property
    def is_live(self) -> bool:
        """Live sources (webcam, stream) have no end and no stable content."""
        return self.frame_count is None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r}, camera={self.camera!r})"


__all__ = ["DEFAULT_FPS", "VideoSource"]
