"""Tracklet -> identity assignment against the gallery's exemplars.

The tracklet-to-identity probability (config ``match.tracklet_score``):

* ``crop_best_mean`` (default): score every crop of the tracklet against every exemplar
  with the pair classifier, take for each crop its best exemplar of the identity, and
  average over the crops. The pair classifier was calibrated on single-image pairs, so
  each term is a calibrated probability and so is their mean; a bad crop (occlusion, blur)
  moves the mean by 1/n instead of deciding alone, and the diverse exemplars let a
  back-view crop find the identity's back view.
* ``pair_mean``: the mean over all (crop, exemplar) pairs of the identity. No max, so less
  optimistic: with many identities the best of several exemplars is often a stranger's
  look-alike. On real Market-1501 test identities (docs/benchmarks.md) it merges different
  people far less at the same threshold.
* ``mean_embedding``: one probability per exemplar for the tracklet's mean embedding, best
  exemplar per identity. n_crops times cheaper; the mean of embeddings is not an image the
  classifier was calibrated on, so its probabilities are less trustworthy.

The decision: an identity is a candidate for a tracklet when its probability is at least
``match.threshold`` and it was not in the same camera during an overlapping time (one
person cannot be in two places of one camera at once: checked against every assigned
tracklet in the database, via the cache, and against this batch). Within a batch the
choice is global, not greedy: tracklets that conflict with each other (same camera,
overlapping in time; connected components of that relation) are solved together with the
Hungarian method (``scipy.optimize.linear_sum_assignment``, maximising the summed
probability), then a local pass lets a tracklet take a better identity that the one-to-one
solution withheld but that conflicts with none of the tracklets holding it. Tracklets left
without a candidate become new identities; new ones in the same batch are clustered among
themselves with the same rule (the same new person seen by two cameras gets one identity).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from reid_pipeline.config import MatchConfig

if TYPE_CHECKING:
    import torch

    from reid_pipeline.gallery.cache import ExemplarCache
    from reid_pipeline.gallery.repository import Changes, UnitOfWork

log = logging.getLogger(__name__)

ScoreFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]  # (Nq,D),(Ng,D) -> probs
# (Nq,D),(Ng,D) -> the pair classifier's distances w.|q - g| (its score is b - distance)
DistanceFn = Callable[["torch.Tensor", "torch.Tensor"], "torch.Tensor"]


@dataclass
class MatchQuery:
    """A finished (or, for ``provisional``, running) tracklet to identify."""

    camera: str
    start: float  # first timestamp (s)
    end: float  # last timestamp (s)
    embeddings: Any  # (n_crops, D) tensor or array
    tracklet_id: int | None = None  # its gallery row, once recorded (needed by ``commit``)
    key: Hashable = None  # caller's handle; defaults to tracklet_id
    first_box: tuple[float, float, float, float] | None = None  # xyxy where it was first seen
    last_box: tuple[float, float, float, float] | None = None  # xyxy where it was last seen

    @classmethod
    def from_tracklet(
        cls, tracklet: Any, embeddings: Any, tracklet_id: int | None = None
    ) -> MatchQuery:
        """From a ``reid_pipeline.types.Tracklet`` and its crop embeddings."""
        boxes = getattr(tracklet, "boxes", None) or []
        return cls(
            tracklet.camera,
            float(tracklet.first_seen),
            float(tracklet.last_seen),
            embeddings,
            tracklet_id,
            tracklet_id if tracklet_id is not None else (tracklet.camera, tracklet.track_id),
            _xyxy(boxes[0].bbox) if boxes else None,
            _xyxy(boxes[-1].bbox) if boxes else None,
        )


@dataclass(frozen=True)
class Assignment:
    """The decision for one query.

    ``identity_id``: an existing identity (> 0); for a new one a negative placeholder
    (queries sharing a placeholder are the same new person) until ``commit`` creates it;
    None when the tracklet has no embeddings and cannot be identified.
    ``probability``: of the chosen identity (None for the first tracklet of a new identity).
    ``best_existing``: the best probability against the existing gallery (diagnostics).
    """

    key: Hashable
    tracklet_id: int | None
    identity_id: int | None
    probability: float | None
    is_new: bool
    best_existing: float = 0.0


def _xyxy(b: Any) -> tuple[float, float, float, float]:
    return float(b[0]), float(b[1]), float(b[2]), float(b[3])


def _overlap(a: MatchQuery, b: MatchQuery) -> bool:
    return a.camera == b.camera and a.start <= b.end and b.start <= a.end


@dataclass(frozen=True)
class _End:
    """Where and when a committed tracklet ended, and whose it was (for re-linking)."""

    camera: str
    end: float
    box: tuple[float, float, float, float]
    identity_id: int
    embeddings: np.ndarray


def _continues(
    camera: str,
    end: float,
    box: tuple[float, float, float, float] | None,
    q: MatchQuery,
    cfg: MatchConfig,
) -> bool:
    """Could ``q`` be the track that ended at ``end`` in ``box``, picked up again after a short
    loss (an occlusion, a missed detection)? Same camera, starts after that end within
    ``match.relink_s``, feet within ``relink_dist`` box heights plus ``relink_speed`` box
    heights per second of gap (a walker covers about one body height a second)."""
    if box is None or q.first_box is None or q.camera != camera:
        return False
    gap = q.start - end
    if not 0.0 < gap <= cfg.relink_s:
        return False
    h = 0.5 * ((box[3] - box[1]) + (q.first_box[3] - q.first_box[1]))
    dx = 0.5 * (box[0] + box[2] - q.first_box[0] - q.first_box[2])
    dy = box[3] - q.first_box[3]
    return float(np.hypot(dx, dy)) <= max(1.0, h) * (cfg.relink_dist + cfg.relink_speed * gap)


class IdentityMatcher:
    """Scores tracklets against the gallery (through the exemplar cache) and assigns them."""

    def __init__(
        self,
        score_fn: ScoreFn,
        cache: ExemplarCache,
        cfg: MatchConfig,
        distance_fn: DistanceFn | None = None,
    ) -> None:
        self.score_fn = score_fn
        self.cache = cache
        self.cfg = cfg
        # the relative gate (match.relative_max) needs the classifier's distances; without
        # them (a bare probability function, e.g. in tests) it is off
        self.distance_fn = distance_fn
        self.relative_held = 0  # matches the relative gate refused (diagnostics)
        # ends of recently committed tracklets, per camera (re-linking; bounded by relink_s)
        self._ends: dict[str, list[_End]] = {}
        # probabilities of tracklet pairs the footage proves to be two people (one camera,
        # the same time): this run's impostor distribution (footage calibration)
        self._impostors: deque[float] = deque(maxlen=max(1, int(cfg.footage_pairs)))
        self._thr_logged = float(cfg.threshold)

    @property
    def threshold(self) -> float:
        """The decision threshold in force: ``match.threshold``, raised by the footage
        calibration to the ``footage_quantile`` of this run's proven impostor pairs once
        ``footage_min_pairs`` are known (never above ``footage_max``).

        The Platt calibration comes from Market-1501 validation identities; on other
        footage (low resolution, look-alike clothing, other light) strangers score higher,
        and a fixed threshold then merges them. Two tracklets seen at the same time in one
        camera are two people: their scores measure, on this footage, how high a
        stranger's probability goes."""
        base = float(self.cfg.threshold)
        q = float(self.cfg.footage_quantile)
        if q <= 0 or len(self._impostors) < int(self.cfg.footage_min_pairs):
            return base
        level = float(np.quantile(np.fromiter(self._impostors, float), q))
        thr = max(base, min(float(self.cfg.footage_max), level))
        if abs(thr - self._thr_logged) >= 0.02:
            log.info(
                "footage calibration: threshold %.3f (the %.0f%% quantile of %d pairs "
                "seen together, hence two people; match.threshold %.2f)",
                thr,
                100 * q,
                len(self._impostors),
                base,
            )
            self._thr_logged = thr
        return thr

    @property
    def relink_bar(self) -> float:
        """Appearance agreement a re-link needs: ``match.relink_threshold``, raised by the
        footage calibration to the median proven impostor pair (a link must look more alike
        than two strangers typically do here)."""
        base = float(self.cfg.relink_threshold)
        if self.cfg.footage_quantile <= 0 or len(self._impostors) < int(self.cfg.footage_min_pairs):
            return base
        return max(
            base,
            min(float(self.cfg.footage_max), float(np.median(np.fromiter(self._impostors, float)))),
        )

    def _learn_impostors(self, queries: Sequence[MatchQuery]) -> None:
        """Add the batch's proven impostor pairs (same camera, overlapping in time)."""
        if self.cfg.footage_quantile <= 0:
            return
        for i in range(len(queries)):
            for j in range(i + 1, len(queries)):
                a, b = queries[i], queries[j]
                if _overlap(a, b) and _n(a.embeddings) and _n(b.embeddings):
                    self._impostors.append(self._agreement(a.embeddings, b.embeddings, 0.0))

    # ------------------------------------------------------------------ relative gate
    @property
    def _relative_on(self) -> bool:
        return self.distance_fn is not None and float(self.cfg.relative_max) > 0

    def _within(self, rows: torch.Tensor) -> float | None:
        """Mean classifier distance between two different rows of one set (None: < 2)."""
        n = int(rows.shape[0])
        if n < 2 or self.distance_fn is None:
            return None
        d = self.distance_fn(rows, rows).float()
        return float((d.sum() - d.diagonal().sum()) / (n * (n - 1)))

    def _relative(
        self,
        q_rows: torch.Tensor,
        g_rows: torch.Tensor,
        w_q: float | None,
        w_g: float | None,
    ) -> float:
        """The relative distance of two sets of embeddings: their mean cross distance over
        the geometric mean of how far each set's own rows are from one another (``w_q``,
        ``w_g``: ``_within`` of each; 0.0, which always passes, when neither is known).

        The footage proves that the crops of one tracklet are one person: their distances
        are this camera's scale of "the same person" (large sharp crops: small; small
        blurred ones: large). Two strangers who pass one at a time can score above
        ``match.threshold`` (the calibration is Market-1501's) and still be several times
        farther apart than either is from himself."""
        assert self.distance_fn is not None
        ref = [w for w in (w_q, w_g) if w is not None and w > 0]
        if not ref:
            return 0.0
        cross = float(self.distance_fn(q_rows, g_rows).float().mean())
        return cross / float(np.prod(ref)) ** (1.0 / len(ref))

    def _relative_gate(
        self,
        queries: Sequence[MatchQuery],
        idents: list[int],
        cand: np.ndarray,
        g_vecs: torch.Tensor,
        g_ids: torch.Tensor,
        forced: dict[int, tuple[int, float]],
        pending: Changes | None,
    ) -> None:
        """Drop the candidates (b, k) of ``cand`` whose relative distance passes
        ``match.relative_max`` (a re-linked continuation in ``forced`` is kept).

        Only within one camera: the scale is a camera's. An identity also seen by another
        camera is judged by the probability alone - the same person across two cameras
        changes more than within one track, and that change is what the classifier was
        trained on (Market-1501's six cameras)."""
        if not self._relative_on:
            return
        limit = float(self.cfg.relative_max)
        w_q: dict[int, float | None] = {}
        w_g: dict[int, float | None] = {}
        cams: dict[int, set[str]] = {}
        for b, k in zip(*np.nonzero(cand)):
            b, k = int(b), int(k)
            iid = idents[k]
            if b in forced and forced[b][0] == iid:
                continue
            if iid not in cams:
                cams[iid] = self.cache.occupancy.cameras(iid) | {
                    iv.camera
                    for iv in (pending.intervals_added if pending is not None else ())
                    if iv.identity_id == iid
                }
            if cams[iid] - {queries[b].camera}:
                continue  # seen by another camera too
            q_rows = self._to_device(queries[b].embeddings)
            g_rows = g_vecs[g_ids == iid]
            if b not in w_q:
                w_q[b] = self._within(q_rows)
            if k not in w_g:
                w_g[k] = self._within(g_rows)
            r = self._relative(q_rows, g_rows, w_q[b], w_g[k])
            if r > limit:
                cand[b, k] = False
                self.relative_held += 1
                log.debug(
                    "relative gate: %s not identity %d (relative distance %.2f > %.2f)",
                    queries[b].key,
                    iid,
                    r,
                    limit,
                )

    # ------------------------------------------------------------------ scoring
    def _to_device(self, x: Any) -> torch.Tensor:
        import torch

        t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, np.float32))
        return t.reshape(-1, t.shape[-1]).to(self.cache.device, self.cache.dtype)

    def _gallery(self, pending: Changes | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(vectors, owner ids) of the committed cache plus this transaction's changes."""
        import torch

        vecs, ids = self.cache.vectors, self.cache.identity_ids
        if pending is None:
            return vecs, ids
        extra = {
            iid: v for (iid, mv), v in pending.exemplars.items() if mv == self.cache.model_version
        }
        gone = set(extra) | set(pending.removed_identities)
        if gone and ids.numel():
            mask = torch.isin(ids, torch.tensor(sorted(gone), device=ids.device))
            ids = torch.where(mask, torch.full_like(ids, -1), ids)
        if extra:
            ev = torch.cat([self._to_device(v) for v in extra.values()])
            ei = torch.cat(
                [
                    torch.full((len(v),), iid, dtype=torch.long, device=ids.device)
                    for iid, v in extra.items()
                ]
            )
            vecs = ev if vecs.numel() == 0 else torch.cat([vecs, ev])
            ids = torch.cat([ids, ei])
        return vecs, ids

    def _query_rows(
        self, queries: Sequence[MatchQuery]
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The rows scored for each query (its crops, or its mean embedding) and the query
        index of each row; (None, None) when no query has embeddings."""
        import torch

        mean_mode = self.cfg.tracklet_score == "mean_embedding"
        rows = []
        for b, q in enumerate(queries):
            if _n(q.embeddings):
                e = self._to_device(q.embeddings)
                rows.append((b, e.float().mean(0, keepdim=True).to(e.dtype) if mean_mode else e))
        if not rows:
            return None, None
        dev = self.cache.device
        return (
            torch.cat([e for _, e in rows]),
            torch.cat([torch.full((len(e),), b, dtype=torch.long, device=dev) for b, e in rows]),
        )

    def _best_per_owner(
        self, q: torch.Tensor, g: torch.Tensor, owner: torch.Tensor, k: int
    ) -> torch.Tensor:
        """(Nq, k): for each query row, its best probability among the rows of ``g`` owned by
        each of the ``k`` owners (``owner``: 0..k-1 per row of g). Chunked by max_pairs."""
        import torch

        step = max(1, int(self.cfg.max_pairs // max(1, g.shape[0])))
        out = torch.zeros(q.shape[0], k, dtype=torch.float32, device=g.device)
        reduce = "mean" if self.cfg.tracklet_score == "pair_mean" else "amax"
        for i in range(0, q.shape[0], step):
            p = self.score_fn(q[i : i + step], g).float()
            out[i : i + step].scatter_reduce_(
                1, owner.expand(p.shape[0], -1), p, reduce=reduce, include_self=False
            )
        return out

    def _scores(
        self, queries: Sequence[MatchQuery], g_vecs: torch.Tensor, g_ids: torch.Tensor
    ) -> tuple[np.ndarray, list[int]]:
        """(B, K) tracklet-to-identity probabilities and the K identity ids."""
        import torch

        valid = g_ids >= 0
        if not bool(valid.any()) or not queries:
            return np.zeros((len(queries), 0), np.float32), []
        g = g_vecs[valid]
        uniq, inv = torch.unique(g_ids[valid], return_inverse=True)
        idents = [int(i) for i in uniq.tolist()]
        k = len(idents)
        out = torch.zeros(len(queries), k, dtype=torch.float32, device=g.device)
        q_all, seg = self._query_rows(queries)
        if q_all is None or seg is None:
            return out.cpu().numpy(), idents
        top = int(self.cfg.prefilter)
        if 0 < top < k and self.cfg.tracklet_score == "crop_best_mean":
            return self._scores_prefiltered(q_all, seg, g, inv, out, top), idents
        out.index_add_(0, seg, self._best_per_owner(q_all, g, inv, k))
        out /= torch.bincount(seg, minlength=len(queries)).clamp(min=1).float()[:, None]
        return out.cpu().numpy(), idents

    def _scores_prefiltered(
        self,
        q_all: torch.Tensor,
        seg: torch.Tensor,
        g: torch.Tensor,
        inv: torch.Tensor,
        out: torch.Tensor,
        top: int,
    ) -> np.ndarray:
        """Large galleries: each tracklet's mean embedding ranks all identities (one row per
        tracklet instead of one per crop), then its crops are scored against the ``top``
        best identities only; the others keep probability 0 (never candidates)."""
        import torch

        k = out.shape[1]
        b_ids = torch.unique(seg)
        means = torch.stack([q_all[seg == b].float().mean(0) for b in b_ids.tolist()])
        coarse = self._best_per_owner(means.to(q_all.dtype), g, inv, k)
        keep = coarse.topk(top, dim=1).indices  # (B', top) identity columns
        for row, b in enumerate(b_ids.tolist()):
            cols = keep[row]
            local = torch.full((k,), -1, dtype=torch.long, device=g.device)
            local[cols] = torch.arange(len(cols), device=g.device)
            mask = local[inv] >= 0
            fine = self._best_per_owner(q_all[seg == b], g[mask], local[inv][mask], len(cols))
            out[b, cols] = fine.mean(0)
        return out.cpu().numpy()

    def _cluster_new(
        self, queries: Sequence[MatchQuery], left: list[int], conflict: np.ndarray
    ) -> tuple[list[list[int]], dict[int, float | None]]:
        """Group tracklets that matched no identity into new identities, in time order, with
        the same probability, threshold and one-place rule as against the gallery.

        One scoring call: every leftover's rows against every leftover's crops; a group's
        probability for tracklet i is the mean over i's rows of the best crop of any member.
        """
        import torch

        thr = self.threshold
        groups: list[list[int]] = []
        prob: dict[int, float | None] = {}
        if not left:
            return groups, prob
        sub = [queries[i] for i in left]
        q_rows, q_owner = self._query_rows(sub)
        g_rows = torch.cat([self._to_device(q.embeddings) for q in sub])
        g_owner = torch.cat(
            [
                torch.full((_n(q.embeddings),), j, dtype=torch.long, device=self.cache.device)
                for j, q in enumerate(sub)
            ]
        )
        assert q_rows is not None and q_owner is not None
        best = self._best_per_owner(q_rows, g_rows, g_owner, len(sub)).cpu().numpy()
        owner = q_owner.cpu().numpy()
        relative = self._relative_on
        rows_of = [self._to_device(q.embeddings) for q in sub] if relative else []
        w_of = [self._within(r) for r in rows_of]
        for j, i in enumerate(left):
            mine = best[owner == j]
            best_g, best_p = -1, thr
            for gno, members in enumerate(groups):
                if any(conflict[i, left[m]] for m in members):
                    continue
                p = float(mine[:, members].max(axis=1).mean())
                if (
                    relative
                    and p >= best_p
                    and all(sub[m].camera == sub[j].camera for m in members)
                ):
                    import torch

                    g_rows = torch.cat([rows_of[m] for m in members])
                    w_g = w_of[members[0]] if len(members) == 1 else self._within(g_rows)
                    r = self._relative(rows_of[j], g_rows, w_of[j], w_g)
                    if r > float(self.cfg.relative_max):
                        self.relative_held += 1
                        continue
                if p > best_p or (best_g < 0 and p >= best_p):
                    best_g, best_p = gno, p
            if best_g >= 0:
                groups[best_g].append(j)
                prob[i] = best_p
            else:
                groups.append([j])
                prob[i] = None
        return [[left[m] for m in g] for g in groups], prob

    def _external_conflict(self, identity_id: int, q: MatchQuery, pending: Changes | None) -> bool:
        """Was ``identity_id`` in q's camera while q was there (committed or this batch)?"""
        skip = set(pending.intervals_removed) if pending is not None else set()
        if q.tracklet_id is not None:
            skip.add(q.tracklet_id)
        if self.cache.occupancy.conflicts(identity_id, q.camera, q.start, q.end, skip):
            return True
        if pending is not None:
            for iv in pending.intervals_added:
                if (
                    iv.identity_id == identity_id
                    and iv.tracklet_id != q.tracklet_id
                    and iv.camera == q.camera
                    and iv.start <= q.end
                    and q.start <= iv.end
                ):
                    return True
        return False

    # ------------------------------------------------------------------ decisions
    def provisional(
        self, query: MatchQuery | Any, embeddings: Any = None, pending: Changes | None = None
    ) -> tuple[int | None, float]:
        """Best identity for a running tracklet, without creating or writing anything.

        Accepts a ``MatchQuery`` or a ``Tracklet`` plus its crop embeddings. Returns
        (identity or None when none reaches the threshold, its probability).
        """
        q = query if isinstance(query, MatchQuery) else MatchQuery.from_tracklet(query, embeddings)
        if not _n(q.embeddings):
            return None, 0.0
        s, idents = self._scores([q], *self._gallery(pending))
        best_id, best_p = None, 0.0
        for k in np.argsort(-s[0], kind="stable") if idents else []:
            p = float(s[0, k])
            if p < self.cfg.threshold:
                break
            if not self._external_conflict(idents[k], q, pending):
                best_id, best_p = idents[k], p
                break
        if best_id is None and idents:
            best_p = float(s[0].max())
        return best_id, best_p

    def peek(self, camera: str, tracklet: Any, vectors: Any) -> tuple[int | None, float]:
        """``provisional`` for a running tracklet of ``camera`` (the pipeline's spelling)."""
        q = MatchQuery(camera, float(tracklet.first_seen), float(tracklet.last_seen), vectors)
        return self.provisional(q)

    # ------------------------------------------------------------------ re-linking
    def _agreement(self, a: Any, b: Any, bar: float) -> float:
        """Mean pair probability between two crop sets. When either has none (every box
        failed the crop filter: too small, cut by the border) appearance cannot object, so
        the link rests on space and time alone: exactly ``bar`` (the re-link bar), which
        ranks it below any link whose crops agree."""
        if not _n(a) or not _n(b):
            return bar
        return float(self.score_fn(self._to_device(a), self._to_device(b)).float().mean())

    def _links(
        self, queries: Sequence[MatchQuery]
    ) -> tuple[list[list[int]], dict[int, tuple[int, float]]]:
        """Chains of tracklets that continue one another (a track lost and picked up again),
        and for a chain whose first tracklet continues a committed one, (identity, p).

        A link needs the space-time fit of ``_continues`` *and* appearance agreement of at
        least ``relink_bar``; a predecessor continues into at most one successor
        and the other way round, best agreement first, so two people who cross where one
        track ended cannot both inherit it."""
        n = len(queries)
        chains = [[i] for i in range(n)]
        if self.cfg.relink_s <= 0 or n == 0:
            return chains, {}
        thr = self.relink_bar
        # (p, successor, predecessor); a predecessor is ("batch", "", query index) or
        # ("end", camera, index into self._ends[camera])
        offers: list[tuple[float, int, tuple[str, str, int]]] = []
        for i, q in enumerate(queries):
            for j, r in enumerate(queries):
                if j != i and _continues(r.camera, r.end, r.last_box, q, self.cfg):
                    p = self._agreement(q.embeddings, r.embeddings, thr)
                    if p >= thr:
                        offers.append((p, i, ("batch", "", j)))
            for e_no, e in enumerate(self._ends.get(q.camera, [])):
                if _continues(e.camera, e.end, e.box, q, self.cfg):
                    p = self._agreement(q.embeddings, e.embeddings, thr)
                    if p >= thr:
                        offers.append((p, i, ("end", q.camera, e_no)))
        succ_of: dict[tuple[str, str, int], int] = {}
        pred_of: dict[int, tuple[tuple[str, str, int], float]] = {}
        for p, i, pred in sorted(offers, key=lambda o: -o[0]):
            if i in pred_of or pred in succ_of:
                continue
            succ_of[pred] = i
            pred_of[i] = (pred, p)
        head = list(range(n))  # chain head of every query

        def root(i: int) -> int:
            while head[i] != i:
                i = head[i]
            return i

        forced: dict[int, tuple[int, float]] = {}
        for i in sorted(pred_of, key=lambda k: queries[k].start):
            (kind, camera, k), p = pred_of[i]
            if kind == "batch":
                head[i] = root(k)
            else:
                e = self._ends[camera][k]
                forced[i] = (e.identity_id, p)
        groups: dict[int, list[int]] = {}
        for i in range(n):
            groups.setdefault(root(i), []).append(i)
        chains = list(groups.values())
        forced_chain = {c: forced[m[0]] for c, m in enumerate(chains) if m[0] in forced}
        return chains, forced_chain

    def _remember_ends(self, queries: Sequence[MatchQuery], out: Sequence[Assignment]) -> None:
        """Keep where committed tracklets ended, for ``relink_s`` seconds of camera time."""
        if self.cfg.relink_s <= 0:
            return
        for q, a in zip(queries, out):
            if a.identity_id is None or q.last_box is None:
                continue
            emb = _inliers(q.embeddings) if _n(q.embeddings) else np.zeros((0, 1), np.float32)
            self._ends.setdefault(q.camera, []).append(
                _End(q.camera, q.end, q.last_box, int(a.identity_id), emb[:16])
            )
        for cam, ends in self._ends.items():
            newest = max(e.end for e in ends)
            self._ends[cam] = [e for e in ends if e.end >= newest - self.cfg.relink_s]

    # ------------------------------------------------------------------ decisions
    def match(
        self, queries: Sequence[MatchQuery], pending: Changes | None = None
    ) -> list[Assignment]:
        """Decide identities for a batch of finished tracklets (nothing is written).

        ``pending``: the uncommitted changes of the transaction the result will be written
        in (``uow.changes``), so earlier decisions of the same transaction count.

        Tracklets that continue one another (``_links``) are decided as one: their crops
        pooled, their span joined, and a chain that continues a committed tracklet takes
        that tracklet's identity unless the one-place rule forbids it.
        """
        queries = list(queries)
        if not queries:
            return []
        self._learn_impostors(queries)
        chains, forced = self._links(queries)
        if all(len(c) == 1 for c in chains) and not forced:
            return self._match(queries, pending, {})
        merged = [self._merge([queries[i] for i in c]) for c in chains]
        res = self._match(merged, pending, forced)
        out: list[Assignment] = [None] * len(queries)  # type: ignore[list-item]
        for c, a in zip(chains, res):
            for i in c:
                q = queries[i]
                out[i] = replace(
                    a, key=q.key if q.key is not None else q.tracklet_id, tracklet_id=q.tracklet_id
                )
        _check_no_conflict(queries, out)
        return out

    @staticmethod
    def _merge(members: list[MatchQuery]) -> MatchQuery:
        if len(members) == 1:
            return members[0]
        embs = [_as_numpy(m.embeddings) for m in members if _n(m.embeddings)]
        first = min(members, key=lambda m: m.start)
        last = max(members, key=lambda m: m.end)
        return MatchQuery(
            first.camera,
            first.start,
            last.end,
            np.concatenate(embs) if embs else first.embeddings,
            first.tracklet_id,
            first.key,
            first.first_box,
            last.last_box,
        )

    def _match(
        self,
        queries: list[MatchQuery],
        pending: Changes | None,
        forced: dict[int, tuple[int, float]],
    ) -> list[Assignment]:
        from scipy.optimize import linear_sum_assignment

        n = len(queries)
        thr = self.threshold
        g_vecs, g_ids = self._gallery(pending)
        s, idents = self._scores(queries, g_vecs, g_ids)
        has_emb = [bool(_n(q.embeddings)) for q in queries]
        cand = s >= thr
        self._relative_gate(queries, idents, cand, g_vecs, g_ids, forced, pending)
        # a chain that continues a committed tracklet of iid: iid is a candidate, and keeps
        # it before any look-alike (a bonus of 1 outranks any probability)
        col = {iid: k for k, iid in enumerate(idents)}
        bonus = np.zeros_like(s)
        for b, (iid, p) in forced.items():
            if iid in col:
                cand[b, col[iid]] = True
                s[b, col[iid]] = max(float(s[b, col[iid]]), p)
                bonus[b, col[iid]] = 1.0
        for b, k in zip(*np.nonzero(cand)):
            if self._external_conflict(idents[k], queries[b], pending):
                cand[b, k] = False
        conflict = np.zeros((n, n), bool)
        for i in range(n):
            for j in range(i + 1, n):
                conflict[i, j] = conflict[j, i] = _overlap(queries[i], queries[j])
        comps = _components(conflict)
        assigned = np.full(n, -1)
        for comp in comps:
            cols = sorted({int(k) for r in comp for k in np.flatnonzero(cand[r])})
            if not cols:
                continue
            gain = np.where(
                cand[np.ix_(comp, cols)], s[np.ix_(comp, cols)] + bonus[np.ix_(comp, cols)], 0.0
            )
            r_ind, c_ind = linear_sum_assignment(gain, maximize=True)
            for r, c in zip(r_ind, c_ind):
                if gain[r, c] > 0:
                    assigned[comp[r]] = cols[c]
        _improve(assigned, s + bonus, cand, conflict)
        # tracklets without an existing identity: cluster into new identities
        leftovers = sorted(
            (i for i in range(n) if assigned[i] < 0 and has_emb[i]),
            key=lambda i: (queries[i].start, i),
        )
        groups, prob_new = self._cluster_new(queries, leftovers, conflict)
        new_of = np.zeros(n, int)  # 0: not new; else placeholder number
        for gno, members in enumerate(groups, start=1):
            new_of[members] = gno
        out = []
        for i, q in enumerate(queries):
            best_existing = float(s[i].max()) if s.shape[1] else 0.0
            key = q.key if q.key is not None else q.tracklet_id
            if assigned[i] >= 0:
                out.append(
                    Assignment(
                        key,
                        q.tracklet_id,
                        idents[assigned[i]],
                        float(s[i, assigned[i]]),
                        False,
                        best_existing,
                    )
                )
            elif new_of[i]:
                out.append(
                    Assignment(
                        key, q.tracklet_id, -int(new_of[i]), prob_new[i], True, best_existing
                    )
                )
            else:
                out.append(Assignment(key, q.tracklet_id, None, None, False, best_existing))
        _check_no_conflict(queries, out)
        return out

    def commit(self, uow: UnitOfWork, queries: Sequence[MatchQuery]) -> list[Assignment]:
        """Match a batch and write the outcome in ``uow``: new identities, assignments,
        exemplars (at most ``match.exemplars`` diverse ones per identity).

        Every query must carry its ``tracklet_id`` (record the tracklets first, in the same
        unit of work). Returns the assignments with real identity ids.
        """
        for q in queries:
            if q.tracklet_id is None:
                raise ValueError("commit needs recorded tracklets (MatchQuery.tracklet_id)")
        results = self.match(queries, pending=uow.changes)
        created: dict[int, int] = {}
        final = []
        for q, a in zip(queries, results):
            if a.identity_id is None:
                final.append(a)
                continue
            iid = a.identity_id
            if a.is_new:
                if iid not in created:
                    created[iid] = uow.create_identity()
                iid = created[iid]
            assert q.tracklet_id is not None
            uow.assign(q.tracklet_id, iid, a.probability, provisional=False)
            if _n(q.embeddings):
                uow.add_exemplars(
                    iid,
                    _inliers(q.embeddings),
                    self.cache.model_version,
                    q.tracklet_id,
                    keep=self.cfg.exemplars,
                )
            final.append(replace(a, identity_id=iid))
        self._remember_ends(queries, final)
        log.debug(
            "matched %d tracklets: %d to existing identities, %d new identities",
            len(queries),
            sum(1 for a in final if a.identity_id and not a.is_new),
            len(created),
        )
        return final

    def assign(
        self, uow: UnitOfWork, tracklet_id: int, camera: str, start: float, end: float, vectors: Any
    ) -> tuple[int | None, float | None]:
        """One tracklet at a time (``commit`` of a batch of one); prefer ``commit`` with the
        whole batch, which decides globally. Earlier calls in the same ``uow`` are respected.
        """
        (a,) = self.commit(uow, [MatchQuery(camera, start, end, vectors, tracklet_id)])
        return a.identity_id, a.probability


def _n(x: Any) -> int:
    """Number of embedding rows (0 for None/empty)."""
    if x is None:
        return 0
    shape = getattr(x, "shape", None)
    if shape is None:
        return len(x)
    return int(shape[0]) if len(shape) == 2 else (1 if len(shape) == 1 and shape[0] else 0)


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, np.float32)


def _inliers(embeddings: Any, drop: float = 0.25) -> np.ndarray:
    """A tracklet's crop embeddings without its least typical quarter.

    Exemplars are chosen by farthest-point selection, which favours unusual vectors; an
    occluded or mis-cropped frame (someone else in the box) is exactly such a vector, and
    once stored it would attract other people. Dropping the crops farthest (L1) from the
    tracklet's median embedding before offering them keeps the views, not the accidents.
    """
    x = _as_numpy(embeddings)
    x = x.reshape(-1, x.shape[-1])
    if len(x) < 4:
        return x
    dist = np.abs(x - np.median(x, axis=0)).sum(axis=1)
    keep = np.argsort(dist, kind="stable")[: len(x) - int(len(x) * drop)]
    return x[np.sort(keep)]


def _components(conflict: np.ndarray) -> list[list[int]]:
    """Connected components of the conflict graph (union-find)."""
    n = conflict.shape[0]
    parent = list(range(n))

    def find(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    for i, j in zip(*np.nonzero(np.triu(conflict, 1))):
        parent[find(int(i))] = find(int(j))
    comps: dict[int, list[int]] = {}
    for i in range(n):
        comps.setdefault(find(i), []).append(i)
    return list(comps.values())


def _improve(assigned: np.ndarray, s: np.ndarray, cand: np.ndarray, conflict: np.ndarray) -> None:
    """Let tracklets take better identities the one-to-one solution withheld, when no
    conflicting tracklet holds them. Each move raises the total, so this terminates."""
    n = len(assigned)
    moved = True
    while moved:
        moved = False
        for i in sorted(range(n), key=lambda r: -float(s[r].max()) if s.shape[1] else 0.0):
            cur = s[i, assigned[i]] if assigned[i] >= 0 else 0.0
            for k in np.argsort(-s[i], kind="stable"):
                if s[i, k] <= cur:
                    break
                if not cand[i, k]:
                    continue
                if not any(assigned[j] == k and conflict[i, j] for j in range(n) if j != i):
                    assigned[i] = k
                    moved = True
                    break


def _check_no_conflict(queries: Sequence[MatchQuery], out: Sequence[Assignment]) -> None:
    """The invariant, asserted on every result (a bug here would merge two people)."""
    for i in range(len(queries)):
        for j in range(i + 1, len(queries)):
            a, b = out[i].identity_id, out[j].identity_id
            if a is not None and a == b and _overlap(queries[i], queries[j]):
                raise AssertionError(
                    f"identity {a} assigned to two overlapping tracklets of "
                    f"camera {queries[i].camera}"
                )
