"""The gallery's tables as SQLAlchemy 2.0 typed ORM models.

Why this shape:
- ``sources`` rows make re-runs idempotent (same camera + fingerprint = same row) and
  interrupted runs resumable (``frames_processed`` is the first frame not yet committed).
- ``tracklets`` are unique per (source, track_id), so recording the same tracklet twice
  merges instead of duplicating; ``sightings`` are unique per (tracklet, frame).
- ``crops`` record every JPEG written under the gallery's crop folder, so deleting an
  identity can remove its files too (erasure is total, nothing orphaned on disk).
- ``exemplars`` hold a few diverse embedding vectors per identity as raw bytes, tagged with
  the model version: vectors of different models are never compared.
- Times: ``*_ts`` / ``first_seen`` / ``last_seen`` are media timestamps in seconds (what the
  source reports: epoch seconds for live streams, offset from the start for files);
  ``created_at`` / ``updated_at`` are wall-clock UTC, for retention ("older than 30 days").
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Deterministic constraint names so Alembic migrations (and SQLite batch mode) can refer to them.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Wall-clock now in UTC (timezone-aware)."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention."""

    metadata = MetaData(naming_convention=NAMING)


class Camera(Base):
    """A camera: the unit of 'one place'. The source URI is stored redacted."""

    __tablename__ = "cameras"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    uri: Mapped[str] = mapped_column(String(2000), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    sources: Mapped[list[Source]] = relationship(back_populates="camera")


class Source(Base):
    """One processing run of one input (file/stream) for one camera."""

    __tablename__ = "sources"
    __table_args__ = (UniqueConstraint("camera_id", "fingerprint", name="uq_sources_camera_fp"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"))
    fingerprint: Mapped[str] = mapped_column(String(200))
    uri: Mapped[str] = mapped_column(String(2000), default="")
    frames_processed: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="running")  # running | done
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    camera: Mapped[Camera] = relationship(back_populates="sources")


class Identity(Base):
    """A global person identity across cameras."""

    __tablename__ = "identities"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    flagged: Mapped[bool] = mapped_column(Boolean, default=False)  # on the watch list
    first_seen: Mapped[float | None] = mapped_column(Float, nullable=True)
    last_seen: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Tracklet(Base):
    """A within-camera track, optionally assigned to an identity."""

    __tablename__ = "tracklets"
    __table_args__ = (
        UniqueConstraint("source_id", "track_id", name="uq_tracklets_source_track"),
        Index("ix_tracklets_identity", "identity_id"),
        Index("ix_tracklets_camera_time", "camera_id", "first_ts"),
        Index("ix_tracklets_created", "created_at"),  # retention: purge by storage age
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    camera_id: Mapped[int] = mapped_column(ForeignKey("cameras.id", ondelete="CASCADE"))
    source_id: Mapped[int] = mapped_column(ForeignKey("sources.id", ondelete="CASCADE"))
    track_id: Mapped[int] = mapped_column(Integer)
    first_frame: Mapped[int] = mapped_column(Integer)
    last_frame: Mapped[int] = mapped_column(Integer)
    first_ts: Mapped[float] = mapped_column(Float)
    last_ts: Mapped[float] = mapped_column(Float)
    identity_id: Mapped[int | None] = mapped_column(
        ForeignKey("identities.id", ondelete="SET NULL"), nullable=True
    )
    score: Mapped[float | None] = mapped_column(Float, nullable=True)
    provisional: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SightingRow(Base):
    """One observation (box) of a tracklet in one frame."""

    __tablename__ = "sightings"
    __table_args__ = (UniqueConstraint("tracklet_id", "frame", name="uq_sightings_tracklet_frame"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tracklet_id: Mapped[int] = mapped_column(ForeignKey("tracklets.id", ondelete="CASCADE"))
    frame: Mapped[int] = mapped_column(Integer)
    timestamp: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)


class Exemplar(Base):
    """One stored embedding vector of an identity (a few diverse ones per identity)."""

    __tablename__ = "exemplars"
    __table_args__ = (
        Index("ix_exemplars_model_identity", "model_version", "identity_id"),
        Index("ix_exemplars_identity", "identity_id"),
    )  # per-identity edits

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity_id: Mapped[int] = mapped_column(ForeignKey("identities.id", ondelete="CASCADE"))
    tracklet_id: Mapped[int | None] = mapped_column(
        ForeignKey("tracklets.id", ondelete="SET NULL"), nullable=True
    )
    model_version: Mapped[str] = mapped_column(String(200))
    dim: Mapped[int] = mapped_column(Integer)
    dtype: Mapped[str] = mapped_column(String(16))  # float16 | float32
    vector: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Crop(Base):
    """A crop JPEG on disk; ``path`` is relative to the gallery's crop folder."""

    __tablename__ = "crops"
    __table_args__ = (UniqueConstraint("tracklet_id", "frame", name="uq_crops_tracklet_frame"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tracklet_id: Mapped[int] = mapped_column(ForeignKey("tracklets.id", ondelete="CASCADE"))
    frame: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1000))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Meta(Base):
    """Key/value settings of this gallery (e.g. where its crops live)."""

    __tablename__ = "gallery_meta"

    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(String(2000))
