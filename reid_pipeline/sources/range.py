"""Part of a recorded source: frames ``first..last`` (config key ``input.frames``, ``A:B``).

Why a wrapper and not a stop condition in the pipeline: the pipeline runs every source to
its end, commits and marks it done; a source that simply *ends* at frame B keeps all of that
(commit point, resume, "already processed") exactly as for a whole video. Frame indices stay
those of the underlying video, so frame ``n`` (1-based) of the range is ``Frame.index ==
n - 1`` as for the whole file, and a resumed run continues inside the range.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from reid_pipeline.errors import SourceError
from reid_pipeline.sources.base import VideoSource
from reid_pipeline.types import Frame


class FrameRangeSource(VideoSource):
    """Frames ``first..last`` (1-based, inclusive) of the source ``opener(start_frame)``."""

    def __init__(
        self, opener: Callable[[int], VideoSource], first: int, last: int, start_frame: int = 0
    ) -> None:
        self.first, self.last = int(first), int(last)
        start = max(int(start_frame), self.first - 1)
        # open at the range's start (a seek) unless that lies past the end of the video
        probe = opener(0)
        total = probe.frame_count
        if total is not None and self.first > total:
            probe.close()
            raise SourceError(
                f"source {probe.uri!r}: frames {self.first}:{self.last} lie "
                f"outside its {total} frames (input.frames)"
            )
        if start > 0:
            probe.close()
            probe = opener(min(start, total) if total is not None else start)
        self.inner = probe
        self.camera, self.uri, self.fps, self.size = (
            probe.camera,
            probe.uri,
            probe.fps,
            probe.size,
        )
        self.start_frame = start
        self.frame_count = self.last if total is None else min(self.last, total)

    def __iter__(self) -> Iterator[Frame]:
        for fr in self.inner:
            if fr.index >= self.last:
                break
            if fr.index >= self.start_frame:
                yield fr

    def fingerprint(self) -> str:
        # another range of the same video is another source (its own progress and "done")
        return f"{self.inner.fingerprint()}#frames={self.first}:{self.last}"

    def close(self) -> None:
        self.inner.close()

    @property
    def is_live(self) -> bool:
        return self.inner.is_live
