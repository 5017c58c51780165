"""Within-camera tracking on synthetic moving boxes: identity through crossings, loss and
return, the crop quality filter and crop spreading."""

from __future__ import annotations

import numpy as np
import pytest

from reid_pipeline.config import TrackerConfig
from reid_pipeline.track.tracker import CameraTracker
from reid_pipeline.types import Detections, Frame

H, W = 360, 640
IMG = np.zeros((H, W, 3), np.uint8)
IMG[:, :, 1] = (np.arange(W) // 3).astype(np.uint8)[None, :]  # crops show where they were cut


def frame(i: int) -> Frame:
    return Frame("cam", i, i / 10.0, IMG)


def dets(*boxes: tuple[float, float, float, float], conf: float = 0.9) -> Detections:
    return Detections(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.full(len(boxes), conf, np.float32)
    )


def person(x: float, y: float, w: float = 40, h: float = 100) -> tuple[float, float, float, float]:
    return (x, y, x + w, y + h)


def run(tracker: CameraTracker, seq: list[Detections], start: int = 0):
    out = []
    for i, d in enumerate(seq, start):
        out.append(tracker.update(frame(i), d))
    return out


def ids_of(rows, box) -> set[int]:
    return {r.track_id for r in rows if np.allclose(r.bbox, box)}


@pytest.mark.parametrize(
    "kind,gmc", [("bytetrack", "none"), ("botsort", "none"), ("botsort", "sparseOptFlow")]
)
def test_two_crossing_people_keep_their_ids(kind, gmc):
    cfg = TrackerConfig(kind=kind, gmc=gmc)
    t = CameraTracker("cam", cfg, 10.0)
    a_ids, b_ids = set(), set()
    for i in range(60):
        a = person(40 + 9 * i, 100)  # walks right
        b = person(600 - 9 * i, 125)  # walks left, slightly lower (closer): they overlap
        rows = t.update(frame(i), dets(a, b))
        if i >= 1:  # tracks are confirmed on their second detection after frame 0
            assert len(rows) == 2
        a_ids |= ids_of(rows, a)
        b_ids |= ids_of(rows, b)
    assert len(a_ids) == 1 and len(b_ids) == 1 and a_ids != b_ids
    done = t.flush()
    assert sorted(len(x.boxes) for x in done) == [60, 60]
    assert {x.track_id for x in done} == a_ids | b_ids
    assert all(x.finished and x.camera == "cam" for x in done)


def test_leaving_and_returning_after_buffer_is_a_new_track():
    cfg = TrackerConfig(track_buffer=10)
    t = CameraTracker("cam", cfg, 10.0)
    seq = [dets(person(100 + 2 * i, 100)) for i in range(20)]
    seq += [Detections.empty()] * 15  # gone for longer than the buffer
    seq += [dets(person(140 + 2 * i, 100)) for i in range(20)]
    rows = run(t, seq)
    first = {r.track_id for r in rows[0][:1] + rows[5]}
    second = {r.track_id for r in rows[-1]}
    assert len(first) == 1 and len(second) == 1 and first != second
    # the first tracklet was finished by the tracker itself, before the stream ended
    assert [x.track_id for x in t.pop_finished()] == list(first)
    assert [x.track_id for x in t.flush()] == list(second)


def test_short_gap_within_buffer_keeps_the_id():
    t = CameraTracker("cam", TrackerConfig(track_buffer=10), 10.0)
    seq = [dets(person(100 + 3 * i, 100)) for i in range(15)]
    seq += [Detections.empty()] * 5
    seq += [dets(person(100 + 3 * i, 100)) for i in range(20, 35)]
    rows = run(t, seq)
    ids = {r.track_id for fr in rows for r in fr}
    assert len(ids) == 1
    assert t.pop_finished() == []
    (tl,) = t.flush()
    assert len(tl.boxes) == 30 and tl.first_frame == 0 and tl.last_frame == 34
    assert tl.first_seen == 0.0 and tl.last_seen == pytest.approx(3.4)


def test_quality_filter():
    # tracks start from 0.25 here (the default 0.5 would never start the low-score one):
    # what is tested is which boxes give crops, not which start tracks
    cfg = TrackerConfig(
        min_height=48,
        min_aspect=1.2,
        max_aspect=5.0,
        min_conf=0.3,
        border_margin=2,
        high_thresh=0.25,
        new_track_thresh=0.25,
    )
    t = CameraTracker("cam", cfg, 10.0)
    n = 12
    run(
        t,
        [
            Detections(
                np.asarray(
                    [
                        person(100 + i, 100),  # good
                        person(300 + i, 100, w=20, h=40),  # too small
                        person(0, 150 + i),  # touches left border
                        person(450 + i, 50, w=100, h=90),  # too wide
                        person(560, 10 + i, w=40, h=70),
                    ],  # ok box, low conf
                    np.float32,
                ),
                np.asarray([0.9, 0.9, 0.9, 0.9, 0.28], np.float32),
            )
            for i in range(n)
        ],
    )
    done = {round(x.boxes[0].bbox[0]): x for x in t.flush()}
    assert sorted(done) == [0, 100, 300, 450, 560]  # every track finishes, crops or not
    assert len(done[100].crops) == n and done[100].crops[0].shape == (100, 40, 3)
    # the crop is the box's pixels (green channel encodes the column)
    assert int(done[100].crops[0][0, 0, 1]) == 100 // 3
    for x in (0, 300, 450, 560):
        assert done[x].crops == [] and done[x].crop_frames == []
        assert len(done[x].boxes) == n


def test_crops_are_capped_and_spread_over_the_life():
    cfg = TrackerConfig(max_crops=8)
    t = CameraTracker("cam", cfg, 10.0)
    run(t, [dets(person(20 + 2 * i, 100)) for i in range(250)])
    (tl,) = t.flush()
    assert 4 < len(tl.crops) <= 8 and len(tl.crop_frames) == len(tl.crops)
    f = tl.crop_frames
    assert f == sorted(f) and f[0] == 0 and f[-1] >= 150  # not just the first frames
    gaps = np.diff(f)
    assert gaps.max() == gaps.min()  # evenly spaced
    for crop, fi in zip(tl.crops, f):  # each crop really is that frame's box
        assert int(crop[0, 0, 1]) == (20 + 2 * fi) // 3


def test_short_tracks_are_noise_and_ids_are_per_camera():
    t = CameraTracker("cam", TrackerConfig(min_length=3), 10.0, first_track_id=500)
    rows = run(t, [dets(person(100, 100)), dets(person(101, 100))])
    assert rows[1][0].track_id == 500
    run(t, [Detections.empty()] * 40, start=2)
    assert t.pop_finished() == [] and t.dropped_short == 1
    other = CameraTracker("cam2", TrackerConfig(), 10.0)
    assert run(other, [dets(person(5, 5))] * 2)[1][0].track_id == 1


def test_active_tracklets_grow_live():
    t = CameraTracker("cam", TrackerConfig(), 10.0)
    run(t, [dets(person(100 + i, 100)) for i in range(5)])
    (a,) = t.active()
    assert len(a.boxes) == 5 and not a.finished
    run(t, [dets(person(105 + i, 100)) for i in range(5)], start=5)
    assert len(a.boxes) == 10
    assert t.flush() == [a] and a.finished and t.active() == []


def test_low_score_detections_extend_tracks_but_do_not_start_them():
    t = CameraTracker("cam", TrackerConfig(), 10.0)
    seq = [dets(person(100 + 3 * i, 100)) for i in range(5)]
    seq += [dets(person(115 + 3 * i, 100), conf=0.15) for i in range(5)]  # ByteTrack stage 2
    seq += [dets(person(400, 100), conf=0.15)] * 5  # never strong: never a track
    rows = run(t, seq)
    assert all(len(r) == 1 for r in rows[1:10]) and all(len(r) == 0 for r in rows[10:])


def test_partial_boxes_are_dropped_from_the_crops():
    """A detector window on half a person (head cut off) every few frames: those crops go,
    the full-body ones stay; a person growing as they approach keeps every crop."""
    t = CameraTracker("cam", TrackerConfig(max_crops=64, partial_ratio=0.85), 10.0)
    seq = []
    for i in range(30):
        box = person(100 + 3 * i, 100)  # 100 px tall
        if i % 5 == 2:
            box = (box[0], box[1] + 30, box[2], box[3])  # the top 30 % missing
        seq.append(dets(box))
    run(t, seq)
    (tl,) = t.flush()
    assert len(tl.boxes) == 30
    assert tl.crop_frames == [i for i in range(30) if i % 5 != 2]
    assert all(c.shape[0] == 100 for c in tl.crops)

    grow = CameraTracker("cam", TrackerConfig(max_crops=64, partial_ratio=0.85), 10.0)
    run(grow, [dets((200.0, 300 - 150 - 4 * i, 240.0 + i, 300.0)) for i in range(30)])
    (g,) = grow.flush()  # 150 -> 266 px over 30 frames: locally consistent, nothing dropped
    assert g.crop_frames == list(range(30))

    off = CameraTracker("cam", TrackerConfig(max_crops=64, partial_ratio=0.0), 10.0)
    run(off, seq)
    assert off.flush()[0].crop_frames == list(range(30))


def test_partial_filter_keeps_at_least_half_of_the_crops():
    from reid_pipeline.track.tracker import partial_crop_mask
    from reid_pipeline.types import TrackedBox, Tracklet

    tl = Tracklet("cam", 1)
    heights = [100, 50, 50, 50, 100, 50]  # most boxes look partial next to the tallest
    tl.boxes = [
        TrackedBox("cam", i, i / 10, (0.0, 0.0, 40.0, float(h)), 0.9, 1)
        for i, h in enumerate(heights)
    ]
    tl.crop_frames = list(range(6))
    keep = partial_crop_mask(tl, 0.85, 10)
    assert keep.sum() == 3 and keep[0] and keep[4]


@pytest.mark.parametrize("every", [2, 3])
def test_detection_stride_interpolates_the_frames_between(every: int) -> None:
    """Only every N-th frame is detected; a walking person still has one box per frame,
    the skipped ones on the line between two detections, and one track."""
    t = CameraTracker("cam", TrackerConfig(), 10.0, every=every)
    for i in range(30):
        if i % every:
            t.skip(frame(i))
        else:
            t.update(frame(i), dets(person(40 + 6 * i, 100), conf=0.9 - 0.01 * (i % 7)))
    (tl,) = t.flush()
    frames = [b.frame_index for b in tl.boxes]
    last = 29 - 29 % every  # the last detected frame: nothing is extrapolated after it
    assert frames == list(range(frames[0], last + 1))
    for b in tl.boxes:  # the linear walk, recovered on the frames nobody detected
        assert np.allclose(b.bbox, person(40 + 6 * b.frame_index, 100), atol=1e-3)
        assert abs(b.timestamp - b.frame_index / 10.0) < 1e-9
    assert set(tl.crop_frames) <= {f for f in frames if f % every == 0}
    skipped = [b for b in tl.boxes if b.frame_index % every]
    assert skipped and all(b.confidence <= 0.9 for b in skipped)


def test_detection_stride_does_not_bridge_a_longer_gap() -> None:
    """A person missed at one detected frame is not interpolated across the gap, and the
    track buffer means the same time as without a stride."""
    t = CameraTracker("cam", TrackerConfig(track_buffer=30), 10.0, every=2)
    for i in range(0, 40):
        if i % 2:
            t.skip(frame(i))
        elif i == 20:
            t.update(frame(i), dets())  # missed at 20: the gap 18 -> 22 is four frames
        else:
            t.update(frame(i), dets(person(40 + 6 * i, 100)))
    (tl,) = t.flush()
    frames = [b.frame_index for b in tl.boxes]
    assert 19 not in frames and 20 not in frames and 21 not in frames
    assert {17, 18, 22, 23} <= set(frames)
    assert t.buffer_updates == 15  # 30 frames = 15 updates at stride 2
    assert CameraTracker("cam", TrackerConfig(track_buffer=30), 10.0).buffer_updates == 30
