"""ONNX export and ONNX Runtime serving (issue 17): the round trip for every backbone family
on small models the test builds, the dynamic batch axis, the runtime switch on one gallery,
broken or mismatched files, onnxruntime missing, the runtime choice, and `reid export`."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from reid_pipeline.cli import main
from reid_pipeline.config import Config, ModelConfig, load_config
from reid_pipeline.embed import onnx as ox
from reid_pipeline.embed.embedder import Embedder
from reid_pipeline.embed.model import ReIDModel, load_model, save_checkpoint
from reid_pipeline.errors import CheckpointError, ConfigError

# one per family the backbone factory builds: torchvision (two), our EfficientNet-Lite,
# torchreid
BACKBONES = ["tv_mobilenet_v2", "tv_resnet18", "efficientnet_lite0", "osnet_x0_25"]
H, W = 64, 32


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports of checkpoints without a writable folder go to a private cache per test."""
    monkeypatch.setenv("REID_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def _randomise(model: ReIDModel, seed: int) -> ReIDModel:
    """Non-trivial BN affine, classifier and calibration (a wrong export would show), BN
    statistics measured on generated crops (as training leaves them: a random network's
    features collapse to one vector after BN layers with made-up statistics)."""
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in model.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    with torch.no_grad():
        for m in bns:
            n = m.num_features
            m.weight.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batch
        x = ox.normalize_bgr(ox.resize_crops(ox.sample_crops(24, seed=100 + seed), H, W))
        model.train()
        model.features(torch.from_numpy(x))
        for m in bns:
            m.momentum = 0.1
        model.w.copy_(torch.rand(model.embed_dim, generator=g))
        model.w.div_(model.w.norm())
        model.b.fill_(1.5)
        model.platt_a.fill_(1.3)
        model.platt_c.fill_(-0.4)
        model.calibrated.fill_(True)
    model.refresh_version()
    return model.eval()


def small_model(backbone: str, seed: int = 0) -> ReIDModel:
    torch.manual_seed(seed)
    m = ReIDModel(backbone, num_classes=3, embed_dim=32, height=H, width=W)
    return _randomise(m, seed)


@pytest.fixture(scope="module", params=BACKBONES)
def exported(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    d = tmp_path_factory.mktemp(request.param)
    ck = save_checkpoint(d / "model.pt", small_model(request.param), Config())
    mcfg = ModelConfig(backbone=request.param, embed_dim=32, height=H, width=W)
    model = load_model(str(ck), mcfg, "cpu")
    res = ox.export_model(model, d / "model.onnx")
    return {"model": model, "ck": ck, "onnx": d / "model.onnx", "res": res, "mcfg": mcfg}


# ---------------------------------------------------------------- the round trip


def test_export_matches_pytorch(exported: dict[str, Any]) -> None:
    model, res = exported["model"], exported["res"]
    v = res.verification
    assert v is not None and v.batches == (1, 7, 16)
    assert v.max_one_minus_cos <= ox.COSINE_TOL and v.max_prob_diff <= ox.PROB_TOL
    assert v.min_distinct > ox.DISTINCT_MIN
    assert res.path == exported["onnx"] and res.model_version == model.model_version

    emb = ox.OnnxEmbedder(exported["onnx"], expect_version=model.model_version, threads=2)
    assert (emb.dim, emb.height, emb.width) == (32, H, W)
    assert emb.model_version == model.model_version
    # the metadata carries the classifier, its calibration and the input size
    meta = emb.meta
    assert meta["w"] == pytest.approx(model.w.detach().tolist())
    assert meta["b"] == pytest.approx(1.5) and meta["platt_a"] == pytest.approx(1.3)
    assert meta["platt_c"] == pytest.approx(-0.4) and meta["calibrated"] is True
    assert meta["opset"] == ox.OPSET and meta["backbone"] == model.arch_name
    # the batch axis is dynamic in the graph
    assert isinstance(emb.session.get_inputs()[0].shape[0], str)

    crops = ox.sample_crops(7, seed=11)
    torch_emb = Embedder(model, "cpu", batch=128, half=False)
    net = ox.EmbeddingNet(model).eval()
    for n in (1, 7):
        got = emb.embed_crops(crops[:n])
        assert got.shape == (n, 32) and got.dtype == torch.float32
        # the same pixels through PyTorch: the runtimes agree
        x = torch.from_numpy(ox.normalize_bgr(ox.resize_crops(crops[:n], H, W)))
        with torch.no_grad():
            ref = net(x)
        cos = nn.functional.cosine_similarity(got, ref, dim=1)
        assert float((1 - cos).max()) <= ox.COSINE_TOL
        # the same pixels as the torch Embedder gets them: the same vectors
        u8 = torch.from_numpy(ox.resize_crops(crops[:n], H, W)).permute(0, 3, 1, 2).flip(1)
        assert torch.allclose(got, torch_emb.embed_batch_u8(u8), atol=1e-4, rtol=1e-3)
    # a batch of 7 embeds each crop as a batch of 1 does (the batch axis mixes nothing)
    one = torch.cat([emb.embed_crops([c]) for c in crops])
    assert torch.allclose(one, emb.embed_crops(crops), atol=1e-4, rtol=1e-4)
    emb.batch = 3  # crops split over several session runs
    assert torch.allclose(one, emb.embed_crops(crops), atol=1e-4, rtol=1e-4)
    assert emb.embed_crops([]).shape == (0, 32)


def test_both_runtimes_embed_crops_alike_with_the_default_model() -> None:
    """The bundled model, crops of random sizes: the torch Embedder (torch's antialiased
    resize) and the OnnxEmbedder (Pillow's, within one grey level) give the same vectors
    and pair probabilities, and the same model version."""
    cfg = ModelConfig()
    model = load_model("default", cfg, "cpu")
    onnx_emb = ox.make_embedder(cfg, model, _cpu())
    assert isinstance(onnx_emb, ox.OnnxEmbedder)
    assert onnx_emb.model_version == model.model_version
    crops = ox.sample_crops(48, seed=21)
    a = Embedder(model, "cpu", half=False).embed_crops(crops)
    b = onnx_emb.embed_crops(crops)
    assert float(nn.functional.cosine_similarity(a, b, dim=1).min()) > 0.999
    dp = (model.pair_probability(a, a) - model.pair_probability(b, b)).abs()
    assert float(dp.mean()) < 0.005 and float(dp.max()) < 0.05


def test_identical_outputs_for_every_image_are_caught() -> None:
    """The known bad-export symptom: every image gives the same embedding."""
    model = small_model("tv_mobilenet_v2", seed=1)

    class Constant:
        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            n = len(feeds[ox.INPUT_NAME])
            return [np.tile(np.linspace(-1, 1, 32, dtype=np.float32), (n, 1))]

    with pytest.raises(CheckpointError, match="identical embeddings") as e:
        ox.verify_export(model, Constant())
    assert "tv_mobilenet_v2" in str(e.value) and "\n" not in str(e.value)

    class Off:
        def __init__(self) -> None:
            self.net = ox.EmbeddingNet(model).eval()

        def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
            with torch.no_grad():
                e = self.net(torch.from_numpy(feeds[ox.INPUT_NAME])).numpy()
            e[:, :8] *= 1.5  # an op exported wrongly
            return [e]

    with pytest.raises(CheckpointError, match="does not match PyTorch"):
        ox.verify_export(model, Off())


def test_model_saved_from_a_gpu_layout_exports_on_cpu(tmp_path: Path) -> None:
    """The CUDA Embedder turns a model channels_last; a checkpoint saved from it (as training
    on a GPU leaves it) exports and serves on the CPU."""
    model = small_model("tv_mobilenet_v2", seed=2).to(memory_format=torch.channels_last)
    ck = save_checkpoint(tmp_path / "gpu.pt", model, Config())
    mcfg = ModelConfig(backbone="tv_mobilenet_v2", embed_dim=32, height=H, width=W)
    loaded = load_model(str(ck), mcfg, "cpu")
    res = ox.export_model(loaded, tmp_path / "gpu.onnx")
    assert res.verification is not None and res.model_version == loaded.model_version


# ---------------------------------------------------------------- bad files


def _one_line_naming(e: pytest.ExceptionInfo[CheckpointError], name: str) -> str:
    msg = str(e.value)
    assert "\n" not in msg and name in msg, msg
    return msg


def test_corrupt_truncated_foreign_and_mismatched_files(
    exported: dict[str, Any], tmp_path: Path
) -> None:
    good = exported["onnx"].read_bytes()
    version = exported["model"].model_version

    bad = tmp_path / "garbage.onnx"
    bad.write_bytes(b"this is not a protobuf\x00\x01" * 50)
    with pytest.raises(CheckpointError) as e:
        ox.OnnxEmbedder(bad)
    assert "cannot be loaded by onnxruntime" in _one_line_naming(e, str(bad))

    cut = tmp_path / "truncated.onnx"
    cut.write_bytes(good[: len(good) // 2])
    with pytest.raises(CheckpointError) as e:
        ox.OnnxEmbedder(cut)
    _one_line_naming(e, str(cut))

    with pytest.raises(CheckpointError) as e:
        ox.OnnxEmbedder(tmp_path / "missing.onnx")
    assert "does not exist" in _one_line_naming(e, "missing.onnx")

    # a valid ONNX model that is not one of our exports
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    foreign = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), foreign)
    with pytest.raises(CheckpointError) as e:
        ox.OnnxEmbedder(foreign)
    assert "not a reid_pipeline export" in _one_line_naming(e, str(foreign))

    # the export of another checkpoint: both versions named
    other = small_model(exported["model"].arch_name, seed=5)
    with pytest.raises(CheckpointError) as e:
        ox.OnnxEmbedder(exported["onnx"], expect_version=other.model_version)
    msg = _one_line_naming(e, str(exported["onnx"]))
    assert version in msg and other.model_version in msg


def test_mismatched_onnx_through_the_config_is_refused(tmp_path: Path) -> None:
    """model.onnx naming another checkpoint's export fails before anything runs."""
    mine = ox.export_model(small_model("osnet_x0_25", 8), tmp_path / "mine.onnx", verify=False)
    other_ck = save_checkpoint(tmp_path / "other.pt", small_model("osnet_x0_25", 9), Config())
    mcfg = ModelConfig(backbone="osnet_x0_25", embed_dim=32, height=H, width=W, onnx=str(mine.path))
    other = load_model(str(other_ck), mcfg, "cpu")
    with pytest.raises(CheckpointError) as e:
        ox.make_embedder(mcfg, other, "cpu")
    msg = _one_line_naming(e, str(mine.path))
    assert other.model_version in msg and mine.model_version in msg


def test_backbone_that_cannot_be_exported_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    model = small_model("osnet_x0_25", seed=3)

    def broken(*a: Any, **k: Any) -> None:
        raise RuntimeError(
            "Exporting the operator 'aten::weird' to ONNX opset 17 is not supported\nmore"
        )

    monkeypatch.setattr(torch.onnx, "export", broken)
    with pytest.raises(CheckpointError) as e:
        ox.export_model(model)
    msg = _one_line_naming(e, "osnet_x0_25")
    assert "cannot be exported to ONNX (opset 17)" in msg and "aten::weird" in msg


# ---------------------------------------------------------------- choosing the runtime


def _cpu() -> torch.device:
    return torch.device("cpu")


def test_auto_exports_beside_the_checkpoint_once_and_repairs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ck = save_checkpoint(tmp_path / "m.pt", small_model("osnet_x0_25", 4), Config())
    mcfg = ModelConfig(backbone="osnet_x0_25", embed_dim=32, height=H, width=W)
    model = load_model(str(ck), mcfg, "cpu")
    emb = ox.make_embedder(mcfg, model, _cpu())
    assert isinstance(emb, ox.OnnxEmbedder) and emb.model_version == model.model_version
    beside = tmp_path / "m.onnx"
    assert beside.is_file()
    stamp = beside.stat().st_mtime_ns
    ox.make_embedder(mcfg, model, _cpu())
    assert beside.stat().st_mtime_ns == stamp  # reused, not exported again
    beside.write_bytes(b"broken")
    with caplog.at_level("WARNING"):
        emb = ox.make_embedder(mcfg, model, _cpu())
    assert isinstance(emb, ox.OnnxEmbedder) and "exporting again" in caplog.text
    assert ox.load_export(beside, expect_version=model.model_version)
    # CUDA keeps torch; so does a network built in memory (nothing to cache)
    assert ox.resolve_runtime(mcfg, model, torch.device("cuda")) == "torch"
    assert ox.resolve_runtime(mcfg, small_model("osnet_x0_25"), _cpu()) == "torch"
    assert isinstance(ox.make_embedder(ModelConfig(runtime="torch"), model, _cpu()), Embedder)


def test_unwritable_folder_and_package_weights_use_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ck = save_checkpoint(tmp_path / "ro" / "m.pt", small_model("osnet_x0_25", 6), Config())
    mcfg = ModelConfig(backbone="osnet_x0_25", embed_dim=32, height=H, width=W)
    model = load_model(str(ck), mcfg, "cpu")
    real_access = ox.os.access
    monkeypatch.setattr(
        ox.os, "access", lambda p, m: False if Path(p) == ck.parent else real_access(p, m)
    )
    emb = ox.make_embedder(mcfg, model, _cpu())
    assert isinstance(emb, ox.OnnxEmbedder)
    cached = ox.cache_dir() / f"{model.model_version}.onnx"
    assert cached.is_file() and not (ck.parent / "m.onnx").exists()
    # the bundled default: never written into the package
    default = load_model("default", ModelConfig(), "cpu")
    look, target = ox.export_locations(default)
    assert target == ox.cache_dir() / f"{default.model_version}.onnx"


def test_onnxruntime_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ck = save_checkpoint(tmp_path / "m.pt", small_model("osnet_x0_25", 7), Config())
    mcfg = ModelConfig(backbone="osnet_x0_25", embed_dim=32, height=H, width=W)
    model = load_model(str(ck), mcfg, "cpu")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    with pytest.raises(ConfigError) as e:
        ox.make_embedder(dataclasses.replace(mcfg, runtime="onnxruntime"), model, _cpu())
    msg = str(e.value)
    assert "model.runtime" in msg and "onnxruntime is not installed" in msg and "\n" not in msg
    # auto's documented fallback: torch
    assert isinstance(ox.make_embedder(mcfg, model, _cpu()), Embedder)
    capsys.readouterr()  # the fallback's log line (when an earlier test set up logging)
    # and through the CLI, one line
    rc = main(
        [
            "export",
            str(ck),
            "--out",
            str(tmp_path / "x.onnx"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: ") and err.count("\n") == 1 and "onnxruntime" in err


def test_runtime_config_keys_are_checked() -> None:
    assert load_config(None, {}).model.runtime == "auto"
    for key, value, words in (
        ("model.runtime", "tensorrt", "must be one of"),
        ("model.threads", -1, "model.threads"),
        ("model.onnx", "m.pt", ".onnx"),
    ):
        with pytest.raises(ConfigError) as e:
            load_config(None, {key: value})
        assert key in str(e.value) and words in str(e.value)
    with pytest.raises(ConfigError, match="model.onnx"):
        load_config(None, {"model.runtime": "torch", "model.onnx": "m.onnx"})


# ---------------------------------------------------------------- one gallery, two runtimes


def _det_files(scene: Path, cameras: list[str]) -> list[str]:
    """The scene's ground-truth boxes as MOTChallenge public detections (frames 1-based)."""
    rows: dict[str, list[str]] = {c: [] for c in cameras}
    with open(scene / "gt.csv") as fh:
        for r in csv.DictReader(fh):
            x1, y1, x2, y2 = (int(r[k]) for k in ("x1", "y1", "x2", "y2"))
            rows[r["camera"]].append(f"{int(r['frame']) + 1},-1,{x1},{y1},{x2 - x1},{y2 - y1},0.9")
    out = []
    for c in cameras:
        p = scene / f"{c}.det.txt"
        p.write_text("\n".join(rows[c]) + "\n")
        out.append(str(p))
    return out


def test_switching_runtime_keeps_the_gallery_and_the_identities(tmp_path: Path) -> None:
    """The demo scene (demo weights, public detections) processed with torch, with
    onnxruntime, and one camera each into one gallery: nothing refused, same identities."""
    from reid_pipeline.datasets.scene import demo_scene_spec, render_scene
    from reid_pipeline.demo.scenario import demo_config_overrides, score_against_truth
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.pipeline.recorded import process_videos

    spec = demo_scene_spec()
    cams = [c.name for c in spec.cameras]
    scene = tmp_path / "scene"
    render_scene(spec, scene)
    dets = _det_files(scene, cams)

    def cfg(out: Path, runtime: str, cam_dets: list[str], db: str = "") -> Config:
        return load_config(
            None,
            {
                **demo_config_overrides(),
                "device": "cpu",
                "detector.kind": "mot",
                "detector.mot_det": cam_dets,
                "model.runtime": runtime,
                "output.out": str(out),
                "output.video": False,
                "output.html": False,
                "gallery.db": db,
            },
        )

    def identities(db: str, c: Config) -> tuple[dict[tuple[str, int, int], int | None], Any]:
        with Gallery.open(db, c.gallery) as g:
            rows = list(g.sightings())
            versions = g.model_versions()
        score = score_against_truth(rows, scene / "gt.csv")
        return {(s.camera, s.frame, s.track): s.identity for s in rows}, (score, versions)

    inputs = [(str(scene / f"{c}.mp4"), c) for c in cams]
    runs = {}
    for runtime in ("torch", "onnxruntime"):
        out = tmp_path / runtime
        c = cfg(out, runtime, dets)
        process_videos(c, inputs)
        runs[runtime] = identities(str(out / "reid.db"), c)
    (ids_t, (score_t, ver_t)), (ids_o, (score_o, ver_o)) = runs["torch"], runs["onnxruntime"]
    assert score_t.ok and score_o.ok, (score_t.describe(), score_o.describe())
    assert ver_t == ver_o and len(ver_t) == 1  # one model version whatever the runtime
    assert ids_t == ids_o  # every sighting got the same identity

    # one gallery: the first camera embedded by torch, the second by onnxruntime
    db = str(tmp_path / "mixed.db")
    c1 = cfg(tmp_path / "m1", "torch", dets[:1], db)
    process_videos(c1, inputs[:1])
    c2 = cfg(tmp_path / "m2", "onnxruntime", dets[1:], db)
    process_videos(c2, inputs[1:])
    ids_m, (score_m, ver_m) = identities(db, c2)
    assert ver_m == ver_t  # nothing refused, no second model version
    assert score_m.ok, score_m.describe()
    # the same people grouped the same way (numbered in another order: one camera at a time)
    assert sorted(score_m.identity_persons.values()) == sorted(score_t.identity_persons.values())


# ---------------------------------------------------------------- reid export / evaluate


def test_cli_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ck = save_checkpoint(tmp_path / "ck.pt", small_model("efficientnet_lite0", 8), Config())
    out = tmp_path / "served" / "ck.onnx"
    buf = io.StringIO()
    with redirect_stdout(buf):
        # our checkpoint declares its backbone: no --backbone needed
        rc = main(["export", str(ck), "--out", str(out), "--device", "cpu"])
    text = buf.getvalue()
    assert rc == 0, capsys.readouterr().err
    version = load_model(
        str(ck), ModelConfig(backbone="efficientnet_lite0", embed_dim=32, height=H, width=W)
    ).model_version
    assert out.is_file() and version in text and "opset 17" in text and "check:" in text
    assert ox.OnnxEmbedder(out, expect_version=version).dim == 32

    # default --out: beside the checkpoint, where model.runtime=auto looks
    with redirect_stdout(io.StringIO()):
        assert main(["export", str(ck)]) == 0
    assert (tmp_path / "ck.onnx").is_file()

    capsys.readouterr()
    for argv, words in (
        (["export", str(tmp_path / "nope.pt")], "does not exist"),
        (["export", str(ck), "--out", str(tmp_path / "x.txt")], ".onnx"),
        (["export", str(ck), "--opset", "7"], "--opset"),
    ):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err


def test_evaluate_with_either_runtime(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`reid evaluate --set model.runtime=...`: the same figures from both runtimes."""
    import cv2

    d = tmp_path / "data" / "Market-1501-v15.09.15"
    rng = np.random.default_rng(0)
    # at the model's input size: both runtimes get the same pixels (no resize), so a
    # random network's figures must agree too (untrained, it amplifies a grey level)
    crops = [cv2.resize(c, (W, H), interpolation=cv2.INTER_AREA) for c in ox.sample_crops(12, 4)]
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (d / sub).mkdir(parents=True)
    for pid in range(1, 7):
        for cam, sub in ((1, "query"), (2, "bounding_box_test"), (3, "bounding_box_test")):
            base = crops[pid - 1] if cam != 3 else crops[pid - 1][:, ::-1]
            noisy = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
            cv2.imwrite(str(d / sub / f"{pid:04d}_c{cam}s1_000000_00.jpg"), noisy)
        cv2.imwrite(str(d / "bounding_box_train" / f"{pid:04d}_c4s1_000000_00.jpg"), crops[pid])
    ck = save_checkpoint(tmp_path / "ck.pt", small_model("osnet_x0_25", 10), Config())
    metrics = {}
    for runtime in ("torch", "onnxruntime"):
        out = tmp_path / runtime
        rc = main(
            [
                "evaluate",
                "--data",
                str(tmp_path / "data"),
                "--checkpoint",
                str(ck),
                "--backbone",
                "osnet_x0_25",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--set",
                f"model.runtime={runtime}",
            ]
        )
        assert rc == 0, capsys.readouterr().err
        assert f"on cpu ({runtime})" in capsys.readouterr().out
        metrics[runtime] = json.loads((out / "metrics.json").read_text())
        assert json.loads((out / "run.json").read_text())["runtime"] == runtime
    for mode, m in metrics["torch"].items():
        assert metrics["onnxruntime"][mode]["mAP"] == pytest.approx(m["mAP"], abs=1e-3), mode
