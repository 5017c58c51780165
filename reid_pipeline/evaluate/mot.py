"""MOTChallenge evaluation of tracking results with py-motmetrics (CLEAR MOT, identity metrics).

Inputs are MOTChallenge files: a sequence folder's ``seqinfo.ini`` and ``gt/gt.txt`` and a
result file in the MOT format (``frame,id,x,y,w,h[,conf,...]``, 1-based frames, top-left
corner and size in pixels). Scoring is py-motmetrics' own: its ``MOTAccumulator`` fed frame
by frame with its IoU distance (a pair matches at IoU >= ``iou``, 0.5 as MOTChallenge), and
its metrics host computing MOTA, MOTP, IDF1/IDP/IDR, ID switches, fragmentations and
mostly tracked / partially tracked / mostly lost. HOTA is reported when the installed
py-motmetrics has it (1.4.0, the locked version, has not; the value is then ``None``).

Ground truth, as MOTChallenge reads it:

* **MOT15 format** (7, 8 or 10 columns; columns 8-10 are world coordinates): rows with
  flag (column 7) 0 are *ignored regions*; every other row is a person to track.
* **MOT16+ format** (9 columns: ``...,flag,class,visibility``), the rules of py-motmetrics'
  MOTChallenge loader (``motmetrics.utils.CLEAR_MOT_M`` with ``preprocessResult``): only
  pedestrians (class 1) with flag 1 are scored; distractor classes (2 person on vehicle,
  7 static person, 8 distractor, 12 reflection) and rows of negative visibility are ignored
  regions. Pedestrian rows with flag 0 are ignored regions as well (the library would keep
  predictions on them as false positives; MOTChallenge ignores them).

A prediction that an ignored region takes in the frame's one-to-one IoU assignment against
*all* ground-truth rows of the frame (the library's ``preprocessResult``) is dropped: it is
neither a true nor a false positive.

``motmetrics.distances.iou_matrix`` calls ``np.asfarray``, which NumPy 2 (the version the
lock pins) removed; ``iou_distance`` is that function with ``np.asarray`` instead, computing
the IoU with the library's own ``boxiou``.
"""

from __future__ import annotations

import configparser
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reid_pipeline.config import frame_range
from reid_pipeline.errors import InputError, OutputError

log = logging.getLogger(__name__)

PEDESTRIAN = 1
# motmetrics.preprocess.preprocessResult's distractors (MOT16 class ids)
DISTRACTOR_CLASSES = (2, 7, 8, 12)

# what is computed and reported, in py-motmetrics' names
METRICS = [
    "mota",
    "motp",
    "idf1",
    "idp",
    "idr",
    "recall",
    "precision",
    "num_switches",
    "num_fragmentations",
    "mostly_tracked",
    "partially_tracked",
    "mostly_lost",
    "num_false_positives",
    "num_misses",
    "num_matches",
    "num_objects",
    "num_predictions",
    "num_unique_objects",
    "num_transfer",
    "num_ascend",
    "num_migrate",
    "idtp",
    "idfp",
    "idfn",
]


def library_version() -> str:
    import motmetrics

    return str(getattr(motmetrics, "__version__", "?"))


def has_hota() -> bool:
    """Whether the installed py-motmetrics computes HOTA (newer releases than 1.4.0)."""
    import motmetrics as mm

    return "hota_alpha" in mm.metrics.create().metrics


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class SeqInfo:
    """A MOTChallenge sequence folder's ``seqinfo.ini``."""

    root: Path
    name: str
    length: int
    frame_rate: float
    width: int
    height: int
    im_dir: str
    im_ext: str

    @property
    def ini(self) -> Path:
        return self.root / "seqinfo.ini"

    @property
    def gt_path(self) -> Path:
        return self.root / "gt" / "gt.txt"

    @property
    def det_path(self) -> Path:
        return self.root / "det" / "det.txt"

    @property
    def frames_dir(self) -> Path:
        return self.root / self.im_dir


def read_seqinfo(folder: str | Path) -> SeqInfo:
    """Read ``<folder>/seqinfo.ini``; ``InputError`` naming the file when it is unusable."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(
            f"MOTChallenge sequence folder {str(root)!r} does not exist or is not a folder"
        )
    ini = root / "seqinfo.ini"
    if not ini.is_file():
        raise InputError(
            f"{str(ini)!r} does not exist: a MOTChallenge sequence folder holds "
            "seqinfo.ini, gt/gt.txt and img1/"
        )
    cp = configparser.ConfigParser()
    try:
        cp.read_string(ini.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error) as e:
        raise InputError(f"{str(ini)!r} cannot be read: {str(e).splitlines()[0]}") from None
    if "Sequence" not in cp:
        raise InputError(f"{str(ini)!r} has no [Sequence] section")
    sec = cp["Sequence"]

    def number(key: str, kind: type, default: Any = None) -> Any:
        raw = sec.get(key)
        if raw is None:
            if default is None:
                raise InputError(f"{str(ini)!r}: [Sequence] has no {key}")
            return default
        try:
            v = kind(float(raw)) if kind is float else kind(raw)
        except ValueError:
            raise InputError(f"{str(ini)!r}: {key}={raw!r} is not a number") from None
        return v

    length = number("seqLength", int)
    if length < 1:
        raise InputError(f"{str(ini)!r}: seqLength must be >= 1, got {length}")
    return SeqInfo(
        root=root,
        name=sec.get("name", root.name).strip() or root.name,
        length=length,
        frame_rate=number("frameRate", float, 0.0),
        width=number("imWidth", int, 0),
        height=number("imHeight", int, 0),
        im_dir=sec.get("imDir", "img1").strip() or "img1",
        im_ext=sec.get("imExt", ".jpg").strip(),
    )


def _rows(path: Path, what: str, min_cols: int, max_cols: int) -> tuple[np.ndarray, list[int]]:
    """Numeric rows of a MOT text file (comma or whitespace separated) as a float array,
    padded with -1 to ``max_cols``; also each row's own column count."""
    name = repr(str(path))
    if not path.is_file():
        raise InputError(f"{what} {name} does not exist")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{what} {name} cannot be read: {e}") from None
    rows: list[list[float]] = []
    counts: list[int] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split(",")] if "," in line else line.split()
        if not min_cols <= len(parts) <= max_cols:
            raise InputError(
                f"{what} {name}, line {lineno}: {len(parts)} columns, expected "
                f"{min_cols} to {max_cols} (frame,id,x,y,w,h,...)"
            )
        try:
            vals = [float(v) for v in parts]
        except ValueError:
            raise InputError(f"{what} {name}, line {lineno}: not numbers: {line[:60]!r}") from None
        if not all(math.isfinite(v) for v in vals[:6]):
            raise InputError(f"{what} {name}, line {lineno}: frame, id and box must be finite")
        if vals[0] < 1 or vals[0] != int(vals[0]) or vals[1] != int(vals[1]):
            raise InputError(
                f"{what} {name}, line {lineno}: frame must be a 1-based integer "
                f"and id an integer, got {parts[0]}, {parts[1]}"
            )
        rows.append(vals + [-1.0] * (max_cols - len(vals)))
        counts.append(len(parts))
    a = np.asarray(rows, np.float64).reshape(-1, max_cols)
    return a, counts


@dataclass
class GroundTruth:
    """A ``gt.txt``: boxes (x, y, w, h) per row; ``scored`` rows are people to track,
    ``ignore`` rows ignored regions (see the module docstring)."""

    path: Path
    fmt: str
    frame: np.ndarray
    ident: np.ndarray
    box: np.ndarray
    scored: np.ndarray
    ignore: np.ndarray


def read_gt(path: str | Path, seq: SeqInfo | None = None, fmt: str = "auto") -> GroundTruth:
    """Read a MOTChallenge ground truth (``fmt``: ``auto``, ``mot15`` or ``mot16``)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(
            f"ground truth {str(p)!r} does not exist (a MOTChallenge sequence "
            "holds it as gt/gt.txt)"
        )
    a, counts = _rows(p, "ground truth", 7, 10)
    if counts and len(set(counts)) > 1:
        first = counts[0]
        bad = next(i for i, c in enumerate(counts) if c != first)
        raise InputError(
            f"ground truth {str(p)!r}: rows have {first} and {counts[bad]} "
            f"columns (data row {bad + 1}); every row needs the same columns"
        )
    ncols = counts[0] if counts else 7
    if fmt == "auto":
        fmt = "mot16" if ncols == 9 else "mot15"
    if fmt == "mot16" and ncols < 9:
        raise InputError(
            f"ground truth {str(p)!r}: {ncols} columns, MOT16+ ground truth has "
            "9 (frame,id,x,y,w,h,flag,class,visibility)"
        )
    if seq is not None and len(a) and a[:, 0].max() > seq.length:
        row = int(np.argmax(a[:, 0] > seq.length))
        raise InputError(
            f"ground truth {str(p)!r}, data row {row + 1}: frame "
            f"{int(a[row, 0])} lies beyond seqLength={seq.length} of "
            f"{str(seq.ini)!r}"
        )
    flag = a[:, 6]
    if fmt == "mot16":
        cls, vis = a[:, 7], a[:, 8]
        # motmetrics.utils.CLEAR_MOT_M: Confidence >= 0.99 & ClassId == 1
        scored = (flag >= 0.99) & (cls == PEDESTRIAN)
        ignore = (
            np.isin(cls, DISTRACTOR_CLASSES) | (vis < 0) | ((flag < 0.99) & (cls == PEDESTRIAN))
        )
    else:
        scored = flag > 0
        ignore = ~scored
    return GroundTruth(
        p, fmt, a[:, 0].astype(np.int64), a[:, 1].astype(np.int64), a[:, 2:6].copy(), scored, ignore
    )


@dataclass
class MotResult:
    """A tracker's result file: one box (x, y, w, h) per row with its id."""

    path: Path
    frame: np.ndarray
    ident: np.ndarray
    box: np.ndarray
    conf: np.ndarray

    def to_sequence(self, frame_offset: int = 0, scale: float = 1.0) -> MotResult:
        """The result in the sequence's frames and pixels: frames + ``frame_offset`` (a
        video cut to part of the sequence), boxes / ``scale`` (a resized video)."""
        return MotResult(
            self.path,
            self.frame + int(frame_offset),
            self.ident,
            self.box / float(scale),
            self.conf,
        )


def read_result(path: str | Path) -> MotResult:
    """Read a MOT-format result file (6 to 10 columns); one id twice in a frame is an error."""
    p = Path(path)
    a, _ = _rows(p, "MOT result file", 6, 10)
    frame, ident = a[:, 0].astype(np.int64), a[:, 1].astype(np.int64)
    if len(a):
        _, first, counts = np.unique(
            np.stack([frame, ident], 1), axis=0, return_index=True, return_counts=True
        )
        if (counts > 1).any():
            k = int(first[np.argmax(counts > 1)])
            raise InputError(
                f"MOT result file {str(p)!r}: id {ident[k]} appears more than once "
                f"in frame {frame[k]}"
            )
    return MotResult(p, frame, ident, a[:, 2:6].copy(), a[:, 6].copy())


def sequence_frames(spec: str, seq: SeqInfo) -> tuple[int, int]:
    """``mot_eval.frames`` (``A:B`` or empty) checked against the sequence's length."""
    part = frame_range(spec, "mot_eval.frames")
    if part is None:
        return 1, seq.length
    a, b = part
    if b > seq.length:
        raise InputError(
            f"frames {a}:{b} lie outside the sequence: {str(seq.ini)!r} has "
            f"seqLength={seq.length} (mot_eval.frames)"
        )
    return a, b


# ---------------------------------------------------------------- scoring


def iou_distance(objs: np.ndarray, hyps: np.ndarray, max_iou: float) -> np.ndarray:
    """``motmetrics.distances.iou_matrix`` (1 - IoU, NaN beyond ``max_iou``) for NumPy 2."""
    from motmetrics.distances import boxiou

    if np.size(objs) == 0 or np.size(hyps) == 0:
        return np.empty((0, 0))
    objs = np.asarray(objs, np.float64)
    hyps = np.asarray(hyps, np.float64)
    dist = 1 - boxiou(objs[:, None], hyps[None, :])
    return np.where(dist > max_iou, np.nan, dist)


def accumulate(
    gt: GroundTruth, res: MotResult, frames: tuple[int, int], iou: float = 0.5
) -> tuple[Any, int]:
    """A py-motmetrics accumulator of ``res`` against ``gt`` over ``frames`` (inclusive),
    and how many predictions fell on ignored regions (dropped)."""
    import motmetrics as mm
    from motmetrics.lap import linear_sum_assignment

    lo, hi = frames
    max_d = 1.0 - float(iou)
    g_in = (gt.frame >= lo) & (gt.frame <= hi)
    r_in = (res.frame >= lo) & (res.frame <= hi)
    g_idx = {int(f): np.flatnonzero(g_in & (gt.frame == f)) for f in np.unique(gt.frame[g_in])}
    r_idx = {int(f): np.flatnonzero(r_in & (res.frame == f)) for f in np.unique(res.frame[r_in])}
    acc = mm.MOTAccumulator(auto_id=False)
    dropped = 0
    for f in sorted(set(g_idx) | set(r_idx)):
        gi = g_idx.get(f, np.empty(0, np.int64))
        ri = r_idx.get(f, np.empty(0, np.int64))
        if len(ri) and gt.ignore[gi].any():
            # motmetrics.preprocess.preprocessResult: one-to-one assignment against every
            # gt row of the frame; predictions taken by an ignored region are dropped
            d = iou_distance(gt.box[gi], res.box[ri], max_d)
            rows, cols = linear_sum_assignment(d)
            drop = {int(c) for r, c in zip(rows, cols) if np.isfinite(d[r, c]) and gt.ignore[gi[r]]}
            if drop:
                dropped += len(drop)
                ri = ri[[j for j in range(len(ri)) if j not in drop]]
        gi = gi[gt.scored[gi]]
        if not len(gi) and not len(ri):
            continue
        acc.update(
            gt.ident[gi].tolist(),
            res.ident[ri].tolist(),
            iou_distance(gt.box[gi], res.box[ri], max_d),
            frameid=f,
        )
    return acc, dropped


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return None if math.isnan(f) else f
    return v


def evaluate(
    gt: GroundTruth, res: MotResult, frames: tuple[int, int], iou: float = 0.5
) -> dict[str, Any]:
    """py-motmetrics' figures of ``res`` over ``frames``, as plain JSON-able numbers.

    Adds ``motp_iou`` (MOTChallenge's MOTP: the mean IoU of the matches; py-motmetrics'
    ``motp`` is the mean distance 1 - IoU), ``num_ignored`` (predictions on ignored
    regions), ``num_unique_predictions`` (ids in the scored frames) and ``hota``.
    """
    import motmetrics as mm

    acc, dropped = accumulate(gt, res, frames, iou)
    mh = mm.metrics.create()
    hota = has_hota()
    if not len(acc.events):
        # nothing to score at all (no gt, no predictions in these frames)
        vals: dict[str, Any] = {m: None for m in METRICS}
    else:
        vals = {
            k: _plain(v)
            for k, v in mh.compute(acc, metrics=METRICS, return_dataframe=False).items()
        }
    lo, hi = frames
    r_in = (res.frame >= lo) & (res.frame <= hi)
    vals["motp_iou"] = None if vals.get("motp") is None else 1.0 - vals["motp"]
    vals["num_ignored"] = int(dropped)
    vals["num_unique_predictions"] = len(np.unique(res.ident[r_in]))
    vals["hota"] = None  # see has_hota(): HOTA needs the library's multi-threshold path
    if hota:
        log.info("this py-motmetrics has HOTA metrics; reid evaluate-mot does not use them yet")
    return vals


# ---------------------------------------------------------------- det.txt for a resized video


def convert_det(
    src: str | Path,
    dst: str | Path,
    scale: float,
    frame_offset: int,
    frames: tuple[int, int] | None = None,
) -> Path:
    """Write ``src`` (a sequence's ``det.txt``) for a video of ``scale`` times its size
    whose frame ``n`` is the sequence's frame ``n + frame_offset``; rows outside ``frames``
    (sequence numbering) are left out."""
    s, d = Path(src), Path(dst)
    a, counts = _rows(s, "MOT detections file", 7, 10)
    keep = np.ones(len(a), bool)
    if frames is not None:
        keep = (a[:, 0] >= frames[0]) & (a[:, 0] <= frames[1])
    lines = []
    for row, n in zip(a[keep], np.asarray(counts)[keep]):
        f = int(row[0]) - int(frame_offset)
        x, y, w, h = (float(v) * scale for v in row[2:6])
        rest = ",".join(f"{v:g}" for v in row[6:n])
        lines.append(f"{f},{int(row[1])},{x:.3f},{y:.3f},{w:.3f},{h:.3f},{rest}\n")
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        d.write_text("".join(lines))
    except OSError as e:
        raise OutputError(f"cannot write {str(d)!r}: {e.strerror or e}") from None
    return d


# ---------------------------------------------------------------- report


_COLUMNS = [
    ("MOTA", "mota", "pct"),
    ("MOTP", "motp_iou", "pct"),
    ("IDF1", "idf1", "pct"),
    ("IDP", "idp", "pct"),
    ("IDR", "idr", "pct"),
    ("Rcll", "recall", "pct"),
    ("Prcn", "precision", "pct"),
    ("IDsw", "num_switches", "int"),
    ("Frag", "num_fragmentations", "int"),
    ("MT", "mostly_tracked", "int"),
    ("PT", "partially_tracked", "int"),
    ("ML", "mostly_lost", "int"),
    ("FP", "num_false_positives", "int"),
    ("FN", "num_misses", "int"),
    ("GT", "num_unique_objects", "int"),
    ("IDs", "num_unique_predictions", "int"),
    ("HOTA", "hota", "pct"),
]


def render_table(rows: dict[str, dict[str, Any]]) -> str:
    """A fixed-width table, one line per evaluation (percent for ratios; '-' for none)."""
    w = max(len(n) for n in rows) + 2 if rows else 10
    head = "".ljust(w) + "".join(f"{c:>7}" for c, _, _ in _COLUMNS)
    lines = [head]
    for name, vals in rows.items():
        cells = []
        for _, key, kind in _COLUMNS:
            v = vals.get(key)
            if v is None:
                cells.append(f"{'-':>7}")
            elif kind == "pct":
                cells.append(f"{100 * v:7.1f}")
            else:
                cells.append(f"{int(v):7d}")
        lines.append(name.ljust(w) + "".join(cells))
    return "\n".join(lines)


__all__ = [
    "METRICS",
    "GroundTruth",
    "MotResult",
    "SeqInfo",
    "accumulate",
    "convert_det",
    "evaluate",
    "has_hota",
    "iou_distance",
    "library_version",
    "read_gt",
    "read_result",
    "read_seqinfo",
    "render_table",
    "sequence_frames",
]
