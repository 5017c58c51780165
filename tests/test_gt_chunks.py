"""The held-out chunk benchmark's pieces (reid_pipeline/bench/gt_chunks.py) on hand-made
boxes and similarities whose answers are known."""

from __future__ import annotations

import numpy as np

from reid_pipeline.bench.gt_chunks import auc, make_chunks, retrieval, usable_boxes


def test_usable_boxes_drop_small_cut_and_occluded_people() -> None:
    frames = np.array([1, 1, 1, 2, 2])
    ids = np.array([1, 2, 3, 1, 2])
    boxes = np.array(
        [
            [10, 10, 20, 50],  # fine
            [15, 12, 20, 50],  # overlaps the first heavily: both occluded
            [200, 10, 20, 20],  # too short
            [10, 10, 20, 50],  # alone in frame 2 (the other is far): fine
            [90, 10, 20, 50],  # runs past the right border (width 100)
        ],
        float,
    )
    ok = usable_boxes(frames, ids, boxes, 100, 100, 32, 0.1)
    assert ok.tolist() == [False, False, False, True, False]


def test_chunks_cut_each_person_by_time_and_spread_the_crops() -> None:
    frames = np.arange(1, 21)
    ids = np.ones(20, int)
    usable = np.ones(20, bool)
    usable[10:19] = False  # the second chunk has one usable row only: dropped
    plan = make_chunks(frames, ids, usable, 10, 3)
    assert len(plan) == 1
    pid, first, last, rows = plan[0]
    assert (pid, first, last) == (1, 1, 10)
    assert rows == [0, 4, 9]  # spread over the chunk, its ends included


def test_retrieval_skips_near_chunks_and_scores_the_ranking() -> None:
    # four chunks: person 1 at frames 0-9 and 40-49, person 2 at 20-29 and 60-69
    person = np.array([1, 2, 1, 2])
    first = np.array([0, 20, 40, 60])
    last = first + 9
    sim = np.array(
        [
            [1.0, 0.9, 0.8, 0.1],  # ranks the stranger first: AP 0.5
            [0.9, 1.0, 0.2, 0.7],
            [0.8, 0.2, 1.0, 0.3],
            [0.1, 0.7, 0.3, 1.0],
        ]
    )
    r = retrieval(sim, person, first, last, gap=5)
    # query 0 ranks 1 (0.9, a stranger) over 2 (0.8): AP 0.5, miss; query 1 ranks 0 (0.9)
    # over 3 (0.7): AP 0.5, miss; queries 2 and 3 find their person first
    assert r["queries"] == 4
    assert np.isclose(r["mAP"], 100 * (0.5 + 0.5 + 1 + 1) / 4)
    assert np.isclose(r["R1"], 50.0)
    # a gap wider than any distance between chunks leaves no queries
    assert retrieval(sim, person, first, last, gap=100)["queries"] == 0
    assert np.isclose(auc(np.array([0.8, 0.7]), np.array([0.9, 0.2, 0.1, 0.3])), 0.75)
    assert np.isclose(auc(np.array([0.5]), np.array([0.5])), 0.5)
