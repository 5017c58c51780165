"""Backbone initialisation from local weight files (issue 8)."""

import pytest
import torch
import torchvision

from reid_pipeline.embed.backbones import build_backbone
from reid_pipeline.embed.pretrained import init_backbone, resolve_pretrained
from reid_pipeline.errors import CheckpointError


def test_torchvision_imagenet_file_initialises_torchreid_resnet(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    f = tmp_path / "resnet18-tv.pth"
    torch.save({"module." + k: v for k, v in tv.state_dict().items()}, f)
    net, _ = build_backbone("resnet18")
    rep = init_backbone(net, "resnet18", f)
    assert rep.fraction == 1.0 and rep.missing == []
    torch.testing.assert_close(
        net.state_dict()["layer3.1.conv2.weight"], tv.state_dict()["layer3.1.conv2.weight"]
    )


def test_timm_style_wrapper_and_prefix(tmp_path):
    src, _ = build_backbone("osnet_x0_25")
    f = tmp_path / "ckpt.pth"
    torch.save(
        {"state_dict": {"model." + k: v for k, v in src.state_dict().items()}, "epoch": 3}, f
    )
    dst, _ = build_backbone("osnet_x0_25")
    init_backbone(dst, "osnet_x0_25", f)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_wrong_architecture_and_vit_are_refused(tmp_path):
    tv = torchvision.models.resnet18(weights=None)
    f = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), f)
    net, _ = build_backbone("osnet_x0_25")
    with pytest.raises(CheckpointError, match=r"resnet18\.pth.*osnet_x0_25.*another architecture"):
        init_backbone(net, "osnet_x0_25", f)
    vit = tmp_path / "dinov2_vits14.pth"
    torch.save({"blocks.0.attn.qkv.weight": torch.zeros(3, 3), "pos_embed": torch.zeros(1, 2)}, vit)
    with pytest.raises(CheckpointError, match="ViT"):
        init_backbone(net, "osnet_x0_25", vit)


def test_missing_and_corrupt_files(tmp_path):
    net, _ = build_backbone("osnet_x0_25")
    with pytest.raises(CheckpointError, match="does not exist"):
        init_backbone(net, "osnet_x0_25", tmp_path / "nope.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"\x80\x02garbage" * 10)
    with pytest.raises(CheckpointError, match="bad.pth"):
        init_backbone(net, "osnet_x0_25", bad)
    lst = tmp_path / "list.pth"
    torch.save([1, 2, 3], lst)
    with pytest.raises(CheckpointError, match="no state_dict"):
        init_backbone(net, "osnet_x0_25", lst)


def test_imagenet_offline_names_the_expected_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("REID_OFFLINE", "1")
    with pytest.raises(CheckpointError, match=r"not on disk .*osnet_x0_25_imagenet\.pth.*offline"):
        resolve_pretrained("imagenet", "osnet_x0_25")
    with pytest.raises(CheckpointError, match=r"resnet50-19c8e357\.pth"):
        resolve_pretrained("imagenet", "resnet50")
    with pytest.raises(CheckpointError, match="no ImageNet weights"):
        resolve_pretrained("imagenet", "pcb_p6")
    # once the file is in the cache it is found without any network
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "osnet_x0_25_imagenet.pth").write_bytes(b"x")
    assert resolve_pretrained("imagenet", "osnet_x0_25").name == "osnet_x0_25_imagenet.pth"
    with pytest.raises(CheckpointError, match="does not exist"):
        resolve_pretrained(str(tmp_path / "missing.pth"), "osnet_x0_25")
