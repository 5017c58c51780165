"""End to end on the generated two-camera scene, checked against its ground truth.

Runs the real pipeline (HOG detection on the rendered frames, ByteTrack, the demo's ReID
weights, the dichotomy matcher, the SQL gallery) on SQLite and PostgreSQL, then checks:
every person matched across the two cameras to one identity of their own, every person
tracked in both cameras with pure tracklets, no identity merged across two simultaneously
visible persons, an idempotent re-run, a resume after an interruption, and a bad input that
leaves the gallery as it was.
"""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path
from typing import Any

import cv2
import pytest
import torch
from gallery_helpers import pg_schema

from reid_pipeline.cli import main
from reid_pipeline.config import Config, load_config
from reid_pipeline.datasets.scene import demo_scene_spec
from reid_pipeline.demo.scenario import demo_config_overrides, score_against_truth
from reid_pipeline.errors import SourceError
from reid_pipeline.gallery import Gallery
from reid_pipeline.pipeline.recorded import process_videos

CAMERAS = [c.name for c in demo_scene_spec().cameras]


def _cfg(out: Path, db: str = "", **extra: Any) -> Config:
    o = {
        **demo_config_overrides(),
        "device": "cpu",
        "output.out": str(out),
        "output.video": False,
        "output.html": False,
        "gallery.db": db,
    }
    o.update(extra)
    return load_config(None, o)


def _inputs(scene: Path) -> list[tuple[str, str]]:
    return [(str(scene / f"{c}.mp4"), c) for c in CAMERAS]


def _score(cfg: Config, db: str, scene: Path) -> Any:
    with Gallery.open(db, cfg.gallery) as g:
        return score_against_truth(list(g.sightings()), scene / "gt.csv"), g.counts()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A small untrained model: the resume and PostgreSQL tests check the machinery (boxes,
    tracklets, transactions, the one-place rule), which does not depend on the weights, so
    they need not pay for the big model's embedding time."""
    from reid_pipeline.embed.model import ReIDModel, export_fp16

    path = tmp_path_factory.mktemp("tiny") / "tiny.pt"
    torch.manual_seed(0)
    export_fp16(path, ReIDModel("osnet_x0_25", num_classes=2, embed_dim=32, height=64, width=32))
    return {"model.checkpoint": str(path), "model.backbone": "osnet_x0_25"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`reid demo` through the CLI, with every output on (scene rendered under out/scene)."""
    out = tmp_path_factory.mktemp("demo")
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        rc = main(["demo", "--out", str(out), "--device", "cpu"])
    return {
        "rc": rc,
        "stdout": buf.getvalue(),
        "out": out,
        "scene": out / "scene",
        "db": str(out / "reid.db"),
    }


def test_demo_against_ground_truth(demo_run: dict[str, Any]) -> None:
    text = demo_run["stdout"]
    persons = demo_scene_spec().people
    assert f"persons matched across cameras correctly: {persons}/{persons}" in text, text
    assert "identities merging two simultaneously visible persons: 0" in text, text
    assert demo_run["rc"] == 0, text
    cfg = _cfg(demo_run["out"])
    score, counts = _score(cfg, demo_run["db"], demo_run["scene"])
    # the printed figure is the gallery's truth: one identity per person, in both cameras
    assert score.ok and sorted(score.persons_correct) == list(range(persons)), score.describe()
    assert score.identities == persons and counts["identities"] == persons
    assert all(len(ps) == 1 for ps in score.identity_persons.values())
    # tracking: every person found in both cameras, every tracklet on a real person
    assert not [why for why in score.persons_wrong.values() if "not tracked" in why], (
        score.describe()
    )
    assert score.tracklets_unmatched == 0 and score.tracklets >= 2 * persons
    # the one-place rule: nobody merged with a person seen at the same time in one camera
    assert score.merged_simultaneous == []
    # ... and the scene really has simultaneous persons in each camera
    with open(demo_run["scene"] / "gt.csv") as fh:
        gt = list(csv.DictReader(fh))
    for cam in CAMERAS:
        per_frame: dict[str, set[str]] = {}
        for r in gt:
            if r["camera"] == cam:
                per_frame.setdefault(r["frame"], set()).add(r["person"])
        assert max(len(v) for v in per_frame.values()) >= 2
    assert counts["identities"] >= 1 and counts["tracklets"] == score.tracklets


def test_demo_outputs(demo_run: dict[str, Any]) -> None:
    out: Path = demo_run["out"]
    with open(out / "sightings.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and set(rows[0]) >= {
        "camera",
        "frame",
        "timestamp",
        "x1",
        "y1",
        "x2",
        "y2",
        "confidence",
        "track",
        "identity",
        "score",
    }
    assert {r["camera"] for r in rows} == set(CAMERAS)
    assert len((out / "sightings.jsonl").read_text().splitlines()) == len(rows)
    for cam in CAMERAS:
        cap = cv2.VideoCapture(str(out / "videos" / f"{cam}.webm"))
        assert cap.isOpened() and cap.get(cv2.CAP_PROP_FRAME_COUNT) == demo_scene_spec().frames
        cap.release()
    html = (out / "report" / "index.html").read_text()
    ids = {int(r["identity"]) for r in rows if r["identity"]}
    for i in ids:
        assert f"#{i}" in html


def test_rerun_is_idempotent_and_bad_input_keeps_gallery(
    demo_run: dict[str, Any], tmp_path: Path
) -> None:
    cfg = _cfg(demo_run["out"])
    _, before = _score(cfg, demo_run["db"], demo_run["scene"])
    res = process_videos(cfg, _inputs(demo_run["scene"]))
    assert all(c.skipped for c in res.summary.cameras)
    _, after = _score(cfg, demo_run["db"], demo_run["scene"])
    assert after == before
    with pytest.raises(SourceError, match="nope.mp4"):
        process_videos(cfg, [(str(tmp_path / "nope.mp4"), "lobby")])
    _, again = _score(cfg, demo_run["db"], demo_run["scene"])
    assert again == before


def test_resume_after_interruption(
    demo_run: dict[str, Any], tiny_model: dict[str, Any], tmp_path: Path
) -> None:
    cfg = _cfg(tmp_path / "out", **{"detector.batch": 4, **tiny_model})
    db = str(tmp_path / "out" / "reid.db")
    steps = {"n": 0}

    def stop() -> bool:  # a Ctrl-C after 20 steps (80 frames per camera)
        steps["n"] += 1
        return steps["n"] > 20

    with pytest.raises(KeyboardInterrupt):
        process_videos(cfg, _inputs(demo_run["scene"]), stop=stop)
    con = sqlite3.connect(db)
    rows = con.execute("select frames_processed, status from sources").fetchall()
    con.close()
    total = demo_scene_spec().frames
    assert len(rows) == 2 and all(0 < f < total and s == "running" for f, s in rows), rows
    res = process_videos(cfg, _inputs(demo_run["scene"]))
    assert all(0 < c.resumed_from < total for c in res.summary.cameras)
    score, counts = _score(cfg, db, demo_run["scene"])
    assert score.merged_simultaneous == [] and score.tracklets_unmatched == 0, score.describe()
    con = sqlite3.connect(db)
    dup = con.execute(
        "select count(*) from (select t.camera_id, s.frame, s.x1, s.y1 from "
        "sightings s join tracklets t on t.id = s.tracklet_id group by 1, 2, 3, 4 "
        "having count(*) > 1)"
    ).fetchone()[0]
    assert dup == 0
    assert {s for (s,) in con.execute("select status from sources")} == {"done"}
    con.close()
    _, full = _score(_cfg(demo_run["out"]), demo_run["db"], demo_run["scene"])
    # a track open at the interruption ends there and goes on as a new tracklet after it:
    # at most one extra tracklet per person in view at the resume frame (2 per camera here)
    assert 0 <= counts["tracklets"] - full["tracklets"] <= 4
    # resuming re-tracks from the oldest open track: at most a handful of boxes differ
    assert abs(counts["sightings"] - full["sightings"]) <= 0.05 * full["sightings"]


def test_postgresql_end_to_end(
    demo_run: dict[str, Any], tiny_model: dict[str, Any], tmp_path: Path
) -> None:
    with pg_schema() as url:
        cfg = _cfg(tmp_path / "out", db=url, **tiny_model)
        process_videos(cfg, _inputs(demo_run["scene"]))
        score, counts = _score(cfg, url, demo_run["scene"])
        assert score.merged_simultaneous == [] and score.tracklets_unmatched == 0
        _, lite = _score(_cfg(demo_run["out"]), demo_run["db"], demo_run["scene"])
        assert counts["sightings"] == lite["sightings"]  # same boxes as on SQLite
        res = process_videos(cfg, _inputs(demo_run["scene"]))
        assert all(c.skipped for c in res.summary.cameras)
        _, again = _score(cfg, url, demo_run["scene"])
        assert again == counts
        assert counts["crops"] > 0 and (tmp_path / "out" / "crops").is_dir()
