"""The ceiling of the identity decisions on one run's tracks: IDF1 with an oracle.

Reads a ``reid evaluate-mot`` output folder's per-track result (``mot/*.tracks.txt``),
gives every track the ground-truth person its matched boxes belong to most (py-motmetrics'
matching at IoU >= 0.5, as the evaluation does), and scores that relabelled result. Two
tracks of one person in the same frame keep their own ids (an identity cannot be in two
places at once). The gap between this and the run's IDF1 by identity is what better
identity decisions could still win on these tracks; the gap between it and 100 is the
tracker's and the detector's:

    uv run python -m reid_pipeline.bench.mot_oracle RUN_DIR ../shared/data/pets09-s2l1 \\
        --scale 0.625 --frames 1:400
"""

from __future__ import annotations

import argparse
from collections import Counter, defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np


def oracle_ids(ident: np.ndarray, frame: np.ndarray, majority: dict[int, int]) -> np.ndarray:
    """Each row's track id replaced by its track's majority person (offset past every track
    id), except where that would put one label twice in a frame: that row keeps its own."""
    offset = int(ident.max()) + 1 if len(ident) else 0
    new = np.array([majority[int(t)] + offset if int(t) in majority else int(t) for t in ident])
    for f in np.unique(frame):
        seen: set[int] = set()
        for i in np.flatnonzero(frame == f):
            if int(new[i]) in seen:
                new[i] = ident[i]
            seen.add(int(new[i]))
    return new


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a reid evaluate-mot --out folder")
    ap.add_argument("sequence", help="the MOTChallenge sequence folder")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--frames", default="")
    a = ap.parse_args()
    import motmetrics as mm

    from reid_pipeline.evaluate.mot import (
        accumulate,
        read_gt,
        read_result,
        read_seqinfo,
        sequence_frames,
    )

    seq = read_seqinfo(a.sequence)
    gt = read_gt(Path(a.sequence) / "gt" / "gt.txt", seq)
    frames = sequence_frames(a.frames, seq)
    found = sorted((Path(a.run) / "mot").glob("*.tracks.txt"))
    if not found:
        raise SystemExit(f"error: no mot/*.tracks.txt under {a.run!r} (a reid evaluate-mot run)")
    tracks = read_result(found[0]).to_sequence(0, a.scale)
    acc, _ = accumulate(gt, tracks, frames)
    ev = acc.mot_events
    matched = ev[ev.Type.isin(["MATCH", "SWITCH"])]
    votes: dict[int, Counter[int]] = defaultdict(Counter)
    for o, h in zip(matched.OId, matched.HId):
        votes[int(h)][int(o)] += 1
    majority = {h: c.most_common(1)[0][0] for h, c in votes.items()}
    oracle = replace(tracks, ident=oracle_ids(tracks.ident, tracks.frame, majority))
    mh = mm.metrics.create()
    names = ["idf1", "mota", "num_switches"]
    rows = [("tracks", tracks)]
    ids = sorted((Path(a.run) / "mot").glob("*.identities.txt"))
    if ids:
        rows.append(("identities", read_result(ids[0]).to_sequence(0, a.scale)))
    rows.append(("oracle", oracle))
    for label, res in rows:
        v = mh.compute(accumulate(gt, res, frames)[0], metrics=names, return_dataframe=False)
        print(
            f"{label:>10}: IDF1 {100 * v['idf1']:.1f}  MOTA {100 * v['mota']:.1f}  "
            f"switches {int(v['num_switches'])}"
        )


if __name__ == "__main__":
    main()
