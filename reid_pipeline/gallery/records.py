"""Plain read-side records the gallery returns (no ORM objects leak out of a session)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
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
    track_id: int | None = None  # the tracker's track id of the tracklet (within its source)


@dataclass(frozen=True)
class TrackletSpan:
    """One assigned tracklet (provisional ones included): who, which camera, when, from
    which frame (the report's timelines and video links)."""

    tracklet_id: int
    identity_id: int
    camera: str
    track_id: int
    start: float
    end: float
    first_frame: int


@dataclass(frozen=True)
class CameraPresence:
    """One identity in one camera: first/last seen, sightings and tracklets there."""

    identity_id: int
    camera: str
    first_seen: float
    last_seen: float
    sightings: int
    tracklets: int


@dataclass
class Result:
    """What a management operation changed: row counts per table and crop files removed.

    Ids and counts only (it is logged): never a name or a path.
    """

    identity: int | None = None
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0

    def add(self, table: str, n: int) -> None:
        if n:
            self.rows[table] = self.rows.get(table, 0) + n

    def update(self, other: Result) -> None:
        """Add ``other``'s counts to these."""
        for k, v in other.rows.items():
            self.add(k, v)
        self.files += other.files

    def summary(self) -> str:
        parts = [f"{k}={v}" for k, v in sorted(self.rows.items())]
        return ", ".join(parts + [f"files={self.files}"])
