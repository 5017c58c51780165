"""A contact sheet of a run's identities: one row per identity, one crop per tracklet.

Does every identity hold one person? On footage without ground truth (the indoor clip) a
person has to look; this puts every identity's tracklets side by side in one image:

    uv run python -m reid_pipeline.bench.contact_sheet runs/indoor/reid.db --out sheet.png

Each row starts with the identity id; each cell is the middle crop of one tracklet, with
its track id and first second written under it.
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

CELL_H, CELL_W, LABEL = 128, 64, 28


def sheet(db: str, max_cells: int = 16) -> np.ndarray:
    from reid_pipeline.config import load_config
    from reid_pipeline.gallery.manage import open_existing

    cfg = load_config()
    with open_existing(db, cfg) as gallery:
        crops = [c for c in gallery.crops() if c.identity_id is not None and c.path is not None]
    by_identity: dict[int, dict[int, list]] = defaultdict(lambda: defaultdict(list))
    for c in crops:
        by_identity[int(c.identity_id or 0)][c.tracklet_id].append(c)
    rows = []
    for ident in sorted(by_identity):
        cells = [_label(np.full((CELL_H + LABEL, 40, 3), 255, np.uint8), f"#{ident}", 0)]
        for _tid, cs in sorted(by_identity[ident].items(), key=lambda kv: kv[1][0].frame)[
            :max_cells
        ]:
            mid = cs[len(cs) // 2]
            img = cv2.imread(str(mid.path))
            cell = np.full((CELL_H + LABEL, CELL_W, 3), 255, np.uint8)
            if img is not None:
                cell[:CELL_H] = cv2.resize(img, (CELL_W, CELL_H))
            t = f"{mid.timestamp:.0f}s" if mid.timestamp is not None else ""
            cells.append(_label(cell, f"t{mid.track_id} {t}", CELL_H))
        row = np.concatenate(cells, axis=1)
        rows.append(row)
    if not rows:
        return np.full((64, 256, 3), 255, np.uint8)
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def _label(cell: np.ndarray, text: str, y: int) -> np.ndarray:
    cv2.putText(cell, text, (2, y + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.33, (0, 0, 0), 1)
    return cell


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("db", help="the run's gallery (reid.db or a URL)")
    ap.add_argument("--out", default="contact_sheet.png")
    ap.add_argument("--max-cells", type=int, default=16, help="tracklets shown per identity")
    a = ap.parse_args()
    img = sheet(a.db, a.max_cells)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(a.out, img)
    print(f"{a.out}: {img.shape[1]}x{img.shape[0]}")


if __name__ == "__main__":
    main()
