"""Person detectors: HOG on drawn people, YOLO (architecture from YAML, random weights) for
shapes/batching/class filtering, the offline fallback, and MOTChallenge det.txt files."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from reid_pipeline.config import DetectorConfig, load_config
from reid_pipeline.detect import Detector, build_detector
from reid_pipeline.detect.hog import HogDetector, hog_score, nms
from reid_pipeline.detect.mot import MotDetector, load_det_txt
from reid_pipeline.errors import CheckpointError, ConfigError, DetectorUnavailable, InputError
from reid_pipeline.types import Detections, Frame


def draw_person(img: np.ndarray, cx: int, top: int, h: int, color=(40, 40, 40)) -> tuple:
    """A filled standing-person silhouette (head, torso, arms, legs) ``h`` px tall; returns
    its xyxy box. OpenCV's HOG people detector finds these reliably from ~90 px tall."""
    u = h / 100.0

    def poly(pts):
        cv2.fillPoly(
            img, [np.asarray([(cx + x * u, top + y * u) for x, y in pts], np.int32)], color
        )

    cv2.ellipse(img, (cx, int(top + 7 * u)), (int(5.5 * u), int(6.5 * u)), 0, 0, 360, color, -1)
    poly([(-3, 13), (3, 13), (3, 17), (-3, 17)])  # neck
    poly([(-11, 17), (11, 17), (9, 55), (-9, 55)])  # torso
    for s in (-1, 1):
        poly([(s * 11, 18), (s * 15, 20), (s * 15, 52), (s * 11, 52)])  # arm
        poly([(s * 1, 54), (s * 9, 54), (s * 12, 100), (s * 5, 100)])  # leg
    return (cx - 15 * u, top, cx + 15 * u, top + h)


def scene(h: int = 140, size=(360, 480), bg: int = 200, people=((240, 120),)) -> tuple:
    rng = np.random.default_rng(0)
    img = np.clip(bg + rng.integers(-10, 10, (*size, 3)), 0, 255).astype(np.uint8)
    boxes = [draw_person(img, cx, top, h) for cx, top in people]
    return img, boxes


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


# ------------------------------------------------------------------ HOG


@pytest.mark.parametrize("h", [100, 150, 210])
def test_hog_finds_a_drawn_person(h):
    img, (gt,) = scene(h)
    (d,) = HogDetector(DetectorConfig(kind="hog")).detect([img])
    assert len(d) == 1, d.boxes  # one box: the loose second window is suppressed
    assert iou(d.boxes[0], gt) > 0.5
    assert 0.5 < d.scores[0] < 1.0
    assert d.boxes.dtype == np.float32 and d.boxes.shape == (1, 4)


def test_hog_two_people_batch_of_frames_and_empty_frames():
    two, gts = scene(140, size=(360, 640), people=((180, 120), (460, 150)))
    empty = np.full((360, 640, 3), 128, np.uint8)
    det = HogDetector(DetectorConfig(kind="hog"))
    frames = [Frame("a", 0, 0.0, two), Frame("b", 5, 0.5, empty), two]  # Frames or arrays
    res = det.detect(frames)
    assert len(res) == 3 and len(res[1]) == 0
    for r in (res[0], res[2]):
        assert len(r) == 2
        for gt in gts:
            assert max(iou(b, gt) for b in r.boxes) > 0.5


def test_hog_min_height_upscales_small_people():
    img, (gt,) = scene(60, size=(200, 260), people=((130, 60),))
    (plain,) = HogDetector(DetectorConfig(kind="hog")).detect([img])
    (up,) = HogDetector(DetectorConfig(kind="hog", hog_min_height=48)).detect([img])
    assert len(plain) == 0  # 60 px is below HOG's 96 px window person
    assert len(up) == 1 and iou(up.boxes[0], gt) > 0.5  # boxes are in original pixels


def test_hog_person_filling_the_frame_needs_the_pad():
    img, (gt,) = scene(180, size=(200, 200), people=((100, 10),))
    (no_pad,) = HogDetector(DetectorConfig(kind="hog", hog_pad=0.0)).detect([img])
    (pad,) = HogDetector(DetectorConfig(kind="hog")).detect([img])
    assert len(no_pad) == 0
    assert len(pad) == 1 and iou(pad.boxes[0], gt) > 0.5
    b = pad.boxes[0]
    assert b[0] >= 0 and b[1] >= 0 and b[2] <= 200 and b[3] <= 200  # clipped to the frame


def test_hog_tiny_frame_does_not_crash():
    (d,) = HogDetector(DetectorConfig(kind="hog")).detect([np.zeros((40, 30, 3), np.uint8)])
    assert len(d) == 0


def test_hog_score_and_nms_helpers():
    s = hog_score(np.array([-1.0, 0.0, 0.69315, 3.0], np.float32))
    assert s[0] == 0 and s[1] == 0 and s[2] == pytest.approx(0.5, abs=1e-4) and 0.9 < s[3] < 1
    boxes = np.array(
        [
            [0, 0, 10, 20],
            [1, 1, 11, 21],
            [50, 50, 60, 70],
            [-5, -5, 20, 30],
            [1, 10, 9, 20],
            [5, 0, 25, 20],
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4], np.float32)
    keep = nms(boxes, scores, 0.5)
    # 1 overlaps 0 (IoU ~0.7); 3 is a looser window holding 0 entirely; 4 is a legs-only
    # window inside 0; 5 overlaps 0 by half of its own area only: a neighbour, kept
    assert sorted(keep.tolist()) == [0, 2, 5]
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 0.5).size == 0


# ------------------------------------------------------------------ YOLO


def test_yolo_architecture_batches_and_shapes():
    from reid_pipeline.detect.yolo import YoloDetector

    cfg = DetectorConfig(kind="yolo", weights="yolo11n.yaml", imgsz=160, batch=2, conf=0.001)
    det = build_detector(cfg, "cpu")
    assert isinstance(det, YoloDetector) and isinstance(det, Detector)
    assert det.classes == [0]  # YAML models name classes '0'..'79' in COCO order
    calls = []
    predict = det.model.predict
    det.model.predict = lambda imgs, **kw: calls.append(len(imgs)) or predict(imgs, **kw)
    imgs = [
        np.random.default_rng(i).integers(0, 255, (120 + 40 * i, 160, 3), np.uint8)
        for i in range(5)
    ]
    res = det.detect([Frame("a", 0, 0.0, imgs[0])] + imgs[1:])
    assert calls == [2, 2, 1]  # cfg.batch frames per model call, across cameras
    assert len(res) == 5
    for r in res:
        assert isinstance(r, Detections) and r.boxes.shape[1] == 4 and r.boxes.dtype == np.float32


def test_yolo_person_class_filtering():
    from reid_pipeline.detect.yolo import person_classes, to_detections

    assert person_classes({0: "person", 1: "car"}) == [0]
    assert person_classes({0: "car", 1: "bicycle", 2: "Pedestrian"}) == [2]
    assert person_classes({0: "worker"}) == [0]  # a one-class model
    xyxy = np.array([[0, 0, 10, 20], [5, 5, 15, 25], [1, 1, 9, 9], [2, 2, 4, 8]], np.float32)
    d = to_detections(
        xyxy,
        np.array([0.9, 0.8, 0.95, 0.05], np.float32),
        np.array([0, 2, 1, 0], np.float32),
        [0],
        0.1,
    )
    assert d.boxes.tolist() == [[0, 0, 10, 20]] and d.scores.tolist() == pytest.approx([0.9])


def test_missing_yolo_weights_fall_back_to_hog_with_warning(caplog, monkeypatch):
    from reid_pipeline.detect import ssd

    monkeypatch.setattr(ssd, "package_dir", lambda: None)  # SSD: tests/test_detect_ssd.py
    cfg = load_config(overrides={"detector.kind": "auto", "detector.weights": "yolo11n.pt"})
    with caplog.at_level(logging.WARNING):
        det = build_detector(cfg.detector, "cpu")
    assert isinstance(det, HogDetector)
    assert "yolo11n.pt" in caplog.text and "HOG" in caplog.text


@pytest.mark.parametrize("kind", ["yolo", "auto"])
def test_missing_yolo_weights_without_fallback_fail(tmp_path, kind):
    for weights in ("yolo11n.pt", str(tmp_path / "nope" / "best.pt")):
        cfg = DetectorConfig(kind=kind, weights=weights, fallback_to_hog=False)
        with pytest.raises(DetectorUnavailable, match=weights.replace(".", r"\.")):
            build_detector(cfg, "cpu")


def test_corrupt_yolo_weights_are_a_checkpoint_error(tmp_path):
    bad = tmp_path / "best.pt"
    bad.write_bytes(b"not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="best.pt"):
        build_detector(DetectorConfig(kind="auto", weights=str(bad)), "cpu")


def test_unknown_detector_kind_is_a_config_error():
    with pytest.raises(ConfigError, match="detector.kind"):
        load_config(overrides={"detector.kind": "sift"})
    with pytest.raises(ConfigError, match="detector.mot_det"):
        load_config(overrides={"detector.kind": "mot"})


# ------------------------------------------------------------------ MOT det.txt


def test_mot_det_files_per_camera(tmp_path):
    a = tmp_path / "a.txt"
    a.write_text(
        "1,-1,10,20,30,60,0.9,-1,-1,-1\n"
        "1,-1,100,20,30,60,0.05,-1,-1,-1\n"
        "3,-1,12,22,30,60,0.8,-1,-1,-1\n"
    )
    b = tmp_path / "b.txt"
    b.write_text("2,-1,5,5,10,20,2.5\n2,-1,50,5,10,20,-3.0\n")  # DPM-style raw margins
    cfg = DetectorConfig(kind="mot", mot_det=[str(a), str(b)], conf=0.1)
    det = build_detector(cfg, "cpu", cameras=["lobby", "street"])
    assert isinstance(det, MotDetector)
    frames = [
        Frame("lobby", 0, 0.0, np.zeros((1, 1, 3), np.uint8)),
        Frame("lobby", 1, 0.1, np.zeros((1, 1, 3), np.uint8)),
        Frame("lobby", 2, 0.2, np.zeros((1, 1, 3), np.uint8)),
        Frame("street", 1, 0.1, np.zeros((1, 1, 3), np.uint8)),
    ]
    r = det.detect(frames)
    assert r[0].boxes.tolist() == [[10, 20, 40, 80]] and r[0].scores.tolist() == pytest.approx(
        [0.9]
    )
    assert len(r[1]) == 0 and r[2].boxes.tolist() == [[12, 22, 42, 82]]
    assert len(r[3]) == 1 and 0.9 < r[3].scores[0] < 1  # squashed, the -3.0 one dropped
    with pytest.raises(ConfigError, match="2 det.txt file"):
        build_detector(cfg, "cpu", cameras=["lobby"])


def test_mot_bad_files_name_the_input(tmp_path):
    with pytest.raises(InputError, match="missing.txt"):
        load_det_txt(tmp_path / "missing.txt")
    bad = tmp_path / "bad.txt"
    bad.write_text("1,-1,10,20,30,60,0.9\n2,-1,ten,20,30,60,0.9\n")
    with pytest.raises(InputError, match=r"bad\.txt', line 2"):
        load_det_txt(bad)
    zero = tmp_path / "zero.txt"
    zero.write_text("0,-1,10,20,30,60,0.9\n")
    with pytest.raises(InputError, match="1-based"):
        load_det_txt(zero)
