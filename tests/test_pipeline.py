"""The pipeline's wiring (cross-camera batching, commit point, resume) and its pure parts
(ground-truth scoring, output writers, camera names, config files), without model weights:
the detector and embedder here are small deterministic stand-ins; sources, tracker,
gallery and matcher are the real ones."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch
import yaml

from reid_pipeline.commands.process import camera_names
from reid_pipeline.config import load_config
from reid_pipeline.demo.scenario import DEMO_OVERRIDES, demo_config_overrides, score_against_truth
from reid_pipeline.demo.weights import DEMO_CHECKPOINT
from reid_pipeline.errors import ConfigError
from reid_pipeline.pipeline.engine import Pipeline
from reid_pipeline.pipeline.recorded import CameraInput, open_inputs, run_recorded
from reid_pipeline.report.sightings import FIELDS, read_sightings_csv, write_sightings
from reid_pipeline.types import Detections, Frame, Sighting

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- stand-ins


class BoxDetector:
    """One person per camera: a box walking right, colour-coded per camera video."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def detect(self, frames: list[Frame]) -> list[Detections]:
        self.calls.append([f.camera for f in frames])
        out = []
        for f in frames:
            x = 10 + 4 * (f.index % 40)
            out.append(
                Detections(
                    np.array([[x, 20, x + 30, 100]], np.float32), np.array([0.9], np.float32)
                )
            )
        return out


class MeanColorEmbedder:
    """Embeds a crop as its mean colour (enough to tell the two cameras' people apart)."""

    def __init__(self) -> None:
        self.calls = 0

    def embed_crops(self, crops: list[np.ndarray]) -> torch.Tensor:
        self.calls += 1
        return torch.tensor(
            np.array([c.reshape(-1, 3).mean(0) / 255.0 for c in crops]), dtype=torch.float32
        )


def _video(path: Path, color: tuple[int, int, int], frames: int) -> str:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (200, 120))
    for i in range(frames):
        img = np.full((120, 200, 3), 40, np.uint8)
        x = 10 + 4 * (i % 40)
        img[20:100, x : x + 30] = color
        w.write(img)
    w.release()
    return str(path)


def _pipeline(tmp_path: Path, **over: Any) -> tuple[Pipeline, BoxDetector, MeanColorEmbedder]:
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.gallery.cache import ExemplarCache
    from reid_pipeline.match.assign import IdentityMatcher

    cfg = load_config(
        None,
        {
            "device": "cpu",
            "tracker.min_length": 3,
            "detector.batch": 4,
            "gallery.batch_size": 10,
            **over,
        },
    )
    g = Gallery.open(str(tmp_path / "reid.db"), cfg.gallery)

    def prob(q: torch.Tensor, gv: torch.Tensor) -> torch.Tensor:
        return torch.exp(-10 * torch.cdist(q.float(), gv.float(), p=1))

    det, emb = BoxDetector(), MeanColorEmbedder()
    matcher = IdentityMatcher(prob, ExemplarCache(g, "fake-v1"), cfg.match)
    return (
        Pipeline(cfg, detector=det, embedder=emb, model=None, gallery=g, matcher=matcher),
        det,
        emb,
    )


# ---------------------------------------------------------------- wiring


def test_batches_across_cameras_and_resumes(tmp_path: Path) -> None:
    a = _video(tmp_path / "a.mp4", (0, 0, 255), 80)
    b = _video(tmp_path / "b.mp4", (0, 255, 0), 60)
    inputs = [CameraInput(a, "cam-a"), CameraInput(b, "cam-b")]
    pipe, det, emb = _pipeline(tmp_path)
    steps = {"n": 0}

    def stop() -> bool:
        steps["n"] += 1
        return steps["n"] > 12

    with pytest.raises(KeyboardInterrupt):
        run_recorded(pipe, inputs, stop=stop)
    # one detector call per step, each with frames of both cameras (4 // 2 per camera)
    assert det.calls and all(
        sorted(set(c)) == ["cam-a", "cam-b"] and len(c) == 4 for c in det.calls
    )
    assert emb.calls <= len(det.calls) + 1
    mid = pipe.gallery.counts()
    assert mid["tracklets"] >= 2  # the interruption committed the open tracks
    with pipe.gallery.read() as s:
        from sqlalchemy import text

        rows = s.execute(text("select frames_processed, status from sources")).all()
    assert all(f == 24 and st == "running" for f, st in rows), rows

    pipe2, _, _ = _pipeline(tmp_path)
    summary = run_recorded(pipe2, inputs)
    assert [c.resumed_from for c in summary.cameras] == [24, 24]
    counts = pipe2.gallery.counts()
    # every frame's box recorded once: 80 + 60 frames (minus ByteTrack's first-frame lag)
    assert 130 <= counts["sightings"] <= 140
    sights = list(pipe2.gallery.sightings())
    keys = [(s.camera, s.frame) for s in sights]
    assert len(keys) == len(set(keys))  # nothing duplicated across the resume
    # one identity per camera's person (same colour throughout), never shared across cameras
    ids = {cam: {s.identity for s in sights if s.camera == cam} for cam in ("cam-a", "cam-b")}
    assert len(ids["cam-a"]) == 1 and len(ids["cam-b"]) == 1
    assert ids["cam-a"] != ids["cam-b"]

    pipe3, det3, _ = _pipeline(tmp_path)
    again = run_recorded(pipe3, inputs)
    assert all(c.skipped for c in again.cameras) and not det3.calls
    assert pipe3.gallery.counts() == counts


def test_duplicate_camera_names_refused(tmp_path: Path) -> None:
    a = _video(tmp_path / "a.mp4", (0, 0, 255), 5)
    with pytest.raises(ConfigError, match="'x'"):
        open_inputs([CameraInput(a, "x"), CameraInput(a, "x")])


# ---------------------------------------------------------------- pure parts


def test_camera_names() -> None:
    assert camera_names(["a/lobby.mp4", "b/lobby.mp4", "frames/"], []) == [
        "lobby",
        "lobby-2",
        "frames",
    ]
    assert camera_names(["x.mp4"], ["gate"]) == ["gate"]
    with pytest.raises(ConfigError, match="--camera"):
        camera_names(["x.mp4", "y.mp4"], ["gate"])


def _gt(tmp_path: Path) -> Path:
    rows = ["camera,frame,person,x1,y1,x2,y2"]
    for f in range(10):  # camera A: persons 0 and 1 together; camera B: one after the other
        rows += [f"A,{f},0,0,0,10,30", f"A,{f},1,50,0,60,30"]
        rows += [f"B,{f},{0 if f < 5 else 1},20,0,30,30"]
    p = tmp_path / "gt.csv"
    p.write_text("\n".join(rows) + "\n")
    return p


def _s(cam: str, frame: int, x: float, track: int, ident: int | None) -> Sighting:
    return Sighting(cam, frame, frame / 10, (x, 0.0, x + 10, 30.0), 0.9, track, ident, 0.8)


def test_score_against_truth_correct_split_and_merge(tmp_path: Path) -> None:
    gt = _gt(tmp_path)

    def rows(a0: int, a1: int, b0: int, b1: int) -> list[Sighting]:
        out = []
        for f in range(10):
            out += [_s("A", f, 0, 1, a0), _s("A", f, 50, 2, a1)]
            out.append(_s("B", f, 20, 3 if f < 5 else 4, b0 if f < 5 else b1))
        return out

    good = score_against_truth(rows(1, 2, 1, 2), gt)
    assert good.ok and good.persons_correct == [0, 1] and good.identities == 2
    split = score_against_truth(rows(1, 2, 3, 2), gt)
    assert split.persons_correct == [1] and "split" in split.persons_wrong[0]
    merged = score_against_truth(rows(1, 1, 1, 1), gt)
    assert merged.merged_simultaneous == [(1, 0, 1)] and not merged.ok
    assert "merging two simultaneously visible persons: 1" in merged.describe()


def test_sightings_writers_roundtrip(tmp_path: Path) -> None:
    rows = [_s("A", 3, 1.25, 7, 2), Sighting("B", 4, 0.4, (1, 2, 3, 4), 0.5, 8, None, None)]
    csv_p, jsonl_p, n = write_sightings(iter(rows), tmp_path)
    assert n == 2 and csv_p.is_file() and jsonl_p.is_file()
    back = read_sightings_csv(csv_p)
    assert [(r.camera, r.frame, r.track, r.identity) for r in back] == [
        ("A", 3, 7, 2),
        ("B", 4, 8, None),
    ]
    assert back[0].bbox == (1.2, 0.0, 11.2, 30.0) or back[0].bbox[0] == pytest.approx(1.2, abs=0.1)
    import json

    first = json.loads(jsonl_p.read_text().splitlines()[0])
    # the one export format (gallery/export.py): the CSV's columns, the box as x1 y1 x2 y2
    assert first["identity"] == 2 and list(first) == FIELDS
    assert [first[k] for k in ("x1", "y1", "x2", "y2")] == [1.2, 0.0, 11.2, 30.0]


def test_config_files_load() -> None:
    cfg = load_config(ROOT / "configs" / "default.yaml")
    assert cfg.output.out == "runs/latest"
    demo = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    for key, v in DEMO_OVERRIDES.items():  # what the demo sets with its own weights
        section, k = key.split(".")
        assert demo[section][k] == v, key
    assert Path(demo["model"]["checkpoint"]).name == DEMO_CHECKPOINT.name
    load_config(ROOT / "configs" / "demo.yaml")
    # the demo always gets a loadable model spec: its own weights or the bundled default
    assert demo_config_overrides()["model.checkpoint"] in (str(DEMO_CHECKPOINT), "default")
