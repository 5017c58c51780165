"""ReIDModel, checkpoints, torchreid zoo import, Embedder (CPU, generated data only)."""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from reid_pipeline.config import Config, ModelConfig
from reid_pipeline.embed.embedder import Embedder, crops_to_batch, normalize
from reid_pipeline.embed.model import (
    DEFAULT_CHECKPOINT,
    ReIDModel,
    export_fp16,
    load_model,
    save_checkpoint,
)
from reid_pipeline.errors import CheckpointError
from reid_pipeline.match.scoring import dichotomy_scores

ARCH = "osnet_x0_25"  # the smallest torchreid OSNet; builds in well under a second


def _torchreid_state_dict(arch: str, num_classes: int = 7) -> dict[str, torch.Tensor]:
    """A model-zoo style state_dict made here (never the shared MSMT17 file)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid import models

    torch.manual_seed(1)
    net = models.build_model(arch, num_classes=num_classes, pretrained=False)
    with torch.no_grad():  # non-trivial BN statistics, so a wrong load would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net.state_dict()


@pytest.fixture(scope="module")
def model() -> ReIDModel:
    torch.manual_seed(0)
    m = ReIDModel(ARCH, num_classes=5, embed_dim=32, height=64, width=32).eval()
    with torch.no_grad():
        m.w.copy_(torch.rand(32))
        m.constrain_w(1.0)
        m.b.fill_(2.0)
    return m


def test_pair_scores_use_the_reference_and_rank_identical_first(model: ReIDModel) -> None:
    q, g = torch.randn(3, 32), torch.randn(5, 32)
    g[1] = q[0]
    s = model.pair_scores(q, g)
    assert s.shape == (3, 5)
    torch.testing.assert_close(s, dichotomy_scores(q, g, model.w.detach(), model.b.detach()))
    manual = (model.b - (q[0] - g[2]).abs() @ model.w).detach()
    assert float(s[0, 2]) == pytest.approx(float(manual), rel=1e-5)
    assert int(s[0].argmax()) == 1 and float(s[0, 1]) == pytest.approx(2.0)


def test_embed_is_eval_mode_and_has_embed_dim(model: ReIDModel) -> None:
    model.train()
    x = torch.randn(3, 3, 64, 32)
    e1 = model.embed(x)
    assert model.training  # restored
    e2 = model.embed(x[:1])  # eval mode: an image's embedding does not depend on its batch
    assert e1.shape == (3, 32) and e1.dtype == torch.float32
    torch.testing.assert_close(e1[:1], e2, atol=1e-5, rtol=1e-4)
    model.eval()


def test_calibrate_fits_a_monotone_probability() -> None:
    m = ReIDModel(ARCH, num_classes=2, embed_dim=16)
    g = torch.Generator().manual_seed(0)
    pos = torch.randn(200, generator=g) + 2.0
    neg = torch.randn(2000, generator=g) - 2.0
    a, _c = m.calibrate(torch.cat([pos, neg]), torch.cat([torch.ones(200), torch.zeros(2000)]))
    assert a > 0 and bool(m.calibrated)
    p = m.score_to_probability(torch.tensor([-4.0, 0.0, 4.0]))
    assert p[0] < 0.05 and abs(float(p[1]) - 0.5) < 0.1 and p[2] > 0.95
    with pytest.raises(ValueError):
        m.calibrate(torch.ones(5), torch.ones(5))  # one class only


def test_checkpoint_round_trip(tmp_path: Path, model: ReIDModel) -> None:
    cfg = Config(model=ModelConfig(backbone=ARCH))
    model.calibrate(torch.tensor([3.0, 2.5, -1.0, -2.0]), torch.tensor([1.0, 1.0, 0.0, 0.0]))
    path = save_checkpoint(tmp_path / "ck.pt", model, cfg, epoch=3)
    ck = torch.load(path, weights_only=True)
    assert ck["epoch"] == 3 and ck["arch"]["backbone"] == ARCH
    assert ck["config"]["model"]["backbone"] == ARCH and ck["code_version"]
    loaded = load_model(str(path), ModelConfig(backbone=ARCH), "cpu")
    x = torch.randn(2, 3, 64, 32)
    torch.testing.assert_close(loaded.embed(x), model.embed(x))
    assert loaded.model_version == model.refresh_version() == ck["model_version"]
    assert loaded.calibration() == pytest.approx(model.calibration())
    assert loaded.input_size == (64, 32)


def test_fp16_export_is_small_and_loads(tmp_path: Path, model: ReIDModel) -> None:
    full = save_checkpoint(tmp_path / "full.pt", model, Config())
    small = export_fp16(tmp_path / "small.pt", model, Config())
    assert small.stat().st_size < 0.7 * full.stat().st_size
    loaded = load_model(str(small), ModelConfig(backbone=ARCH), "cpu")
    assert loaded.model_version == torch.load(small, weights_only=True)["model_version"]
    x = torch.randn(2, 3, 64, 32)
    e_ref, e_16 = model.embed(x), loaded.embed(x)
    assert float((e_ref - e_16).abs().max()) < 0.05 * float(e_ref.abs().max()) + 1e-3
    assert torch.equal(loaded.w, model.w.detach())  # classifier kept in fp32


@pytest.mark.parametrize("wrap", ["plain", "module", "state_dict"])
def test_torchreid_zoo_import(tmp_path: Path, wrap: str) -> None:
    sd = _torchreid_state_dict(ARCH)
    if wrap == "module":
        sd = {f"module.{k}": v for k, v in sd.items()}
    obj = {"state_dict": sd, "epoch": 10} if wrap == "state_dict" else sd
    path = tmp_path / "zoo.pth"
    torch.save(obj, path)
    m = load_model(str(path), ModelConfig(backbone=ARCH), "cpu")
    own = m.backbone.state_dict()
    for k, v in _torchreid_state_dict(ARCH).items():
        if not k.startswith("classifier."):
            assert torch.equal(own[k], v), k
    # the adapter passes the backbone's feature through and w is uniform: plain L1 distance
    x = torch.randn(3, 3, 64, 32)
    with torch.no_grad():
        feat = m.backbone.eval()(x)
    e = m.embed(x)
    torch.testing.assert_close(e, feat / math.sqrt(1 + 1e-5), atol=1e-5, rtol=1e-4)
    l1 = torch.cdist(e, e, p=1)
    torch.testing.assert_close(
        m.pair_scores(e, e), -l1 / math.sqrt(m.embed_dim), atol=1e-4, rtol=1e-4
    )


def test_zoo_checkpoint_of_another_architecture_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x0_25.pth"
    torch.save(_torchreid_state_dict(ARCH), path)
    with pytest.raises(CheckpointError) as ei:
        load_model(str(path), ModelConfig(backbone="osnet_x0_5"), "cpu")
    msg = str(ei.value)
    assert str(path) in msg and "osnet_x0_25" in msg and "osnet_x0_5" in msg


def test_our_checkpoint_of_another_architecture_is_refused(
    tmp_path: Path, model: ReIDModel
) -> None:
    path = save_checkpoint(tmp_path / "ours.pt", model, Config())
    with pytest.raises(CheckpointError) as ei:
        load_model(str(path), ModelConfig(backbone="resnet50"), "cpu")
    assert str(path) in str(ei.value) and ARCH in str(ei.value) and "resnet50" in str(ei.value)


def test_bad_checkpoint_files(tmp_path: Path, model: ReIDModel) -> None:
    good = save_checkpoint(tmp_path / "good.pt", model, Config())
    data = good.read_bytes()
    cases = {
        "missing.pt": None,
        "garbage.pt": b"this is not a checkpoint at all" * 10,
        "truncated.pt": data[: len(data) // 2],
        "empty.pt": b"",
    }
    for name, content in cases.items():
        p = tmp_path / name
        if content is not None:
            p.write_bytes(content)
        with pytest.raises(CheckpointError) as ei:
            load_model(str(p), ModelConfig(backbone=ARCH), "cpu")
        assert str(p) in str(ei.value), name
    listy = tmp_path / "list.pt"
    torch.save([1, 2, 3], listy)
    with pytest.raises(CheckpointError, match="list.pt"):
        load_model(str(listy), ModelConfig(backbone=ARCH), "cpu")
    strings = tmp_path / "strings.pt"
    torch.save({"a": "b"}, strings)
    with pytest.raises(CheckpointError, match="strings.pt"):
        load_model(str(strings), ModelConfig(backbone=ARCH), "cpu")


def test_bundled_default_checkpoint_loads_calibrated() -> None:
    assert DEFAULT_CHECKPOINT.is_file()
    m = load_model("default", ModelConfig(), "cpu")
    ck = torch.load(DEFAULT_CHECKPOINT, weights_only=True)
    # the shipped default (MODEL_CARD.md): MSMT17 OSNet x0.25 fine-tuned on Market-dev
    assert m.arch_name == "osnet_x0_25" and bool(m.calibrated)
    assert m.input_size == (256, 128) and m.model_version == ck["model_version"]
    e = Embedder(m, "cpu").embed_crops([np.zeros((80, 30, 3), np.uint8)] * 2)
    assert e.shape == (2, m.embed_dim) and bool(torch.isfinite(e).all())
    assert float(m.w.min()) >= 0 and float(m.w.norm()) <= 1.0 + 1e-4
    assert DEFAULT_CHECKPOINT.stat().st_size < 8 * 2**20


def test_embedder_resizes_varied_bgr_crops(model: ReIDModel) -> None:
    rng = np.random.default_rng(0)
    crops = [
        rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        for h, w in [(64, 32), (130, 50), (40, 20), (300, 120), (64, 32)]
    ]
    emb = Embedder(model, "cpu", batch=2, half=True)
    e = emb.embed_crops(crops)
    assert e.shape == (5, 32) and e.dtype == torch.float32
    # the same crop gives the same vector whatever its batch neighbours
    torch.testing.assert_close(e[0], emb.embed_crops([crops[0]])[0], atol=1e-5, rtol=1e-4)
    # a crop already at input size: BGR -> RGB and ImageNet normalisation, nothing else
    x = torch.from_numpy(crops[0][:, :, ::-1].copy()).permute(2, 0, 1)[None]
    torch.testing.assert_close(e[0], model.embed(normalize(x))[0], atol=1e-5, rtol=1e-4)
    assert emb.embed_crops([]).shape == (0, 32)
    with pytest.raises(ValueError, match="crop 1"):
        emb.embed_crops([crops[0], np.zeros((10, 10), np.uint8)])


def test_crops_to_batch_resizes_to_input_size() -> None:
    crop = np.zeros((100, 40, 3), np.uint8)
    crop[:, :, 2] = 200  # red in BGR
    b = crops_to_batch([crop], 64, 32, "cpu")
    assert b.shape == (1, 3, 64, 32) and b.dtype == torch.uint8
    assert int(b[0, 0].float().mean()) == 200 and int(b[0, 2].max()) == 0  # RGB order
