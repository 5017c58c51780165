"""B-cubed scoring of an identity assignment (reid_pipeline/bench/market_assign.py)."""

from __future__ import annotations

import numpy as np

from reid_pipeline.bench.market_assign import bcubed


def test_bcubed_of_perfect_merged_split_and_unassigned() -> None:
    # two people, two cameras each
    perfect = {(1, 1): 10, (1, 2): 10, (2, 1): 20, (2, 2): 20}
    r = bcubed(perfect)
    assert (r["identities"], r["mixed"], r["precision"], r["recall"], r["F"]) == (2, 0, 1, 1, 1)
    merged = {k: 10 for k in perfect}  # everyone one identity
    r = bcubed(merged)
    assert (r["identities"], r["mixed"], r["precision"], r["recall"]) == (1, 1, 0.5, 1.0)
    # person 1 split in two, one tracklet without identity (its own cluster, not a merge)
    split = {(1, 1): 10, (1, 2): 11, (2, 1): 20, (2, 2): None}
    r = bcubed(split)
    assert (r["identities"], r["mixed"], r["precision"]) == (4, 0, 1.0)
    assert np.isclose(r["recall"], 0.5)
    assert np.isclose(r["F"], 2 * 0.5 / 1.5)
