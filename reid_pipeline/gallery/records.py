"""Plain read-side records the gallery returns (no ORM objects leak out of a session)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class SourceStart:
    """Where to (re)start processing a source.

    ``resume_from_frame`` is the first frame not yet committed (0 for a new source, the
    total for a finished one). After an interruption the tracker restarts, so new track ids
    must start at ``next_track_id`` to stay unique within the source. Unpacks as the pair
    ``source_id, resume_from_frame``.
    """

    source_id: int
    resume_from_frame: int
    done: bool = False
    next_track_id: int = 1

    def __iter__(self) -> Iterator[int]:
        yield self.source_id
        yield self.resume_from_frame


@dataclass(frozen=True)
class IdentitySummary:
    """Who was seen, where and when (one row of `reid gallery identities`)."""

    id: int
    name: str | None
    flagged: bool
    cameras: list[str]
    first_seen: float | None
    last_seen: float | None
    sightings: int
    tracklets: int
    created_at: datetime | None = None


@dataclass(frozen=True)
class Interval:
    """An assigned tracklet's time span in one camera: the identity was *there* then."""

    tracklet_id: int
    identity_id: int
    camera: str
    start: float
    end: float


@dataclass(frozen=True)
class CropInfo:
    """A crop file of a tracklet; ``path`` is absolute (None when no crop folder is known)."""

    crop_id: int
    tracklet_id: int
    identity_id: int | None
    camera: str
    frame: int
    timestamp: float | None
    path: Path | None
    relpath: str
