"""The engine's public step API and its seam: ``Pipeline.start / step / finish`` driven
directly, the ``FinishedBatch`` record between the halves, the two commit policies and the
one track-id scheme. Detector and embedder are deterministic stand-ins; tracker, gallery
and matcher are the real ones."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from reid_pipeline.config import load_config
from reid_pipeline.errors import ConfigError
from reid_pipeline.pipeline.engine import Back, Committed, FinishedBatch, Pipeline
from reid_pipeline.types import Detections, Frame

FPS = 10.0


@dataclass
class FakeSource:
    """What ``Pipeline.start`` needs of a source."""

    camera: str
    uri: str = "file:///fake.mp4"
    fps: float = FPS
    frame_count: int | None = None
    content: str = "abc"

    def fingerprint(self) -> str:
        return f"{self.uri}#{self.content}"


# person -> (first frame, last frame, colour); one camera, boxes never overlap
PEOPLE = {"long": (0, 59, (0, 0, 255)), "short": (5, 14, (0, 255, 0))}


def box(person: str, index: int) -> tuple[int, int, int, int]:
    x = 10 if person == "long" else 120
    return (x, 20, x + 30, 100)


def frame(camera: str, index: int) -> Frame:
    img = np.full((120, 200, 3), 40, np.uint8)
    for person, (a, b, colour) in PEOPLE.items():
        if a <= index <= b:
            x0, y0, x1, y1 = box(person, index)
            img[y0:y1, x0:x1] = colour
    return Frame(camera, index, index / FPS, img)


class ScheduleDetector:
    name = "fake"

    def __init__(self) -> None:
        self.calls = 0

    def detect(self, frames: list[Frame]) -> list[Detections]:
        self.calls += 1
        out = []
        for f in frames:
            rows = [box(p, f.index) for p, (a, b, _) in PEOPLE.items() if a <= f.index <= b]
            out.append(
                Detections(
                    np.array(rows, np.float32).reshape(-1, 4), np.full(len(rows), 0.9, np.float32)
                )
            )
        return out


class MeanColorEmbedder:
    dim = 3

    def embed_crops(self, crops: list[np.ndarray]) -> torch.Tensor:
        v = torch.tensor(np.array([c.reshape(-1, 3).mean(0) for c in crops]), dtype=torch.float32)
        return torch.nn.functional.normalize(v, dim=1)


def make_pipeline(tmp_path: Path, **over: Any) -> Pipeline:
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.gallery.cache import ExemplarCache
    from reid_pipeline.match.assign import IdentityMatcher

    cfg = load_config(
        None,
        {
            "device": "cpu",
            "tracker.min_length": 3,
            "tracker.track_buffer": 5,
            "gallery.batch_size": 1,
            **over,
        },
    )
    g = Gallery.open(str(tmp_path / "reid.db"), cfg.gallery)

    def prob(q: torch.Tensor, gv: torch.Tensor) -> torch.Tensor:
        return torch.exp(-10 * torch.cdist(q.float(), gv.float(), p=1))

    matcher = IdentityMatcher(prob, ExemplarCache(g, "fake-v1"), cfg.match)
    return Pipeline(
        cfg,
        detector=ScheduleDetector(),
        embedder=MeanColorEmbedder(),
        model=None,
        gallery=g,
        matcher=matcher,
    )


def committed_tracks(results: list[Committed | None]) -> list[int]:
    return [d.track for c in results if c is not None for d in c.decisions]


@pytest.mark.parametrize("hold_back", [True, False])
def test_commit_policies(tmp_path: Path, hold_back: bool) -> None:
    """Recorded footage holds a finished tracklet back while an older track is still open
    (the resume invariant); live commits it in the step it finishes."""
    pipe = make_pipeline(tmp_path)
    (start,) = pipe.start([FakeSource("cam")], hold_back=hold_back)
    assert (start.resume_from, start.next_track_id, start.done) == (0, 1, False)
    per_step: list[list[int]] = []
    for i in range(0, 40, 2):  # the short track ends at 14 (+ track buffer); long runs on
        res = pipe.step([frame("cam", i), frame("cam", i + 1)])
        per_step.append(committed_tracks([res.committed]))
    early = [t for s in per_step for t in s]
    if hold_back:
        assert early == []  # the long track (from frame 0) holds the commit point at 0
    else:
        assert len(early) == 1  # the short one, committed as soon as it ended
    final = pipe.finish()
    everything = early + committed_tracks([final])
    assert sorted(everything) == [1, 2]  # both people, each once
    with pipe.gallery.read() as s:
        from sqlalchemy import text

        (frames_done,) = s.execute(text("select frames_processed from sources")).one()
    assert frames_done == 40  # finish: R = the next unprocessed frame
    pipe.gallery.close()


def test_the_seam_is_a_plain_record(tmp_path: Path) -> None:
    """What the front hands the back survives a round trip through bytes (the distributed
    mode's stream) and a second ``Back`` on the same gallery commits it."""
    pipe = make_pipeline(tmp_path)
    batches: list[bytes] = []

    class Recorder(Back):
        def commit(self, batch: FinishedBatch) -> Committed:
            assert isinstance(batch, FinishedBatch)
            batches.append(pickle.dumps(batch))
            return Committed((), batch.progress)

    pipe.back = Recorder(pipe.gallery, pipe.matcher)
    pipe.start([FakeSource("cam")], hold_back=False)
    for i in range(60):
        pipe.step([frame("cam", i)])
    pipe.finish()
    assert batches and pipe.gallery.counts()["tracklets"] == 0  # nothing written yet
    back = Back(pipe.gallery, pipe.matcher)
    results = [back.commit(pickle.loads(b)) for b in batches]
    decisions = [d for r in results for d in r.decisions]
    assert sorted(d.track for d in decisions) == [1, 2]
    assert all(
        d.kind == "confirmed" and d.identity is not None and d.tracklet_id for d in decisions
    )
    assert len({d.identity for d in decisions}) == 2  # red and green: two people
    counts = pipe.gallery.counts()
    assert counts["tracklets"] == 2 and counts["identities"] == 2
    pipe.gallery.close()


def test_track_ids_continue_across_runs(tmp_path: Path) -> None:
    """One track-id scheme: a new run of the same source numbers its tracks after the
    ones the gallery already holds, and resumes at the stored frame."""
    pipe = make_pipeline(tmp_path)
    pipe.start([FakeSource("cam", content="live")], hold_back=False)
    first = committed_tracks(
        [pipe.step([frame("cam", i)]).committed for i in range(30)] + [pipe.finish()]
    )
    assert sorted(first) == [1, 2]
    pipe.gallery.close()
    pipe2 = make_pipeline(tmp_path)
    (st,) = pipe2.start([FakeSource("cam", content="live")], hold_back=False)
    assert st.resume_from == 30 and st.next_track_id == max(first) + 1
    second = committed_tracks(
        [pipe2.step([frame("cam", i)]).committed for i in range(30, 60)] + [pipe2.finish()]
    )
    assert second and min(second) > max(first)
    pipe2.gallery.close()


def test_provisional_decisions_while_a_track_grows(tmp_path: Path) -> None:
    pipe = make_pipeline(tmp_path)
    pipe.start([FakeSource("cam")], hold_back=False, provisional_every=5)
    provisional = []
    for i in range(30):
        provisional += pipe.step([frame("cam", i)]).provisional
    assert provisional and all(d.kind == "provisional" for d in provisional)
    per_track = {t: sum(d.track == t for d in provisional) for t in (1, 2)}
    assert per_track[1] == 6  # 30 boxes, scored at 5, 10, ..., 30
    # frames 5-14, but ByteTrack confirms a new track on its second detection: 9 boxes
    assert per_track[2] == 1
    pipe.finish()
    pipe.gallery.close()


def test_bad_calls_are_clear_errors(tmp_path: Path) -> None:
    pipe = make_pipeline(tmp_path)
    with pytest.raises(RuntimeError, match="start"):
        pipe.step([frame("cam", 0)])
    with pytest.raises(ConfigError, match="more than one input"):
        pipe.start([FakeSource("cam"), FakeSource("cam")])
    pipe.start([FakeSource("cam")])
    with pytest.raises(ConfigError, match=r"unknown camera\(s\) \['other'\]"):
        pipe.step([frame("other", 0)])
    pipe.gallery.close()


def test_a_finished_source_is_done(tmp_path: Path) -> None:
    """A source processed to its end is ``done`` on the next start: nothing to do."""
    pipe = make_pipeline(tmp_path)
    pipe.start([FakeSource("cam", frame_count=20)])
    for i in range(20):
        pipe.step([frame("cam", i)])
    pipe.end_camera("cam")
    pipe.step([])
    pipe.finish()
    pipe.gallery.close()
    pipe2 = make_pipeline(tmp_path)
    (st,) = pipe2.start([FakeSource("cam", frame_count=20)])
    assert st.done and st.resume_from == 20
    assert pipe2.cameras == {}
    pipe2.gallery.close()
