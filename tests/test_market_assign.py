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


def test_oracle_relabels_tracks_but_never_twice_in_a_frame() -> None:
    from reid_pipeline.bench.mot_oracle import oracle_ids

    # tracks 1 and 2 are person 7 at different times; track 3 is person 7 too, but at the
    # same time as track 2 (a tracker's duplicate): it keeps its own id there
    ident = np.array([1, 1, 2, 2, 3, 4])
    frame = np.array([1, 2, 5, 6, 6, 6])
    new = oracle_ids(ident, frame, {1: 7, 2: 7, 3: 7})
    assert new[0] == new[1] == new[2] == new[3] == 7 + 5
    assert new[4] == 3 and new[5] == 4  # the duplicate, and a track with no person
