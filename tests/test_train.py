"""Training: loss terms, the w constraint, P x K sampler, augmentation, a tiny CPU run,
resume, frozen backbone / zoo init, and bad inputs. Generated data only."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from reid_pipeline.cli import main as cli_main
from reid_pipeline.config import load_config
from reid_pipeline.embed.model import ReIDModel
from reid_pipeline.errors import CheckpointError, ConfigError, InputError
from reid_pipeline.train.augment import augment_batch, flip, low_resolution, pad_crop, random_erase
from reid_pipeline.train.loop import Trainer, split_validation
from reid_pipeline.train.losses import (
    batch_hard_triplet,
    identity_ce,
    pair_hinge,
    w_norm_penalty,
)
from reid_pipeline.train.sampler import PKSampler
from reid_pipeline.types import ImageRecord

ARCH = "resnet18"  # the torchreid backbone that trains fastest on a CPU


# ------------------------------------------------------------------ generated data


def make_dataset(
    root: Path, n_train: int = 16, per_id: int = 6, n_test: int = 4, seed: int = 0
) -> Path:
    """Market-1501 layout of 'persons': each identity has its own shirt and trouser colours
    (plus noise and a shifting position), so identities are learnable but not trivially."""
    rng = np.random.default_rng(seed)
    base = root / "Market-1501-v15.09.15"

    def person(pid: int, j: int) -> np.ndarray:
        r = np.random.default_rng(pid)
        top, bottom = r.integers(30, 225, 3), r.integers(30, 225, 3)
        img = np.full((64, 32, 3), 110, np.int32)
        dy = int(rng.integers(-4, 5))
        img[8 + dy : 34 + dy, 6:26] = top
        img[34 + dy : 60 + dy, 8:24] = bottom
        img += rng.integers(-25, 26, img.shape)
        return np.clip(img, 0, 255).astype(np.uint8)

    for split, pids, n in [
        ("bounding_box_train", range(1, n_train + 1), per_id),
        ("query", range(500, 500 + n_test), 2),
        ("bounding_box_test", range(500, 500 + n_test), 4),
    ]:
        (base / split).mkdir(parents=True, exist_ok=True)
        for pid in pids:
            for j in range(n):
                cam = 1 + j % 3 if split != "query" else 1 + (j + 1) % 3
                name = f"{pid:04d}_c{cam}s1_{j:06d}_00.jpg"
                cv2.imwrite(str(base / split / name), person(pid, j))
    return root


@pytest.fixture(autouse=True)
def one_thread() -> object:
    """One intra-op thread: on a small shared CPU, OpenMP threads spinning against other
    jobs made these small training steps several times slower than one thread."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("synth"))


def tiny_cfg(data: Path, out: Path, **kv: object) -> object:
    base: dict[str, object] = {
        "train.data": str(data),
        "train.out": str(out),
        "model.backbone": ARCH,
        "model.height": 32,
        "model.width": 16,
        "model.embed_dim": 32,
        "train.p": 4,
        "train.k": 4,
        "train.val_ids": 3,
        "train.epochs": 2,
        "train.warmup_epochs": 0,
        "train.lr": 1e-3,
        "train.eval_every": 0,
        "train.workers": 1,
        "device": "cpu",
        "train.pad": 2,
        "train.erase_prob": 0.0,  # 10 px of shift would wipe out 32x16 images
    }
    base.update(kv)
    return load_config(None, base)


# ------------------------------------------------------------------ losses


def test_hinge_is_zero_on_well_separated_pairs() -> None:
    e = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 10.0], [10.0, 10.1]])
    y = torch.tensor([0, 0, 1, 1])
    w = torch.tensor([0.6, 0.8])
    loss, acc = pair_hinge(e, y, w, torch.tensor(5.0), margin=1.0)
    assert float(loss) == 0.0 and float(acc) == 1.0
    # the same pairs, labels swapped between two of them: each class's mean, then balanced
    loss, acc = pair_hinge(e, torch.tensor([0, 1, 0, 1]), w, torch.tensor(5.0), margin=1.0)
    s = 5.0 - (e[:, None] - e[None]).abs() @ w
    same = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 1]]).bool()
    pos = torch.relu(1 - s[0, 2]) + torch.relu(1 - s[1, 3])
    neg_pairs = [(0, 1), (0, 3), (1, 2), (2, 3)]
    neg = sum(torch.relu(1 + s[i, j]) for i, j in neg_pairs)
    assert same.sum() == 2
    assert float(loss) == pytest.approx(0.5 * float(pos) / 2 + 0.5 * float(neg) / 4, rel=1e-5)
    assert float(acc) < 1.0


def test_batch_hard_triplet_on_a_hand_made_batch() -> None:
    # 1-D embeddings: id 0 at 0 and 1, id 1 at 3 and 6
    e = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    y = torch.tensor([0, 0, 1, 1])
    # anchor 0: d_ap 1, d_an 3 -> relu(1-3+m); anchor 1: 1, 2; anchor 2: 3, 2; anchor 3: 3, 5
    m = 1.5
    expected = (max(0, 1 - 3 + m) + max(0, 1 - 2 + m) + max(0, 3 - 2 + m) + max(0, 3 - 5 + m)) / 4
    assert float(batch_hard_triplet(e, y, m)) == pytest.approx(expected, abs=1e-4)
    assert float(batch_hard_triplet(e, y, 0.0)) == pytest.approx(0.25, abs=1e-4)


def test_label_smoothed_ce() -> None:
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    sharp = float(identity_ce(logits, torch.tensor([0]), 0.0))
    smooth = float(identity_ce(logits, torch.tensor([0]), 0.3))
    assert sharp < 1e-3 < smooth


@pytest.mark.parametrize("mode", ["projection", "penalty"])
def test_w_constraint_holds_after_steps(mode: str) -> None:
    """Hinge steps on w alone push ||w|| up (bigger margins); the constraint must hold."""
    torch.manual_seed(0)
    m = ReIDModel(ARCH, num_classes=2, embed_dim=16)
    e = torch.randn(32, 16)
    y = torch.arange(32) // 4
    e = e + 0.5 * torch.randn(8, 16)[y]
    opt = torch.optim.Adam([m.w, m.b], lr=0.05)
    for _ in range(150):
        loss, _ = pair_hinge(e, y, m.w, m.b, margin=5.0)
        if mode == "penalty":
            loss = loss + 10.0 * w_norm_penalty(m.w, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if mode == "projection":
            m.constrain_w(1.0)
        else:
            with torch.no_grad():
                m.w.clamp_(min=0.0)
    norm = float(m.w.detach().norm())
    assert float(m.w.detach().min()) >= 0
    if mode == "projection":
        assert norm <= 1.0 + 1e-6 and norm > 0.99  # the bound is active
    else:
        assert norm <= 1.05
    assert float(w_norm_penalty(torch.full((4,), 0.4), 1.0)) == 0.0


# ------------------------------------------------------------------ sampler, augmentation


def test_pk_sampler_yields_p_identities_of_k_images() -> None:
    labels = [i // 5 for i in range(40)] + [8, 8]  # id 8 has fewer than K images
    s = PKSampler(labels, p=4, k=3, seed=1)
    batches = s.batches(0)
    assert batches
    for b in batches:
        assert len(b) == 12
        ids = [labels[i] for i in b]
        assert len(set(ids)) == 4 and all(ids.count(i) == 3 for i in set(ids))
    assert [list(b) for b in s.batches(0)] == [list(b) for b in batches]  # reproducible
    assert [list(b) for b in s.batches(1)] != [list(b) for b in batches]
    with pytest.raises(InputError, match="train.p"):
        PKSampler([0, 0, 1, 1], p=4, k=2)


def test_augmentations_on_device_tensors() -> None:
    torch.manual_seed(0)
    x = torch.randint(0, 256, (6, 3, 32, 16), dtype=torch.uint8)
    assert torch.equal(flip(x, 1.0), x.flip(-1)) and torch.equal(flip(x, 0.0), x)
    assert torch.equal(pad_crop(x, 0), x)
    pc = pad_crop(x, 4)
    assert pc.shape == x.shape and pc.dtype == torch.uint8
    xf = x.float()
    er = random_erase(xf, 1.0)
    changed = (er != xf).float().mean(dim=(1, 2, 3))
    assert bool((changed > 0).all()) and bool((changed < 0.5).all())
    out = augment_batch(x)
    assert out.shape == (6, 3, 32, 16) and out.dtype == torch.float32
    assert abs(float(augment_batch(x, 0, 0, 0).mean())) < 2.5


def test_low_resolution_is_what_a_far_camera_gives() -> None:
    """train.lowres_prob: the image shrunk to a person LOW..HIGH px tall and enlarged back:
    same size and type, fine detail gone (a sharp stripe pattern blurs), coarse colour kept."""
    torch.manual_seed(0)
    stripes = torch.zeros(4, 3, 256, 128, dtype=torch.uint8)
    stripes[:, :, ::2] = 255  # one-pixel stripes: no far camera can show them
    stripes[:, 0, 128:] = 0  # and a coarse colour change, which any camera shows
    out = low_resolution(stripes, 1.0, (40, 64))
    assert out.shape == stripes.shape and out.dtype == torch.uint8
    rows = out[:, 1, :120].float()
    assert float((rows[:, 1:] - rows[:, :-1]).abs().mean()) < 20  # stripes were 255 apart
    assert float(out[:, 0, 140:].float().mean()) < 60 < float(out[:, 0, :100].float().mean())
    assert torch.equal(low_resolution(stripes, 0.0, (40, 64)), stripes)
    assert torch.equal(low_resolution(stripes, 1.0, (300, 400)), stripes)  # not smaller: kept
    with pytest.raises(ConfigError, match=r"train\.lowres_heights"):
        load_config(overrides={"train.lowres_heights": [64, 40]})
    with pytest.raises(ConfigError, match=r"train\.lowres_prob"):
        load_config(overrides={"train.lowres_prob": 1.5})


def test_split_validation_holds_out_whole_identities() -> None:
    recs = [
        ImageRecord(f"{p}_{c}_{j}.jpg", p, c) for p in range(10) for c in range(2) for j in range(3)
    ]
    train, q, g = split_validation(recs, 3, seed=0)
    held = {r.pid for r in q}
    assert len(held) == 3 and not held & {r.pid for r in train}
    assert {r.pid for r in g} == held and len(q) == 6 and len(g) == 12
    with pytest.raises(InputError, match="val_ids"):
        split_validation(recs, 10, seed=0)


# ------------------------------------------------------------------ training runs


def test_tiny_cpu_run_lowers_loss_and_raises_pair_accuracy(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny_cfg(data_root, tmp_path / "run", **{"train.epochs": 6, "train.eval_every": 3})
    result = Trainer(cfg, "cpu").fit()
    import csv

    rows = list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))
    assert len(rows) == 6
    first, last = rows[0], rows[-1]
    assert float(last["loss"]) < 0.9 * float(first["loss"])
    assert float(last["pair_acc"]) > float(first["pair_acc"]) + 0.1
    assert float(last["w_norm"]) <= 1.0 + 1e-5
    for name in ("best.pt", "last.pt", "model_fp16.pt", "result.json"):
        assert (tmp_path / "run" / name).is_file()
    assert list((tmp_path / "run" / "tb").iterdir())  # TensorBoard events
    assert set(result["test"]) == {"euclidean", "cosine", "dissimilarity"}
    assert result["calibration"]["a"] > 0  # higher score -> higher probability
    assert result["validation"].startswith("held-out")


def test_resume_gives_the_same_state(data_root: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight"
    Trainer(tiny_cfg(data_root, straight), "cpu").fit()
    cut = tmp_path / "cut"
    # stop after the first of two epochs (the schedule still spans two), then resume
    Trainer(tiny_cfg(data_root, cut, **{"train.time_limit_s": 1e-9}), "cpu").fit()
    assert torch.load(cut / "last.pt", weights_only=True)["epoch"] == 0
    Trainer(tiny_cfg(data_root, cut, **{"train.resume": str(cut / "last.pt")}), "cpu").fit()
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(cut / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 1
    for k, v in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][k], v, atol=1e-6, rtol=1e-5, msg=k)
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()


def test_frozen_backbone_from_a_zoo_checkpoint(data_root: Path, tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid import models

    torch.manual_seed(3)
    zoo = models.build_model(ARCH, num_classes=11, pretrained=False).state_dict()
    zoo_path = tmp_path / "zoo.pth"
    torch.save(zoo, zoo_path)
    cfg = tiny_cfg(
        data_root,
        tmp_path / "frozen",
        **{"train.init": str(zoo_path), "train.freeze_backbone": True, "train.epochs": 1},
    )
    tr = Trainer(cfg, "cpu")
    tr.fit()
    sd = torch.load(tmp_path / "frozen" / "last.pt", weights_only=True)["state_dict"]
    for k, v in zoo.items():  # weights and BN statistics untouched
        if not k.startswith("classifier.") and not k.endswith("num_batches_tracked"):
            assert torch.equal(sd[f"backbone.{k}"], v), k
    assert not torch.equal(sd["adapter.0.weight"], ReIDModel(ARCH, 12, 32).adapter[0].weight)


def test_frozen_embedding_trains_the_classifier_only(data_root: Path, tmp_path: Path) -> None:
    """train.freeze_embedding keeps init's backbone AND adapter (weights and BN statistics)
    and trains w and b alone, starting from init's classifier."""
    first = tmp_path / "first"
    Trainer(tiny_cfg(data_root, first, **{"train.epochs": 1}), "cpu").fit()
    init = torch.load(first / "last.pt", weights_only=True)["state_dict"]
    cfg = tiny_cfg(
        data_root,
        tmp_path / "head",
        **{
            "train.init": str(first / "last.pt"),
            "train.freeze_embedding": True,
            "train.lambda_ce": 0.0,
            "train.lambda_triplet": 0.0,
            "train.epochs": 2,
            "train.lr": 0.05,
        },
    )
    Trainer(cfg, "cpu").fit()
    sd = torch.load(tmp_path / "head" / "last.pt", weights_only=True)["state_dict"]
    for k, v in init.items():
        if k.startswith(("backbone.", "adapter.")):
            assert torch.equal(sd[k], v), k
    assert not torch.equal(sd["w"], init["w"]) or not torch.equal(sd["b"], init["b"])
    assert float(sd["w"].min()) >= 0 and float(sd["w"].norm()) <= 1.0 + 1e-5

    with pytest.raises(ConfigError, match="freeze_embedding.*needs train.init"):
        tiny_cfg(data_root, tmp_path / "x", **{"train.freeze_embedding": True})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid import models
    zoo_path = tmp_path / "zoo.pth"
    torch.save(models.build_model(ARCH, num_classes=11, pretrained=False).state_dict(), zoo_path)
    zoo_cfg = tiny_cfg(
        data_root, tmp_path / "z", **{"train.init": str(zoo_path), "train.freeze_embedding": True}
    )
    with pytest.raises(ConfigError, match="not one of our checkpoints"):
        Trainer(zoo_cfg, "cpu").fit()


# ------------------------------------------------------------------ bad inputs


def test_bad_data_roots(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does-not-exist"):
        Trainer(tiny_cfg(tmp_path / "does-not-exist", tmp_path / "o"), "cpu").fit()
    with pytest.raises(InputError, match="train.data"):
        Trainer(tiny_cfg(tmp_path, tmp_path / "o", **{"train.data": ""}), "cpu").fit()
    empty = tmp_path / "empty" / "Market-1501-v15.09.15"
    for split in ("bounding_box_train", "query", "bounding_box_test"):
        (empty / split).mkdir(parents=True)
    with pytest.raises(InputError):
        Trainer(tiny_cfg(tmp_path / "empty", tmp_path / "o"), "cpu").fit()


def test_unreadable_images_are_skipped_with_a_count(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = make_dataset(tmp_path / "d", n_train=6, per_id=4)
    bad = root / "Market-1501-v15.09.15" / "bounding_box_train" / "0001_c1s1_000099_00.jpg"
    bad.write_bytes(b"not a jpeg")
    from reid_pipeline.datasets.market import load_dataset
    from reid_pipeline.train.loop import preload

    ds = load_dataset(root)
    split, kept = preload(ds.train, 32, 16, torch.device("cpu"), 1)
    assert len(kept) == len(ds.train) - 1 and split.images.shape[0] == len(kept)
    assert "1 of" in caplog.text and "0001_c1s1_000099_00.jpg" in caplog.text


def test_bad_resume_file_and_config(data_root: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="junk.pt"):
        Trainer(tiny_cfg(data_root, tmp_path / "o", **{"train.resume": str(junk)}), "cpu").fit()
    with pytest.raises(ConfigError, match="train.p"):
        tiny_cfg(data_root, tmp_path / "o", **{"train.p": 1})
    with pytest.raises(ConfigError, match="train.hinge_balance"):
        tiny_cfg(data_root, tmp_path / "o", **{"train.hinge_balance": 2})


def test_cli_reports_a_bad_root_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc = cli_main(
        ["train", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--device", "cpu"]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("error: ") and "nope" in err[-1]
