"""Footage calibration: on footage where strangers look alike (they score above
match.threshold), the pairs the footage proves to be two people raise the threshold, so a
look-alike who comes by later stays a new identity while the same person still matches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from reid_pipeline.config import ConfigError, MatchConfig, load_config
from reid_pipeline.gallery.cache import ExemplarCache
from reid_pipeline.match.assign import IdentityMatcher, MatchQuery

D = 32


def dot_prob(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    return (q.float() @ g.float().T).clamp(0, 1)


def crowd(n: int, alike: float, seed: int = 0) -> np.ndarray:
    """n unit vectors whose pairwise dot products are all ``alike`` (people dressed alike)."""
    rng = np.random.default_rng(seed)
    basis, _ = np.linalg.qr(rng.normal(0, 1, (D, n + 1)))
    common, own = basis[:, 0], basis[:, 1:].T
    return (np.sqrt(alike) * common + np.sqrt(1 - alike) * own).astype(np.float32)


def crops(v: np.ndarray, n: int = 4) -> np.ndarray:
    return np.repeat(v[None, :], n, axis=0)


def test_proven_strangers_raise_the_threshold_for_a_later_look_alike() -> None:
    people = crowd(10, alike=0.86)
    # eight people walk through the street together: 28 pairs the footage proves different
    together = [
        MatchQuery("street", 0.0, 10.0 + i, crops(people[i]), None, f"p{i}") for i in range(8)
    ]
    # later, alone: person 0 again (a close view of the same look), and a stranger dressed
    # like everyone else whose score against the gallery (~0.84) beats match.threshold 0.8
    again = MatchQuery(
        "street", 100.0, 110.0, crops(0.995 * people[0] + 0.1 * people[9]), None, "p0-again"
    )
    stranger = MatchQuery("street", 200.0, 210.0, crops(0.96 * people[9]), None, "stranger")

    def run(cfg: MatchConfig) -> list:
        cache = ExemplarCache(None, "m")
        m = IdentityMatcher(dot_prob, cache, cfg)
        first = m.match(together)
        for k, a in enumerate(first):  # what commit() would store
            cache.set_identity(k + 1, together[k].embeddings)
            assert a.is_new
        return [m, m.match([again])[0], m.match([stranger])[0]]

    m, back, new = run(MatchConfig(threshold=0.8, relink_s=0, footage_quantile=0.95))
    assert m.threshold == pytest.approx(0.86, abs=1e-3)  # 95 % of 28 pairs at 0.86
    assert back.identity_id == 1 and not back.is_new
    assert new.is_new
    # the same decisions with a fixed threshold merge the stranger into somebody
    m_off, back_off, new_off = run(MatchConfig(threshold=0.8, relink_s=0, footage_quantile=0))
    assert m_off.threshold == 0.8 and back_off.identity_id == 1
    assert not new_off.is_new


def test_too_few_proven_pairs_leave_the_threshold_alone() -> None:
    people = crowd(4, alike=0.9)
    m = IdentityMatcher(
        dot_prob, ExemplarCache(None, "m"), MatchConfig(threshold=0.8, footage_quantile=0.95)
    )
    m.match([MatchQuery("c", 0, 5, crops(v), None, i) for i, v in enumerate(people)])  # 6 pairs
    assert m.threshold == 0.8
    # different cameras or different times prove nothing
    m.match([MatchQuery(f"cam{i}", 0, 5, crops(v), None, i) for i, v in enumerate(people)])
    m.match([MatchQuery("c", 10 * i, 10 * i + 5, crops(v), None, i) for i, v in enumerate(people)])
    assert m.threshold == 0.8 and m.relink_bar == m.cfg.relink_threshold


def test_the_threshold_never_passes_footage_max() -> None:
    people = crowd(8, alike=0.999)
    m = IdentityMatcher(
        dot_prob,
        ExemplarCache(None, "m"),
        MatchConfig(threshold=0.8, footage_quantile=0.95, footage_max=0.9),
    )
    m.match([MatchQuery("c", 0, 5, crops(v), None, i) for i, v in enumerate(people)])
    assert m.threshold == pytest.approx(0.9)
    assert m.relink_bar == pytest.approx(0.9)


def test_footage_keys_are_validated() -> None:
    for key, bad in (
        ("match.footage_quantile", 1.5),
        ("match.footage_min_pairs", 0),
        ("match.footage_max", 1.0),
        ("match.footage_pairs", 0),
    ):
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            load_config(overrides={key: bad})
