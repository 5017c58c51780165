"""Tracklet -> identity assignment: threshold, the one-place-per-camera rule (against the
database and within a batch), global (Hungarian) rather than greedy choice, new-identity
clustering, provisional scoring, and writing through the gallery."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from gallery_helpers import make_tracklet, open_gallery

from reid_pipeline.config import MatchConfig
from reid_pipeline.gallery import Gallery
from reid_pipeline.gallery.cache import ExemplarCache
from reid_pipeline.gallery.records import Interval
from reid_pipeline.match.assign import IdentityMatcher, MatchQuery
from reid_pipeline.match.scoring import dichotomy_scores

D = 8


def dot_prob(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """A transparent test classifier: probability = clipped dot product (unit exemplars)."""
    return (q.float() @ g.float().T).clamp(0, 1)


def dichotomy_prob(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The real form: s = b - sum_d w_d |q_d - g_d|, squashed to a probability."""
    w = torch.full((q.shape[1],), 1.0 / q.shape[1], device=q.device)
    return torch.sigmoid(8.0 * dichotomy_scores(q, g, w, b=0.5))


def unit(i: int) -> np.ndarray:
    v = np.zeros(D, np.float32)
    v[i] = 1.0
    return v


def mixed(**weights: float) -> np.ndarray:
    """A crop embedding with given dot products to the unit exemplars e0 (a), e1 (b), ..."""
    v = np.zeros(D, np.float32)
    for name, w in weights.items():
        v["abcdefgh".index(name)] = w
    return v[None, :]


def matcher_with(
    identities: dict[int, np.ndarray],
    threshold: float = 0.5,
    score_fn=dot_prob,  # type: ignore[no-untyped-def]
    tracklet_score: str = "crop_best_mean",
) -> IdentityMatcher:
    cache = ExemplarCache(None, "m")
    for iid, vecs in identities.items():
        cache.set_identity(iid, vecs)
    return IdentityMatcher(
        score_fn, cache, MatchConfig(threshold=threshold, tracklet_score=tracklet_score)
    )


def q(camera: str, start: float, end: float, emb: np.ndarray, key: object) -> MatchQuery:
    return MatchQuery(camera, start, end, emb, None, key)


def test_threshold_decides_between_existing_and_new() -> None:
    m = matcher_with({1: unit(0)[None], 2: unit(1)[None]}, threshold=0.6)
    out = m.match([q("c", 0, 1, mixed(a=0.8), "x"), q("c", 5, 6, mixed(b=0.55), "y")])
    assert (out[0].identity_id, out[0].is_new) == (1, False)
    assert out[0].probability == pytest.approx(0.8)
    assert out[1].is_new and out[1].identity_id is not None and out[1].identity_id < 0
    assert out[1].best_existing == pytest.approx(0.55)
    m.cfg = replace(m.cfg, threshold=0.5)
    assert m.match([q("c", 5, 6, mixed(b=0.55), "y")])[0].identity_id == 2


def test_tracklet_probability_is_the_mean_of_each_crops_best_exemplar() -> None:
    m = matcher_with({1: np.stack([unit(0), unit(2)])}, threshold=0.5)
    # crop 1 matches exemplar e0 (0.9), crop 2 matches exemplar e2 (0.7): a back and a front
    crops = np.concatenate([mixed(a=0.9), mixed(c=0.7)])
    (a,) = m.match([q("c", 0, 1, crops, "t")])
    assert a.identity_id == 1 and a.probability == pytest.approx(0.8)
    m.cfg = replace(
        m.cfg, tracklet_score="mean_embedding"
    )  # mean crop = (0.45, 0.35): 0.45 < threshold
    assert m.match([q("c", 0, 1, crops, "t")])[0].is_new


def test_overlapping_tracklets_of_one_camera_never_share_an_identity() -> None:
    m = matcher_with({1: unit(0)[None]})
    out = m.match(
        [
            q("lobby", 0, 10, mixed(a=0.9), "p"),
            q("lobby", 5, 15, mixed(a=0.8), "q"),
            q("street", 5, 15, mixed(a=0.7), "r"),
        ]
    )
    assert out[0].identity_id == 1  # the better match keeps the identity
    assert out[1].identity_id != 1 and out[1].is_new
    assert out[2].identity_id == 1  # another camera at the same time is fine


def test_committed_intervals_block_the_same_camera_at_the_same_time() -> None:
    m = matcher_with({1: unit(0)[None], 2: unit(1)[None]})
    m.cache.occupancy.add(Interval(tracklet_id=77, identity_id=1, camera="lobby", start=0, end=10))
    crops = mixed(a=0.9, b=0.6)
    assert m.match([q("lobby", 8, 12, crops, "k")])[0].identity_id == 2
    assert m.match([q("lobby", 11, 12, crops, "k")])[0].identity_id == 1  # after it left
    assert m.match([q("street", 8, 12, crops, "k")])[0].identity_id == 1
    # the tracklet itself (re-matched after recording) does not block itself
    self_q = MatchQuery("lobby", 0, 10, crops, tracklet_id=77)
    assert m.match([self_q])[0].identity_id == 1
    assert m.provisional(self_q) == (1, pytest.approx(0.9))


def test_batch_assignment_is_global_not_greedy() -> None:
    m = matcher_with({1: unit(0)[None], 2: unit(1)[None]})
    t1 = q("c", 0, 10, mixed(a=0.90, b=0.85), "t1")  # greedy: t1 takes 1 first ...
    t2 = q("c", 2, 12, mixed(a=0.95, b=0.30), "t2")  # ... and t2 would become new
    out = {a.key: a.identity_id for a in m.match([t1, t2])}
    assert out == {"t1": 2, "t2": 1}  # total 1.80 beats 0.90 + new


def test_non_overlapping_tracklets_in_one_conflict_group_can_share() -> None:
    m = matcher_with({1: unit(0)[None], 2: unit(1)[None]})
    early = q("c", 0, 5, mixed(a=0.9), "early")
    late = q("c", 10, 15, mixed(a=0.8), "late")
    bridge = q("c", 3, 12, mixed(b=0.9), "bridge")  # overlaps both
    out = {a.key: a.identity_id for a in m.match([early, late, bridge])}
    assert out == {"early": 1, "late": 1, "bridge": 2}


def test_new_people_in_one_batch_are_clustered_with_the_same_rule() -> None:
    m = matcher_with({}, threshold=0.5)
    person = mixed(c=0.8, d=0.6)
    out = m.match(
        [
            q("lobby", 0, 5, person, "l"),
            q("street", 20, 30, person, "s"),
            q("lobby", 3, 8, mixed(c=0.8, d=0.55), "twin"),
            q("lobby", 40, 50, mixed(h=1.0), "x"),
        ]
    )
    ids = {a.key: a.identity_id for a in out}
    assert all(a.is_new for a in out)
    assert ids["l"] == ids["s"]  # same new person in two cameras: one identity
    assert ids["twin"] != ids["l"]  # simultaneous in the lobby: must be someone else
    assert ids["x"] not in (ids["l"], ids["twin"])
    assert [a.probability for a in out if a.key == "l"] == [None]  # founder of its identity


def test_random_batches_keep_the_invariant_and_the_threshold() -> None:
    rng = np.random.default_rng(3)
    m = matcher_with({i: unit(i % D)[None] * 1.0 for i in range(1, D + 1)}, threshold=0.4)
    for _ in range(20):
        qs = [
            q(
                f"cam{rng.integers(2)}",
                float(s),
                float(s + rng.uniform(1, 10)),
                np.abs(rng.normal(0.3, 0.3, (3, D))).astype(np.float32),
                k,
            )
            for k, s in enumerate(rng.uniform(0, 30, 12))
        ]
        out = m.match(qs)
        for i, a in enumerate(out):
            if not a.is_new:
                assert a.probability is not None and a.probability >= 0.4
            for j in range(i + 1, len(out)):
                same_place = (
                    qs[i].camera == qs[j].camera
                    and qs[i].start <= qs[j].end
                    and qs[j].start <= qs[i].end
                )
                if same_place:
                    assert a.identity_id != out[j].identity_id


def test_tracklet_without_crops_stays_unidentified() -> None:
    m = matcher_with({1: unit(0)[None]})
    (a,) = m.match([q("c", 0, 1, np.zeros((0, D), np.float32), "empty")])
    assert a.identity_id is None and not a.is_new
    assert m.provisional(q("c", 0, 1, np.zeros((0, D), np.float32), "e")) == (None, 0.0)


# ---------------------------------------------------------------- through the gallery


# ``gallery``: the shared SQLite/PostgreSQL fixture of conftest.py


def _person(rng: np.random.Generator, center: np.ndarray, n: int = 6) -> np.ndarray:
    return (center + rng.normal(0, 0.05, (n, center.shape[0]))).astype(np.float32)


def test_commit_creates_matches_and_keeps_cache_in_sync(gallery: Gallery) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 1, (3, 16)).astype(np.float32)
    cache = ExemplarCache(gallery, "m1")
    m = IdentityMatcher(dichotomy_prob, cache, MatchConfig(threshold=0.5, exemplars=3))
    lobby, _ = gallery.begin_source("lobby", "fp-l")
    street, _ = gallery.begin_source("street", "fp-s")
    # camera 1: three people, two of them at the same time
    with gallery.batch() as uow:
        spans = [(1, range(50)), (2, range(10, 60)), (3, range(100, 140))]
        queries = []
        for (tid, frames), c in zip(spans, centers):
            t = make_tracklet("lobby", tid, frames)
            row = uow.record_tracklet(lobby, t)
            queries.append(MatchQuery.from_tracklet(t, _person(rng, c), row))
        first = m.commit(uow, queries)
    assert all(a.is_new for a in first) and len({a.identity_id for a in first}) == 3
    assert cache.num_identities == 3 and len(cache) <= 9
    # camera 2, later: the same three people come by, each alone
    with gallery.batch() as uow:
        queries = []
        for tid, c in enumerate(centers, start=1):
            t = make_tracklet("street", tid, range(200 + 60 * tid, 240 + 60 * tid))
            row = uow.record_tracklet(street, t)
            queries.append(MatchQuery.from_tracklet(t, _person(rng, c, 10), row))
        second = m.commit(uow, queries)
    assert [a.identity_id for a in second] == [a.identity_id for a in first]
    assert not any(a.is_new for a in second)
    summary = {r.id: r for r in gallery.identities()}
    assert all(summary[a.identity_id].cameras == ["lobby", "street"] for a in second)
    ids, _ = gallery.exemplars("m1")
    assert np.bincount(ids).max() <= 3  # bounded per identity
    fresh = ExemplarCache(gallery, "m1")
    assert {k: v.shape for k, v in fresh.snapshot().items()} == {
        k: v.shape for k, v in cache.snapshot().items()
    }
    assert len(fresh.occupancy) == len(cache.occupancy) == 6
    # provisional scoring of a running track creates nothing
    before = gallery.counts()
    running = make_tracklet("lobby", 9, range(300, 320))
    ident, p = m.provisional(running, _person(rng, centers[1]))
    assert ident == first[1].identity_id and p >= 0.5
    assert gallery.counts() == before


def test_single_assign_calls_in_one_transaction_respect_each_other(gallery: Gallery) -> None:
    rng = np.random.default_rng(1)
    center = rng.normal(0, 1, 16).astype(np.float32)
    m = IdentityMatcher(dichotomy_prob, ExemplarCache(gallery, "m1"), MatchConfig())
    sid, _ = gallery.begin_source("lobby", "fp")
    with gallery.batch() as uow:
        results = []
        for tid, frames in ((1, range(30)), (2, range(10, 40)), (3, range(80, 90))):
            t = make_tracklet("lobby", tid, frames)
            row = uow.record_tracklet(sid, t)
            results.append(
                m.assign(uow, row, "lobby", t.first_seen, t.last_seen, _person(rng, center))
            )
    a, b, c = (r[0] for r in results)
    assert a is not None and b is not None and a != b  # simultaneous: two people
    assert c in (a, b)  # later, alone: one of them again (both hold this look), not a new one


def test_prefilter_gives_the_exact_decision_on_a_large_gallery() -> None:
    rng = np.random.default_rng(5)
    dim = 32
    centers = rng.normal(0, 1, (300, dim)).astype(np.float32)
    cache = ExemplarCache(None, "m")
    for i, c in enumerate(centers, start=1):
        cache.set_identity(i, c + rng.normal(0, 0.1, (3, dim)))
    qs = [
        q("c", 10.0 * i, 10.0 * i + 5, centers[t] + rng.normal(0, 0.1, (8, dim)), i)
        for i, t in enumerate([3, 77, 150, 299])
    ]
    qs.append(q("c", 100, 105, rng.normal(0, 1, (8, dim)), "stranger"))
    exact = IdentityMatcher(dichotomy_prob, cache, MatchConfig(prefilter=0)).match(qs)
    fast = IdentityMatcher(dichotomy_prob, cache, MatchConfig(prefilter=16)).match(qs)
    assert [a.identity_id for a in exact[:4]] == [4, 78, 151, 300]
    assert [a.identity_id for a in fast] == [a.identity_id for a in exact]
    for e, f in zip(exact[:4], fast[:4]):
        assert f.probability == pytest.approx(e.probability, abs=1e-5)
    assert fast[4].is_new


def test_stored_exemplars_skip_a_tracklets_odd_crops(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    with open_gallery("sqlite", tmp_path, exemplar_dtype="float32") as g:
        m = IdentityMatcher(dichotomy_prob, ExemplarCache(g, "m1"), MatchConfig(exemplars=5))
        sid, _ = g.begin_source("lobby", "fp")
        person = rng.normal(0, 1, 16).astype(np.float32)
        crops = person + rng.normal(0, 0.05, (10, 16)).astype(np.float32)
        crops[[3, 8]] = rng.normal(0, 3, (2, 16))  # two frames where the box held someone else
        with g.batch() as uow:
            t = make_tracklet("lobby", 1, range(30))
            row = uow.record_tracklet(sid, t)
            m.commit(uow, [MatchQuery.from_tracklet(t, crops, row)])
        _, stored = g.exemplars("m1")
        assert len(stored) == 5
        assert np.abs(stored - person).sum(axis=1).max() < 2.0  # none of the odd crops


def test_pair_mean_averages_over_all_exemplars() -> None:
    m = matcher_with({1: np.stack([unit(0), unit(2)])}, threshold=0.5)
    crops = np.concatenate([mixed(a=0.9), mixed(c=0.7)])
    m.cfg = replace(m.cfg, tracklet_score="pair_mean")  # (0.9 + 0 + 0 + 0.7) / 4 = 0.4 < threshold
    (a,) = m.match([q("c", 0, 1, crops, "t")])
    assert a.is_new and a.best_existing == pytest.approx(0.4)
    m.cfg = replace(m.cfg, threshold=0.35)
    assert m.match([q("c", 0, 1, crops, "t")])[0].identity_id == 1
