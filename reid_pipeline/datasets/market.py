"""ReID dataset loaders: Market-1501, DukeMTMC-reID, MSMT17 and generic ``pid_cam`` folders.

Every loader returns the same :class:`ReidDataset` of :class:`~reid_pipeline.types.ImageRecord`
lists, so training and evaluation never care which benchmark they read. The rules follow
torchreid's loaders (the numbers researchers compare with come from them):

* junk images (pid ``-1``) are dropped from every split;
* distractors (pid ``0``) are kept (they only occur in Market-1501's gallery);
* camera ids are 0-based (Market ``c1`` -> 0);
* train records keep their *original* pids; :func:`relabel` maps them to ``0..N-1`` for a
  classifier head (query/gallery must keep original pids so they can be compared).

Unlike torchreid, a file whose name doesn't parse is skipped with a counted warning rather
than crashing half-way, and a wrong root says which folders were expected.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reid_pipeline.errors import InputError
from reid_pipeline.types import ImageRecord

log = logging.getLogger(__name__)

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")

# Market/Duke style: 0002_c1s1_000451_03.jpg, -1_c3s2_..., 0005_c2_x.jpg
_PID_CCAM = re.compile(r"^(-?\d+)_c(\d+)")
# Generic style: {pid}_{cam}_anything.jpg, e.g. 12_3_0001.jpg
_PID_CAM = re.compile(r"^(-?\d+)_(\d+)(?:[_.]|$)")

_MARKET_SPLITS = ("bounding_box_train", "query", "bounding_box_test")
_GENERIC_SPLITS = ("train", "query", "gallery")


@dataclass
class ReidDataset:
    """One benchmark: three lists of labelled images plus where they came from."""

    name: str  # "market1501", "dukemtmcreid", "msmt17" or "folder"
    root: str  # the folder the splits were read from
    train: list[ImageRecord]
    query: list[ImageRecord]
    gallery: list[ImageRecord]
    skipped: int = 0  # files whose names didn't parse (warned about when loading)
    splits: dict[str, str] = field(default_factory=dict)  # split -> folder/list it came from

    @property
    def num_train_pids(self) -> int:
        return len({r.pid for r in self.train})

    @property
    def num_train_cams(self) -> int:
        return len({r.camid for r in self.train})

    def require_test(self) -> None:
        """Raise InputError unless query and gallery both hold images (evaluation needs both)."""
        for split in ("query", "gallery"):
            if not getattr(self, split):
                where = self.splits.get(split, f"no '{split}' folder")
                raise InputError(
                    f"dataset {self.root!r} has no {split} images ({where}); "
                    "evaluation needs query and gallery splits"
                )

    def require_train(self) -> None:
        """Raise InputError unless the train split holds images."""
        if not self.train:
            where = self.splits.get("train", "no train folder")
            raise InputError(f"dataset {self.root!r} has no train images ({where})")

    def summary(self) -> str:
        def ids(recs: list[ImageRecord]) -> int:
            return len({r.pid for r in recs})

        return (
            f"{self.name} at {self.root}: train {len(self.train)} images / "
            f"{ids(self.train)} ids, query {len(self.query)} / {ids(self.query)}, "
            f"gallery {len(self.gallery)} / {ids(self.gallery)}"
            + (f", {self.skipped} unparsable file names skipped" if self.skipped else "")
        )


# ----------------------------------------------------------------------------- images


def read_image(path: str | Path) -> np.ndarray:
    """Read an image as a BGR uint8 array; InputError naming the file if it can't be decoded.

    Reads bytes then ``cv2.imdecode`` so non-ASCII paths work on every platform.
    """
    import cv2

    p = Path(path)
    try:
        data = np.fromfile(str(p), dtype=np.uint8)
    except OSError as e:
        raise InputError(f"image {str(p)!r} cannot be read: {e.strerror or e}") from None
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise InputError(f"image {str(p)!r} is not a decodable image")
    return img


def read_images(paths: Sequence[str | Path]) -> tuple[list[np.ndarray], list[int]]:
    """Read many images, skipping undecodable ones.

    Returns the decoded images and the indices (into ``paths``) that failed; one warning
    states the count and the first offender, so a corrupt file never silently shifts
    results and never stops a long run.
    """
    images: list[np.ndarray] = []
    bad: list[int] = []
    for i, p in enumerate(paths):
        try:
            images.append(read_image(p))
        except InputError:
            bad.append(i)
    if bad:
        log.warning(
            "%d of %d images could not be decoded and were skipped (first: %s)",
            len(bad),
            len(paths),
            paths[bad[0]],
        )
    return images, bad


# ----------------------------------------------------------------------------- helpers


def relabel(records: Iterable[ImageRecord]) -> tuple[list[ImageRecord], dict[int, int]]:
    """Map pids to ``0..N-1`` (sorted by original pid) for a classification head.

    Returns the relabelled records and the ``original pid -> label`` map (kept with a
    checkpoint, it tells which label is which person).
    """
    records = list(records)
    mapping = {pid: i for i, pid in enumerate(sorted({r.pid for r in records}))}
    return [ImageRecord(r.path, mapping[r.pid], r.camid) for r in records], mapping


def parse_name(name: str) -> tuple[int, int, bool] | None:
    """``(pid, camera number as written, market_style)`` from a file name, or None.

    ``0002_c1s1_000451_03.jpg`` -> (2, 1, True); ``12_3_0001.jpg`` -> (12, 3, False).
    """
    m = _PID_CCAM.match(name)
    if m:
        return int(m.group(1)), int(m.group(2)), True
    m = _PID_CAM.match(name)
    if m:
        return int(m.group(1)), int(m.group(2)), False
    return None


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)


def _scan_named(folder: Path, counter: list[int]) -> list[tuple[str, int, int, bool]]:
    """(path, pid, camera number, market_style) for every parsable image; counts the rest."""
    out = []
    bad: list[str] = []
    for p in _images_in(folder):
        parsed = parse_name(p.name)
        if parsed is None:
            bad.append(p.name)
            continue
        out.append((str(p), *parsed))
    if bad:
        counter[0] += len(bad)
        log.warning(
            "%s: %d image file names do not match PID_cCAM*.jpg or PID_CAM_*.jpg and "
            "were skipped (first: %s)",
            folder,
            len(bad),
            bad[0],
        )
    return out


def _nonempty(records: list[ImageRecord], split: str, where: Path, root: Path) -> None:
    if not records:
        raise InputError(
            f"dataset {str(root)!r}: split '{split}' ({where}) holds no usable "
            "images (expected files named like 0002_c1s1_000451_03.jpg)"
        )


# ----------------------------------------------------------------------------- layouts


def _find_market_dir(root: Path) -> Path | None:
    """The folder holding bounding_box_train/query/bounding_box_test, at any usual depth."""
    candidates = [
        root,
        root / "Market-1501-v15.09.15",
        root / "market1501",
        root / "market1501" / "Market-1501-v15.09.15",
        root / "DukeMTMC-reID",
        root / "dukemtmcreid",
        root / "dukemtmcreid" / "DukeMTMC-reID",
    ]
    for c in candidates:
        if all((c / s).is_dir() for s in _MARKET_SPLITS):
            return c
    return None


def _explain_partial_market(root: Path) -> None:
    """A root with some but not all official folders is a broken copy: say what is missing."""
    for c in (root, root / "Market-1501-v15.09.15", root / "DukeMTMC-reID"):
        have = [s for s in _MARKET_SPLITS if (c / s).is_dir()]
        if "bounding_box_train" in have or "bounding_box_test" in have:
            missing = [s for s in _MARKET_SPLITS if s not in have]
            raise InputError(
                f"dataset root {str(root)!r}: {c} has {', '.join(have)} but not "
                f"{', '.join(missing)} (expected all of {', '.join(_MARKET_SPLITS)})"
            )


def _load_market_like(root: Path, data_dir: Path) -> ReidDataset:
    name = "dukemtmcreid" if "duke" in str(data_dir).lower() else "market1501"
    skipped = [0]
    splits: dict[str, list[ImageRecord]] = {}
    for split, folder in zip(("train", "query", "gallery"), _MARKET_SPLITS):
        recs = []
        for path, pid, cam, _ in _scan_named(data_dir / folder, skipped):
            if pid == -1:
                continue  # junk: ignored, as in the official protocol
            if cam < 1:
                raise InputError(
                    f"{path}: camera c{cam} is not valid (cameras are numbered from 1)"
                )
            recs.append(ImageRecord(path, pid, cam - 1))
        _nonempty(recs, split, data_dir / folder, root)
        splits[split] = recs
    return ReidDataset(
        name,
        str(data_dir),
        splits["train"],
        splits["query"],
        splits["gallery"],
        skipped[0],
        {s: str(data_dir / f) for s, f in zip(("train", "query", "gallery"), _MARKET_SPLITS)},
    )


def _find_msmt_dir(root: Path) -> tuple[Path, str, str] | None:
    versions = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
    for base in (root, root / "msmt17"):
        for ver, (tr, te) in versions.items():
            if (base / ver / "list_train.txt").is_file():
                return base / ver, tr, te
    if (root / "list_train.txt").is_file():
        for tr, te in versions.values():
            if (root / tr).is_dir():
                return root, tr, te
    return None


def _read_list(list_path: Path, img_dir: Path, root: Path) -> list[ImageRecord]:
    """One MSMT17 list file: lines ``0000/0000_000_01_0303morning_0015_0.jpg 0``."""
    if not list_path.is_file():
        raise InputError(f"dataset {str(root)!r}: {list_path} is missing (MSMT17 layout)")
    recs = []
    for n, line in enumerate(list_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rel, pid_s = line.split()
            pid = int(pid_s)
            cam = int(Path(rel).name.split("_")[2]) - 1
        except (ValueError, IndexError):
            raise InputError(f"{list_path}:{n}: expected 'path pid', got {line!r}") from None
        if pid == -1:
            continue
        recs.append(ImageRecord(str(img_dir / rel), pid, cam))
    return recs


def _load_msmt(root: Path, found: tuple[Path, str, str]) -> ReidDataset:
    base, tr, te = found
    out = {}
    for split, lst, folder in (
        ("train", "list_train.txt", tr),
        ("query", "list_query.txt", te),
        ("gallery", "list_gallery.txt", te),
    ):
        recs = _read_list(base / lst, base / folder, root)
        _nonempty(recs, split, base / lst, root)
        out[split] = recs
    return ReidDataset(
        "msmt17",
        str(base),
        out["train"],
        out["query"],
        out["gallery"],
        0,
        {
            "train": str(base / "list_train.txt"),
            "query": str(base / "list_query.txt"),
            "gallery": str(base / "list_gallery.txt"),
        },
    )


def _load_folder(root: Path) -> ReidDataset | None:
    """Generic folder(s) of ``PID_cCAM*.jpg`` / ``PID_CAM_*.jpg`` files.

    With ``train``/``query``/``gallery`` sub-folders each is one split (any may be absent);
    otherwise every image in ``root`` is training data. Camera numbers are mapped to
    ``0..C-1`` in sorted order over all splits, so 0- and 1-based numbering both work and
    the same camera gets the same id in every split.
    """
    skipped = [0]
    present = [s for s in _GENERIC_SPLITS if (root / s).is_dir()]
    raw: dict[str, list[tuple[str, int, int, bool]]] = {}
    if present:
        for s in present:
            raw[s] = _scan_named(root / s, skipped)
    else:
        raw["train"] = _scan_named(root, skipped)
        present = ["train"]
    if not any(raw.values()):
        return None
    cams = sorted({c for items in raw.values() for _, _, c, _ in items})
    cam_ids = {c: i for i, c in enumerate(cams)}
    out: dict[str, list[ImageRecord]] = {s: [] for s in _GENERIC_SPLITS}
    for s, items in raw.items():
        out[s] = [ImageRecord(p, pid, cam_ids[c]) for p, pid, c, _ in items if pid != -1]
        where = root / s if s in _GENERIC_SPLITS and (root / s).is_dir() else root
        _nonempty(out[s], s, where, root)
    splits = {s: str(root / s if (root / s).is_dir() else root) for s in present}
    return ReidDataset(
        "folder", str(root), out["train"], out["query"], out["gallery"], skipped[0], splits
    )


def load_dataset(root: str | Path) -> ReidDataset:
    """Load any supported layout from ``root``; InputError naming it when none fits.

    Tried in order: Market-1501 / DukeMTMC-reID official folders (``root`` itself, or one of
    the usual wrapping levels such as ``Market-1501-v15.09.15``), MSMT17 list files, then a
    generic folder of ``PID_cCAM*.jpg`` files (with optional train/query/gallery folders).
    """
    if not str(root).strip():
        raise InputError("no dataset root given (empty path): pass the dataset folder")
    r = Path(root).expanduser()
    if not r.exists():
        raise InputError(f"dataset root {str(r)!r} does not exist")
    if not r.is_dir():
        raise InputError(f"dataset root {str(r)!r} is not a folder")
    market = _find_market_dir(r)
    if market is None:
        _explain_partial_market(r)
    if market is not None:
        ds = _load_market_like(r, market)
    elif (msmt := _find_msmt_dir(r)) is not None:
        ds = _load_msmt(r, msmt)
    else:
        folder = _load_folder(r)
        if folder is None:
            raise InputError(
                f"dataset root {str(r)!r} has no recognised layout: expected "
                f"{'/'.join(_MARKET_SPLITS)} folders (Market-1501/DukeMTMC-reID, optionally "
                "under Market-1501-v15.09.15 or DukeMTMC-reID), MSMT17_V1|V2 with list_*.txt, "
                "or train/query/gallery folders (or a flat folder) of PID_cCAM*.jpg images"
            )
        ds = folder
    log.info("%s", ds.summary())
    return ds
