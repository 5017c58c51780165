"""Search by photo: who in the gallery is this person, and where and when were they seen?

The photo is either a full frame (a camera still, a phone picture) or already a crop of one
person. In ``auto`` mode the detector runs first and the biggest, most confident person is
taken; a tall picture (the shape of a person crop) in which that person fills most of the
frame, or in which the detector finds no one, is taken whole; anything else without a
person is refused as "no person" - guessing would return confident nonsense.

The crop is embedded by the same model and scored against every stored exemplar with the
same dichotomy classifier the pipeline matches with (``model.pair_probability``), so a
search answers the question the pipeline would have answered. An identity's probability is
that of its best exemplar: exemplars are deliberately diverse views, and one good view is
evidence enough.

Exemplars are tagged with the model version that made them; vectors of another model are
meaningless to this one, so a gallery built with other weights is refused, naming both.
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from reid_pipeline.errors import InputError, OutputError

if TYPE_CHECKING:
    from reid_pipeline.gallery import Gallery

log = logging.getLogger(__name__)

CROP_ASPECT = (1.2, 5.0)  # height / width of pictures accepted as a person crop
CROP_COVER = 0.5  # a crop-shaped photo whose person box covers this much is taken whole


@dataclass
class CameraSighting:
    """One identity in one camera: when and how often."""

    camera: str
    first_seen: float
    last_seen: float
    sightings: int
    tracklets: int


@dataclass
class SearchHit:
    """One identity the photo may show."""

    rank: int
    identity: int
    name: str | None
    probability: float
    cameras: list[CameraSighting] = field(default_factory=list)
    thumbnail: Path | None = None

    @property
    def label(self) -> str:
        return f"#{self.identity} {self.name}" if self.name else f"#{self.identity}"


@dataclass
class SearchResult:
    """The query as understood (where the person was found) and the ranked identities."""

    photo: str
    mode: str  # "frame": a person was detected in the photo; "crop": the photo was the crop
    box: tuple[int, int, int, int] | None
    model_version: str
    scored: int  # identities scored
    crop: np.ndarray
    hits: list[SearchHit] = field(default_factory=list)


# ---------------------------------------------------------------- the photo


def read_photo(path: str | Path) -> np.ndarray:
    """The photo as a BGR image, or a one-line ``InputError`` naming it."""
    import cv2

    p = Path(path)
    if not p.exists():
        raise InputError(f"photo {str(p)!r} does not exist")
    if not p.is_file():
        raise InputError(f"photo {str(p)!r} is not a file")
    data = np.fromfile(str(p), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None or img.size == 0:
        raise InputError(f"photo {str(p)!r} is not a readable image (JPEG, PNG, BMP, ...)")
    return img


def looks_like_crop(image: np.ndarray) -> bool:
    """A tall picture, shaped like a person crop (Market-1501 crops are 128x64)."""
    h, w = image.shape[:2]
    return w > 0 and CROP_ASPECT[0] <= h / w <= CROP_ASPECT[1]


def pick_person(boxes: np.ndarray, scores: np.ndarray) -> int:
    """The index of the person to search for: the biggest box, weighted by confidence."""
    area = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    return int(np.argmax(area * scores))


def person_crop(
    image: np.ndarray, detector: Any, mode: str, name: str
) -> tuple[np.ndarray, tuple[int, int, int, int] | None, str]:
    """(crop, box in the photo or None, "frame"|"crop") according to ``mode``."""
    if mode == "crop":
        return image, None, "crop"
    dets = detector.detect([image])[0] if detector is not None else None
    if dets is not None and len(dets):
        i = pick_person(dets.boxes, dets.scores)
        h, w = image.shape[:2]
        x1, y1, x2, y2 = (round(float(v)) for v in dets.boxes[i])
        x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
        if (
            mode == "auto"
            and looks_like_crop(image)
            and (x2 - x1) * (y2 - y1) >= CROP_COVER * w * h
        ):
            # a person crop already: the detector's box inside it only trims the margin
            # the model was trained with (Market-1501 crops are boxes with some context)
            log.info("search: the photo is a person crop; taking it whole")
            return image, None, "crop"
        if x2 - x1 >= 4 and y2 - y1 >= 8:
            log.info("search: person found in the photo (%d candidate(s))", len(dets))
            return image[y1:y2, x1:x2].copy(), (x1, y1, x2, y2), "frame"
    if mode == "auto" and looks_like_crop(image):
        log.info("search: no person detected; the photo is shaped like a crop, taking it whole")
        return image, None, "crop"
    raise InputError(
        f"photo {name!r}: no person found in it"
        + (
            " (if it is already a tight crop of one person, pass --mode crop)"
            if mode == "auto"
            else ""
        )
    )


# ---------------------------------------------------------------- scoring


def rank_identities(probabilities: np.ndarray, identity_ids: np.ndarray) -> list[tuple[int, float]]:
    """(identity, best exemplar probability), highest first (ties: lower id first)."""
    best: dict[int, float] = {}
    for iid, p in zip(identity_ids.tolist(), probabilities.tolist()):
        if p > best.get(iid, -1.0):
            best[iid] = p
    return sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))


def score_photo_embedding(
    model: Any, embedding: Any, gallery: Gallery
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities of the query against every exemplar of the model's version."""
    import torch

    version = model.model_version
    ids, vecs = gallery.exemplars(version)
    if len(ids) == 0:
        have = gallery.model_versions()
        if have:
            raise InputError(
                f"the gallery's exemplars were made by model(s) {have}, but the loaded model "
                f"is {version!r}: pass the --checkpoint the gallery was built with"
            )
        raise InputError("the gallery has no identities to search (it is empty)")
    q = torch.as_tensor(embedding, dtype=torch.float32).reshape(1, -1)
    device = next(model.parameters()).device
    g = torch.from_numpy(np.ascontiguousarray(vecs)).to(device)
    probs = model.pair_probability(q.to(device), g)[0].float().cpu().numpy()
    return ids, probs


def camera_sightings(
    gallery: Gallery, identities: Sequence[int]
) -> dict[int, list[CameraSighting]]:
    """Per identity and camera: first/last seen, sightings and tracklets."""
    out: dict[int, list[CameraSighting]] = defaultdict(list)
    if not identities:
        return out
    for c in gallery.camera_presence(identities):
        out[c.identity_id].append(
            CameraSighting(c.camera, c.first_seen, c.last_seen, c.sightings, c.tracklets)
        )
    for v in out.values():
        v.sort(key=lambda c: c.first_seen)
    return out


def search_photo(
    gallery: Gallery,
    photo: str | Path,
    model: Any,
    embedder: Any,
    detector: Any = None,
    top: int = 10,
    mode: str = "auto",
    min_probability: float = 0.0,
) -> SearchResult:
    """Find the identities the person in ``photo`` most probably is.

    ``detector`` is used in ``auto``/``frame`` mode (any ``reid_pipeline.detect`` detector);
    ``embedder`` is a ``reid_pipeline.embed.embedder.Embedder`` around ``model``.
    """
    if mode not in ("auto", "frame", "crop"):
        raise InputError(f"search mode {mode!r}: choose auto, frame or crop")
    image = read_photo(photo)
    crop, box, used = person_crop(image, detector, mode, str(photo))
    emb = embedder.embed_crops([crop])[0]
    ids, probs = score_photo_embedding(model, emb, gallery)
    ranked = rank_identities(probs, ids)
    chosen = [(i, p) for i, p in ranked if p >= min_probability][:top]
    where = camera_sightings(gallery, [i for i, _ in chosen])
    names = gallery.identity_names(i for i, _ in chosen)
    hits = []
    for rank, (iid, p) in enumerate(chosen, start=1):
        paths = [c.path for c in gallery.crops(identity_id=iid) if c.path is not None]
        thumb = paths[len(paths) // 2] if paths else None
        hits.append(SearchHit(rank, iid, names.get(iid), float(p), where.get(iid, []), thumb))
    log.info("search: %d identities scored, %d listed", len(ranked), len(hits))
    return SearchResult(str(photo), used, box, model.model_version, len(ranked), crop, hits)


# ---------------------------------------------------------------- output


def format_result(res: SearchResult) -> str:
    """The result as a plain-text table (what ``reid search`` prints)."""
    from reid_pipeline.report.site import fmt_time

    how = (
        f"person detected at x1,y1,x2,y2 = {','.join(map(str, res.box))}"
        if res.box
        else "taken whole as a person crop"
    )
    lines = [
        (f"query: {res.photo} ({how}); model {res.model_version}; {res.scored} identities scored")
    ]
    if not res.hits:
        lines.append("no identity above the probability limit")
    for h in res.hits:
        lines.append(f"{h.rank:>3}. {h.label:<24} p={h.probability:.3f}")
        for c in h.cameras:
            lines.append(
                f"       {c.camera}: {fmt_time(c.first_seen)} .. {fmt_time(c.last_seen)}"
                f"  ({c.sightings} sightings, {c.tracklets} tracklet(s))"
            )
    return "\n".join(lines)


def write_result_html(res: SearchResult, out: str | Path) -> Path:
    """The result as one self-contained page (query picture inlined, thumbnails linked)."""
    import cv2

    from reid_pipeline.report.site import esc, fmt_time, rel_href, standalone_page

    path = Path(out)
    ok, buf = cv2.imencode(".jpg", res.crop)
    query = base64.b64encode(buf.tobytes()).decode("ascii") if ok else ""
    rows = []
    for h in res.hits:
        img = (
            f'<img src="{rel_href(h.thumbnail, path.parent)}" alt="{esc(h.label)}">'
            if h.thumbnail
            else '<div class="noimg"></div>'
        )
        cams = "".join(
            f"<dd>{esc(c.camera)}: {esc(fmt_time(c.first_seen))} &ndash; "
            f"{esc(fmt_time(c.last_seen))} ({c.sightings} sightings)</dd>"
            for c in h.cameras
        )
        rows.append(
            f'<div class="card" data-identity="{h.identity}" data-rank="{h.rank}">{img}'
            f'<div><div class="name">{h.rank}. {esc(h.label)}</div><dl>'
            f'<dt>probability</dt><dd class="probability">{h.probability:.3f}</dd>'
            f"<dt>seen</dt>{cams}</dl></div></div>"
        )
    how = "person detected in the photo" if res.box else "photo taken as a person crop"
    body = (
        "<h1>Search by photo</h1>"
        f'<div class="meta" id="summary" data-hits="{len(res.hits)}">{esc(how)} &middot; '
        f"model {esc(res.model_version)} &middot; {res.scored} identities scored</div>"
        f'<div class="cards"><div class="card"><img id="query" '
        f'src="data:image/jpeg;base64,{query}" alt="query"><div>'
        '<div class="name">query</div></div></div></div>'
        "<h2>Most probable identities</h2>"
        f'<div class="cards">{"".join(rows) or "<p>none</p>"}</div>'
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(standalone_page("Search by photo", body), encoding="utf-8")
    except OSError as e:
        raise OutputError(f"search page {str(path)!r}: cannot write ({e.strerror or e})") from None
    return path
