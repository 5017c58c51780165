"""Each camera's result as MOTChallenge files: ``<out>/mot/<camera>.tracks.txt`` and
``<out>/mot/<camera>.identities.txt``.

One line per tracked box, ``frame,id,x,y,w,h,conf,-1,-1,-1`` (the MOTChallenge result
format every MOT tool reads): ``frame`` 1-based (``Sighting.frame + 1``), ``x,y`` the
box's top-left corner and ``w,h`` its size in the processed frames' pixels, ``id`` the
camera's track id in ``tracks.txt`` and the global identity in ``identities.txt`` (boxes
of a tracklet without identity are left out there). Written from the same ``Sighting``
rows as ``sightings.csv`` (``MotFiles.tee`` passes them through), to temporary names that
are renamed at the end, so a crash never leaves half a file where a complete one was.

Coordinates are not shifted by MOTChallenge's 1-based pixel convention: boxes from a
``det.txt`` (``--detector mot``) come back exactly as they went in, and the 1 px offset
against image detectors moves the IoU of a 50 px person by under 2 %.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

from reid_pipeline.errors import OutputError
from reid_pipeline.types import Sighting

KINDS = ("tracks", "identities")


def mot_line(
    frame: int, ident: int, x1: float, y1: float, x2: float, y2: float, conf: float
) -> str:
    """One MOTChallenge result row from an ``x1 y1 x2 y2`` box and a 1-based frame."""
    return f"{frame},{ident},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{conf:.4f},-1,-1,-1\n"


def mot_paths(out_dir: str | Path, camera: str) -> dict[str, Path]:
    """``{"tracks": <out>/mot/<camera>.tracks.txt, "identities": ...}``."""
    d = Path(out_dir) / "mot"
    return {k: d / f"{safe_name(camera)}.{k}.txt" for k in KINDS}


def safe_name(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name) or "camera"


class MotFiles:
    """Writes the MOT files of every camera while the sightings stream past."""

    def __init__(self, out_dir: str | Path, cameras: Iterable[str]) -> None:
        self.out = Path(out_dir)
        self.dir = self.out / "mot"
        self.cameras = list(cameras)
        self._files: dict[tuple[str, str], IO[str]] = {}
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            for cam in self.cameras:
                for kind, path in mot_paths(self.out, cam).items():
                    self._files[(cam, kind)] = open(_tmp(path), "w")  # noqa: SIM115 (closed in close)
        except OSError as e:
            self._abort()
            raise OutputError(
                f"cannot write MOT files in {str(self.dir)!r}: {e.strerror or e}"
            ) from None
        self.rows = 0

    def tee(self, sightings: Iterable[Sighting]) -> Iterator[Sighting]:
        """Yield ``sightings`` unchanged, writing each one's MOT rows on the way."""
        for s in sightings:
            self.add(s)
            yield s

    def add(self, s: Sighting) -> None:
        x1, y1, x2, y2 = (float(v) for v in s.bbox)
        conf = float(s.confidence)
        try:
            tr = self._files.get((s.camera, "tracks"))
            if tr is None:
                return
            tr.write(mot_line(s.frame + 1, s.track, x1, y1, x2, y2, conf))
            if s.identity is not None:
                self._files[(s.camera, "identities")].write(
                    mot_line(s.frame + 1, s.identity, x1, y1, x2, y2, conf)
                )
        except OSError as e:
            self._abort()
            raise OutputError(
                f"cannot write MOT files in {str(self.dir)!r}: {e.strerror or e}"
            ) from None
        self.rows += 1

    def close(self) -> list[Path]:
        """Finish every file (a camera without boxes gets empty ones); returns the paths."""
        done: list[Path] = []
        try:
            for fh in self._files.values():
                fh.close()
            for cam in self.cameras:
                for path in mot_paths(self.out, cam).values():
                    _tmp(path).replace(path)
                    done.append(path)
        except OSError as e:
            raise OutputError(
                f"cannot write MOT files in {str(self.dir)!r}: {e.strerror or e}"
            ) from None
        self._files.clear()
        return done

    def _abort(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()


def _tmp(path: Path) -> Path:
    return path.with_suffix(".txt.tmp")
