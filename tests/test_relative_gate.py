"""The relative gate (``match.relative_max``): on footage where the Market-1501 calibration
is optimistic, two strangers who pass one at a time score above ``match.threshold``; the
crops of each tracklet, which the footage proves to be one person, set the scale of "the
same person" on this camera, and the strangers are several times farther apart than that.
One person seen twice (split by an occlusion) is not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reid_pipeline.config import ConfigError, MatchConfig, load_config
from reid_pipeline.embed.model import ReIDModel
from reid_pipeline.gallery.cache import ExemplarCache
from reid_pipeline.gallery.records import Interval
from reid_pipeline.match.assign import IdentityMatcher, MatchQuery
from reid_pipeline.pipeline.build import pair_distance

D = 16


def l1(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return torch.cdist(q.float(), g.float(), p=1)


def optimistic_prob(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """A calibration from other footage: anything closer than L1 2.0 is 'likely the same'."""
    return torch.sigmoid(4.0 * (2.0 - l1(q, g)))


def crops(rng: np.random.Generator, center: np.ndarray, n: int = 8) -> np.ndarray:
    """n crops of one person: the center plus the jitter of pose and light in one track."""
    return (center + rng.normal(0, 0.01, (n, D))).astype(np.float32)


def dressed_alike(seed: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Two people in the same clothes: centers 0.8 apart in L1 (p ~ 0.99 > 0.8), while the
    crops of one track are ~0.18 apart."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, 1, D).astype(np.float32)
    step = rng.choice([-1.0, 1.0], D).astype(np.float32)
    return a, a + 0.05 * step, rng


def matcher(relative_max: float, distance: bool = True) -> IdentityMatcher:
    cfg = MatchConfig(threshold=0.8, relink_s=0, relative_max=relative_max)
    return IdentityMatcher(optimistic_prob, ExemplarCache(None, "m"), cfg, l1 if distance else None)


def test_two_strangers_dressed_alike_at_different_times_stay_two_identities() -> None:
    a, b, rng = dressed_alike(0)
    first = MatchQuery("lobby", 0.0, 10.0, crops(rng, a), None, "A")
    later = MatchQuery("lobby", 60.0, 70.0, crops(rng, b), None, "B")
    # the calibrated probability alone merges them
    p = float(
        optimistic_prob(torch.as_tensor(first.embeddings), torch.as_tensor(later.embeddings)).mean()
    )
    assert p > 0.9
    for rel, merged in ((0.0, True), (1.5, False)):
        # in one batch (new identities clustered among themselves) ...
        out = matcher(rel).match([first, later])
        assert out[0].is_new
        assert (out[1].identity_id == out[0].identity_id) is merged
        # ... and against the gallery, the first one committed earlier
        m = matcher(rel)
        m.cache.set_identity(1, first.embeddings)
        (o,) = m.match([later])
        assert (o.identity_id == 1) is merged
        assert (m.relative_held > 0) is (not merged)


def test_one_person_split_by_an_occlusion_is_one_identity() -> None:
    a, _, rng = dressed_alike(1)
    before = MatchQuery("lobby", 0.0, 10.0, crops(rng, a), None, "before")
    after = MatchQuery("lobby", 13.0, 20.0, crops(rng, a, 5), None, "after")
    out = matcher(1.5).match([before, after])
    assert out[0].is_new and out[1].identity_id == out[0].identity_id
    m = matcher(1.5)
    m.cache.set_identity(7, before.embeddings)
    (o,) = m.match([after])
    assert o.identity_id == 7 and m.relative_held == 0


def test_across_cameras_the_probability_alone_decides() -> None:
    # the same person in a second camera looks as far from his first track as a stranger
    # in the same camera would: the scale is a camera's, so the gate judges only within one
    a, b, rng = dressed_alike(4)
    lobby = MatchQuery("lobby", 0.0, 10.0, crops(rng, a), None, "lobby")
    street = MatchQuery("street", 30.0, 40.0, crops(rng, b), None, "street")
    out = matcher(1.5).match([lobby, street])
    assert out[1].identity_id == out[0].identity_id
    m = matcher(1.5)
    m.cache.set_identity(1, lobby.embeddings)
    m.cache.occupancy.add(Interval(11, 1, "lobby", 0.0, 10.0))
    (o,) = m.match([street])
    assert o.identity_id == 1 and m.relative_held == 0
    # back in the lobby, the same appearance is refused: the lobby proved it is another person
    (o,) = m.match([MatchQuery("lobby", 60.0, 70.0, crops(rng, b), None, "again")])
    assert o.is_new and m.relative_held == 1


def test_a_single_crop_is_judged_against_the_identity_alone() -> None:
    a, b, rng = dressed_alike(2)
    m = matcher(1.5)
    m.cache.set_identity(1, crops(rng, a))
    (same,) = m.match([MatchQuery("lobby", 50.0, 50.5, crops(rng, a, 1), None, "one")])
    (other,) = m.match([MatchQuery("lobby", 60.0, 60.5, crops(rng, b, 1), None, "two")])
    assert same.identity_id == 1
    assert other.is_new
    # with neither side measurable (one crop, one exemplar) the gate cannot judge: it passes
    m = matcher(1.5)
    m.cache.set_identity(1, crops(rng, a, 1))
    (o,) = m.match([MatchQuery("lobby", 60.0, 60.5, crops(rng, b, 1), None, "two")])
    assert o.identity_id == 1


def test_without_a_distance_the_gate_is_off() -> None:
    a, b, rng = dressed_alike(3)
    out = matcher(1.5, distance=False).match(
        [
            MatchQuery("lobby", 0.0, 10.0, crops(rng, a), None, "A"),
            MatchQuery("lobby", 60.0, 70.0, crops(rng, b), None, "B"),
        ]
    )
    assert out[1].identity_id == out[0].identity_id


def test_the_pipeline_gives_the_matcher_the_classifiers_distance() -> None:
    torch.manual_seed(0)
    model = ReIDModel("tv_mobilenet_v2", num_classes=1, embed_dim=8, height=64, width=32)
    with torch.no_grad():
        model.w.copy_(torch.rand(8))
        model.b.fill_(0.7)
    dist = pair_distance(model)
    q, g = torch.randn(3, 8), torch.randn(5, 8)
    want = ((q[:, None, :] - g[None, :, :]).abs() * model.w.detach()).sum(-1)
    assert torch.allclose(dist(q, g), want, atol=1e-5)
    assert pair_distance(object()) is None


def test_relative_max_is_validated() -> None:
    assert load_config(overrides={"match.relative_max": 0}).match.relative_max == 0
    assert load_config(overrides={"match.relative_max": "2.5"}).match.relative_max == 2.5
    with pytest.raises(ConfigError, match=r"match\.relative_max.*>= 1"):
        load_config(overrides={"match.relative_max": 0.5})
