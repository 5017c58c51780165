"""``sightings.csv`` and ``sightings.jsonl`` beside a run: one row per tracked box.

Why both: CSV opens in a spreadsheet, JSONL streams into other tools line by line. Both are
written from the same ``Sighting`` records (read back from the gallery after a run, so an
interrupted and resumed run exports exactly what is committed), in the one export format of
``reid_pipeline.gallery.export`` (the columns of ``reid gallery export``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

from reid_pipeline.errors import OutputError
from reid_pipeline.gallery.export import FIELDS, write_rows
from reid_pipeline.types import Sighting

__all__ = ["FIELDS", "read_sightings_csv", "write_sightings"]


def write_sightings(sightings: Iterable[Sighting], out_dir: str | Path) -> tuple[Path, Path, int]:
    """Write ``sightings.csv`` and ``sightings.jsonl`` in ``out_dir``; returns paths and count.

    Files are written to a temporary name and renamed, so a crash never leaves half a file
    where a complete one was.
    """
    out = Path(out_dir)
    csv_path, jsonl_path = out / "sightings.csv", out / "sightings.jsonl"
    tmp_csv, tmp_jsonl = csv_path.with_suffix(".csv.tmp"), jsonl_path.with_suffix(".jsonl.tmp")
    try:
        with open(tmp_csv, "w", newline="") as fc, open(tmp_jsonl, "w") as fj:
            n = write_rows(sightings, csv_out=fc, jsonl_out=fj)
        tmp_csv.replace(csv_path)
        tmp_jsonl.replace(jsonl_path)
    except OSError as e:
        raise OutputError(f"cannot write sightings in {str(out)!r}: {e.strerror or e}") from None
    return csv_path, jsonl_path, n


def read_sightings_csv(path: str | Path) -> list[Sighting]:
    """Read a ``sightings.csv`` back (tests, the demo's ground-truth scoring)."""
    rows: list[Sighting] = []
    with open(path, newline="") as fh:
        for r in csv.DictReader(fh):
            rows.append(
                Sighting(
                    camera=r["camera"],
                    frame=int(r["frame"]),
                    timestamp=float(r["timestamp"]),
                    bbox=(float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])),
                    confidence=float(r["confidence"]),
                    track=int(r["track"]),
                    identity=int(r["identity"]) if r["identity"] else None,
                    score=float(r["score"]) if r["score"] else None,
                    name=r.get("name") or None,
                    tracklet=int(r["tracklet"]) if r.get("tracklet") else None,
                )
            )
    return rows
