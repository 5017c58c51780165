"""Re-linking: a track the tracker lost and picked up again keeps its identity, while a
look-alike who comes by at another time or place stays a new identity."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gallery_helpers import open_gallery

from reid_pipeline.config import ConfigError, MatchConfig, load_config
from reid_pipeline.gallery.cache import ExemplarCache
from reid_pipeline.match.assign import IdentityMatcher, MatchQuery
from reid_pipeline.types import TrackedBox, Tracklet

D = 16


def dot_prob(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (q.float() @ g.float().T).clamp(0, 1)


def person(
    rng: np.random.Generator, center: np.ndarray, n: int = 6, noise: float = 0.02
) -> np.ndarray:
    v = center + rng.normal(0, noise, (n, center.shape[0]))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def pillar(rng: np.random.Generator, a: np.ndarray, n: int = 2) -> np.ndarray:
    """Crops of an occluder: nothing in common with the person (p = 0 against a)."""
    v = rng.normal(0, 1, (n, a.shape[0]))
    v -= (v @ a)[:, None] * a[None, :]
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def walker(
    camera: str,
    tid: int,
    t0: float,
    t1: float,
    x0: float,
    fps: float = 10.0,
    speed: float = 40.0,
    h: float = 80.0,
) -> Tracklet:
    """A person walking right at ``speed`` px/s from x0, feet at y=200, seen t0..t1."""
    frames = range(round(t0 * fps), round(t1 * fps) + 1)
    boxes = [
        TrackedBox(
            camera,
            f,
            f / fps,
            (x0 + speed * (f / fps - t0), 200 - h, x0 + speed * (f / fps - t0) + 30, 200.0),
            0.9,
            tid,
        )
        for f in frames
    ]
    return Tracklet(camera, tid, boxes, [], [], finished=True)


def look_alikes(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Two strangers dressed alike: their crops agree at p ~ 0.6, below match.threshold 0.8,
    far above what two different-looking people reach."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, D)
    a /= np.linalg.norm(a)
    r = rng.normal(0, 1, D)
    r -= (r @ a) * a
    r /= np.linalg.norm(r)
    b = 0.6 * a + 0.8 * r
    return a.astype(np.float32), b.astype(np.float32), rng


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_person_split_by_an_occlusion_becomes_one_identity(backend: str, tmp_path: Path) -> None:
    a, _, rng = look_alikes()
    with open_gallery(backend, tmp_path) as g:
        m = IdentityMatcher(dot_prob, ExemplarCache(g, "m"), MatchConfig(threshold=0.8))
        sid, _ = g.begin_source("street", "fp")
        first = walker("street", 1, 0.0, 5.0, x0=10)
        # behind a pillar for 1.2 s, then picked up again 48 px further, as a new track;
        # two of its six crops still show the pillar (p vs the first track ~0.65 < 0.8)
        after = walker("street", 2, 6.2, 9.0, x0=10 + 40 * 6.2)
        occluded = np.concatenate([person(rng, a, 4), pillar(rng, a)])
        with g.batch() as uow:
            q1 = MatchQuery.from_tracklet(first, person(rng, a), uow.record_tracklet(sid, first))
            (one,) = m.commit(uow, [q1])
        with g.batch() as uow:
            q2 = MatchQuery.from_tracklet(after, occluded, uow.record_tracklet(sid, after))
            (two,) = m.commit(uow, [q2])
        assert one.is_new and not two.is_new
        assert two.identity_id == one.identity_id
        # without re-linking the appearance alone is below the threshold: a second identity
        m2 = IdentityMatcher(
            dot_prob, ExemplarCache(g, "m2"), MatchConfig(threshold=0.8, relink_s=0)
        )
        assert m2.match(
            [
                MatchQuery.from_tracklet(first, person(rng, a)),
                MatchQuery.from_tracklet(after, occluded),
            ]
        )[1].is_new


def test_the_split_is_joined_within_one_batch_too() -> None:
    a, _, rng = look_alikes(1)
    m = IdentityMatcher(dot_prob, ExemplarCache(None, "m"), MatchConfig(threshold=0.8))
    occluded = np.concatenate([person(rng, a, 4), pillar(rng, a)])
    out = m.match(
        [
            MatchQuery.from_tracklet(walker("c", 1, 0, 5, 10), person(rng, a)),
            MatchQuery.from_tracklet(walker("c", 2, 6, 9, 250), occluded),
        ]
    )
    assert out[0].is_new and out[1].identity_id == out[0].identity_id


def test_look_alike_strangers_at_other_times_or_places_stay_two_identities() -> None:
    a, b, rng = look_alikes(2)
    m = IdentityMatcher(dot_prob, ExemplarCache(None, "m"), MatchConfig(threshold=0.8))
    first = MatchQuery.from_tracklet(walker("c", 1, 0, 5, 10), person(rng, a))
    later = MatchQuery.from_tracklet(walker("c", 2, 30, 35, 210), person(rng, b))  # 25 s on
    far = MatchQuery.from_tracklet(walker("c", 3, 5.5, 9, 900), person(rng, b))  # across
    other_cam = MatchQuery.from_tracklet(walker("d", 4, 5.5, 9, 210), person(rng, b))
    out = m.match([first, later, far, other_cam])
    assert out[0].is_new and all(o.identity_id != out[0].identity_id for o in out[1:])
    # right where the first one vanished, a moment later: the look-alike (p ~ 0.6 >= 0.3)
    # continues the track - the rule trusts space and time over a near miss of appearance
    near = MatchQuery.from_tracklet(walker("c", 5, 5.5, 9, 10 + 40 * 5.5), person(rng, b))
    assert m.match([first, near])[1].identity_id == out[0].identity_id
    # a different-looking person there does not (p ~ 0 < relink_threshold)
    c = rng.normal(0, 1, D)
    c -= (c @ a) * a
    stranger = MatchQuery.from_tracklet(
        walker("c", 6, 5.5, 9, 10 + 40 * 5.5),
        person(rng, (c / np.linalg.norm(c)).astype(np.float32)),
    )
    assert m.match([first, stranger])[1].is_new


def test_two_people_crossing_each_keep_their_own_track() -> None:
    a, b, rng = look_alikes(3)
    m = IdentityMatcher(dot_prob, ExemplarCache(None, "m"), MatchConfig(threshold=0.95))
    # both lost at the same spot (they cross), both picked up there again
    qa = MatchQuery.from_tracklet(walker("c", 1, 0, 5, 10), person(rng, a))
    qb = MatchQuery.from_tracklet(walker("c", 2, 0, 5, 12), person(rng, b))
    qa2 = MatchQuery.from_tracklet(walker("c", 3, 5.5, 9, 232), person(rng, a))
    qb2 = MatchQuery.from_tracklet(walker("c", 4, 5.5, 9, 230), person(rng, b))
    out = m.match([qa, qb, qb2, qa2])
    assert out[0].identity_id != out[1].identity_id
    assert out[3].identity_id == out[0].identity_id and out[2].identity_id == out[1].identity_id


def test_relink_keys_are_validated() -> None:
    assert load_config(overrides={"match.relink_s": 0}).match.relink_s == 0
    for key, bad in (
        ("match.relink_s", -1),
        ("match.relink_threshold", 1.5),
        ("match.relink_dist", -0.1),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(overrides={key: bad})
