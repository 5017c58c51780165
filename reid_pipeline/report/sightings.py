"""``sightings.csv`` and ``sightings.jsonl``: one row per tracked box with its identity.

Why both: CSV opens in a spreadsheet, JSONL streams into other tools line by line. Both are
written from the same ``Sighting`` records (read back from the gallery after a run, so an
interrupted and resumed run exports exactly what is committed).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from reid_pipeline.errors import OutputError
from reid_pipeline.types import Sighting

FIELDS = ["camera", "frame", "timestamp", "x1", "y1", "x2", "y2", "confidence", "track",
          "identity", "score"]


def sighting_row(s: Sighting) -> dict[str, object]:
    """A flat, rounded dict of one sighting (the CSV columns)."""
    x1, y1, x2, y2 = (round(float(v), 1) for v in s.bbox)
    return {
        "camera": s.camera, "frame": s.frame, "timestamp": round(float(s.timestamp), 3),
        "x1": x1, "y1": y1, "x2": x2, "y2": y2,
        "confidence": round(float(s.confidence), 4), "track": s.track,
        "identity": s.identity, "score": None if s.score is None else round(float(s.score), 4),
    }


def write_sightings(sightings: Iterable[Sighting], out_dir: str | Path) -> tuple[Path, Path, int]:
    """Write ``sightings.csv`` and ``sightings.jsonl`` in ``out_dir``; returns paths and count.

    Files are written to a temporary name and renamed, so a crash never leaves half a file
    where a complete one was.
    """
    out = Path(out_dir)
    csv_path, jsonl_path = out / "sightings.csv", out / "sightings.jsonl"
    tmp_csv, tmp_jsonl = csv_path.with_suffix(".csv.tmp"), jsonl_path.with_suffix(".jsonl.tmp")
    n = 0
    try:
        with open(tmp_csv, "w", newline="") as fc, open(tmp_jsonl, "w") as fj:
            wr = csv.DictWriter(fc, fieldnames=FIELDS)
            wr.writeheader()
            for s in sightings:
                row = sighting_row(s)
                wr.writerow({k: ("" if v is None else v) for k, v in row.items()})
                d = asdict(s)
                d["bbox"] = [row["x1"], row["y1"], row["x2"], row["y2"]]
                d["timestamp"], d["confidence"], d["score"] = (row["timestamp"],
                                                               row["confidence"], row["score"])
                fj.write(json.dumps(d) + "\n")
                n += 1
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
            rows.append(Sighting(
                camera=r["camera"], frame=int(r["frame"]), timestamp=float(r["timestamp"]),
                bbox=(float(r["x1"]), float(r["y1"]), float(r["x2"]), float(r["y2"])),
                confidence=float(r["confidence"]), track=int(r["track"]),
                identity=int(r["identity"]) if r["identity"] else None,
                score=float(r["score"]) if r["score"] else None))
    return rows
