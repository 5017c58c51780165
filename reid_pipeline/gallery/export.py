"""The one sightings export format: one row per tracked box, with its identity and camera.

The same columns are written by ``reid process`` (``sightings.csv`` / ``sightings.jsonl``
beside a run, through ``reid_pipeline.report.sightings``) and by ``reid gallery export``
(``Gallery.export_sightings``, e.g. for a data-subject request). CSV opens in a
spreadsheet; JSON lines (one object per row, the same keys, ``null`` for missing values)
stream into other tools. Boxes are rounded to 0.1 px, times to 1 ms, confidences and
scores to 4 digits.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import TextIO

from reid_pipeline.types import Sighting

FIELDS = [
    "identity",
    "name",
    "camera",
    "track",
    "tracklet",
    "frame",
    "timestamp",
    "x1",
    "y1",
    "x2",
    "y2",
    "confidence",
    "score",
]
FORMATS = ("csv", "jsonl")


def sighting_record(s: Sighting) -> dict[str, object]:
    """One sighting as a flat, rounded dict with the keys ``FIELDS``, in that order."""
    x1, y1, x2, y2 = (round(float(v), 1) for v in s.bbox)
    return {
        "identity": s.identity,
        "name": s.name,
        "camera": s.camera,
        "track": s.track,
        "tracklet": s.tracklet,
        "frame": s.frame,
        "timestamp": round(float(s.timestamp), 3),
        "x1": x1,
        "y1": y1,
        "x2": x2,
        "y2": y2,
        "confidence": round(float(s.confidence), 4),
        "score": None if s.score is None else round(float(s.score), 4),
    }


def write_rows(
    sightings: Iterable[Sighting], csv_out: TextIO | None = None, jsonl_out: TextIO | None = None
) -> int:
    """Write ``sightings`` as CSV (with a header) and/or JSON lines in one pass; returns rows."""
    writer = csv.writer(csv_out) if csv_out is not None else None
    if writer is not None:
        writer.writerow(FIELDS)
    n = 0
    for s in sightings:
        rec = sighting_record(s)
        if writer is not None:
            writer.writerow(["" if v is None else v for v in rec.values()])
        if jsonl_out is not None:
            jsonl_out.write(json.dumps(rec) + "\n")
        n += 1
    return n
