"""Pictures of an evaluation: CMC curves of every mode on one axis, and ranked lists.

The ranked list follows the protocol: gallery images sharing the query's identity *and*
camera are not shown (they are not counted), so what you see is what was scored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reid_pipeline.evaluate.rank import RankResult
from reid_pipeline.types import ImageRecord


def plot_cmc(results: dict[str, RankResult], path: str | Path, title: str = "") -> Path:
    """One CMC curve per mode (solid) and per re-ranked mode (dashed), R1/mAP in the legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    colors = {"euclidean": "tab:blue", "cosine": "tab:orange", "dissimilarity": "tab:green"}
    for name, r in results.items():
        base = name.split("+")[0]
        ranks = np.arange(1, len(r.cmc) + 1)
        ax.plot(
            ranks,
            100 * r.cmc,
            linestyle="--" if "+rerank" in name else "-",
            color=colors.get(base),
            marker="o" if len(ranks) <= 20 else None,
            markersize=3,
            label=f"{name}: R1 {100 * r.rank(1):.1f}, mAP {100 * r.mAP:.1f}",
        )
    ax.set_xlabel("rank")
    ax.set_ylabel("matching rate (%)")
    ax.set_xscale("log")
    ticks = [
        t for t in (1, 2, 5, 10, 20, 50, 100) if t <= max(len(r.cmc) for r in results.values())
    ]
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    ax.set_ylim(0, 100)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "CMC")
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out)
    plt.close(fig)
    return out


def _tile(
    path: str, h: int, w: int, color: tuple[int, int, int] | None, border: int = 4
) -> np.ndarray:
    import cv2

    from reid_pipeline.datasets.market import read_image
    from reid_pipeline.errors import InputError

    try:
        img = cv2.resize(read_image(path), (w - 2 * border, h - 2 * border))
    except (InputError, cv2.error):  # an unreadable image still gets its slot (grey)
        img = np.full((h - 2 * border, w - 2 * border, 3), 128, np.uint8)
    tile = np.full((h, w, 3), 255, np.uint8)
    if color is not None:
        tile[:] = color
    tile[border : h - border, border : w - border] = img
    return tile


def pick_queries(query: list[ImageRecord], gallery: list[ImageRecord], n: int) -> list[int]:
    """``n`` query indices spread evenly over the queries that have a valid match (the ones
    the metrics count), deterministic so two runs show the same people."""
    cams: dict[int, set[int]] = {}
    for r in gallery:
        cams.setdefault(r.pid, set()).add(r.camid)
    ok = [i for i, q in enumerate(query) if cams.get(q.pid, set()) - {q.camid}]
    if not ok or n <= 0:
        return []
    return sorted({ok[int(i)] for i in np.linspace(0, len(ok) - 1, min(n, len(ok)))})


def plot_ranked_lists(
    distmat: np.ndarray,
    query: list[ImageRecord],
    gallery: list[ImageRecord],
    path: str | Path,
    queries: list[int],
    topk: int = 10,
    tile: tuple[int, int] = (128, 64),
) -> Path:
    """One row per query: the query (grey border), then its top ``topk`` gallery images with a
    green (same identity) or red (different) border; protocol-removed images skipped."""
    import cv2

    h, w = tile
    gp = np.array([r.pid for r in gallery])
    gc = np.array([r.camid for r in gallery])
    rows = []
    for qi in queries:
        q = query[qi]
        order = np.argsort(distmat[qi])
        order = order[~((gp[order] == q.pid) & (gc[order] == q.camid))][:topk]
        tiles = [_tile(q.path, h, w, (160, 160, 160)), np.full((h, 12, 3), 255, np.uint8)]
        for g in order:
            ok = gallery[g].pid == q.pid
            tiles.append(_tile(gallery[g].path, h, w, (0, 170, 0) if ok else (0, 0, 220)))
        while len(tiles) < topk + 2:
            tiles.append(np.full((h, w, 3), 255, np.uint8))
        rows.append(np.concatenate(tiles, axis=1))
        rows.append(np.full((6, rows[-1].shape[1], 3), 255, np.uint8))
    canvas = np.concatenate(rows[:-1], axis=0) if rows else np.full((h, w, 3), 255, np.uint8)
    out = Path(path)
    if not cv2.imwrite(str(out), canvas):
        from reid_pipeline.errors import OutputError

        raise OutputError(f"cannot write {out}")
    return out
