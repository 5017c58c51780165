"""The identity gallery (``gallery``): database, crops, retention."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reid_pipeline.config.base import check


@dataclass(frozen=True)
class GalleryConfig:
    db: str = ""  # SQLAlchemy URL or a file path; empty: <out>/reid.db (SQLite, WAL)
    batch_size: int = 500  # rows per transaction
    busy_timeout_s: float = 10.0  # SQLite lock wait before 'database is locked'
    retention_days: int = 0  # 0: keep forever; purge with `reid gallery purge`
    crops_dir: str = ""  # crop JPEGs; empty: recorded in the db, else <db folder>/crops (SQLite)
    crop_quality: int = 90  # JPEG quality of saved crops
    exemplar_dtype: Literal["float16", "float32"] = "float16"  # storage of exemplar vectors

    def validate(self, p: str) -> None:
        check(self.batch_size >= 1, f"{p}.batch_size", "must be >= 1")
        check(self.busy_timeout_s >= 0, f"{p}.busy_timeout_s", "must be >= 0")
        check(self.retention_days >= 0, f"{p}.retention_days", "must be >= 0")
        check(
            1 <= self.crop_quality <= 100,
            f"{p}.crop_quality",
            f"must be in [1, 100], got {self.crop_quality}",
        )
