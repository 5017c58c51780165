"""evaluate_model / reid evaluate end to end on generated images (a tiny model, and one real
torchreid model-zoo state_dict)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reid_pipeline import cli
from reid_pipeline.evaluate import evaluate_model, evaluate_rank_full
from reid_pipeline.evaluate.distances import distance
from reid_pipeline.evaluate.runner import run_evaluation
from reid_pipeline.match.scoring import dichotomy_scores
from reid_pipeline.types import ImageRecord


class Tiny(nn.Module):
    """The ReIDModel surface the evaluator and Embedder use, on pooled colours."""

    def __init__(self, dim: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed_dim, self.input_size, self.model_version = dim, (32, 16), "tiny-0"
        self.proj = nn.Linear(3 * 4 * 2, dim)
        self.w = nn.Parameter(torch.rand(dim))
        self.b = nn.Parameter(torch.tensor(2.0))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(F.adaptive_avg_pool2d(x, (4, 2)).flatten(1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def pair_scores(self, q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return dichotomy_scores(q, g, self.w.detach(), self.b.detach())


def _market(root: Path, pids: int = 6, noise: float = 25.0) -> Path:
    """A Market-1501 layout: identity = a colour; query cam 1, gallery cams 1-3, a distractor."""
    d = root / "Market-1501-v15.09.15"
    rng = np.random.default_rng(0)
    for sub in ("bounding_box_train", "query", "bounding_box_test"):
        (d / sub).mkdir(parents=True)
    for pid in range(1, pids + 1):
        col = rng.integers(0, 255, 3)
        for cam, sub, n in (
            (1, "query", 1),
            (1, "bounding_box_test", 1),
            (2, "bounding_box_test", 2),
            (3, "bounding_box_test", 1),
            (4, "bounding_box_train", 2),
        ):
            for k in range(n):
                img = np.clip(col + rng.normal(0, noise, (40, 20, 3)), 0, 255).astype(np.uint8)
                cv2.imwrite(str(d / sub / f"{pid:04d}_c{cam}s1_{k:06d}_00.jpg"), img)
    img = rng.integers(0, 255, (40, 20, 3), dtype=np.uint8)
    cv2.imwrite(str(d / "bounding_box_test" / "0000_c2s1_000000_00.jpg"), img)
    return d


def _records(d: Path, sub: str) -> list[ImageRecord]:
    from reid_pipeline.datasets.market import load_dataset

    ds = load_dataset(d)
    return {"query": ds.query, "gallery": ds.gallery}[sub]


def test_evaluate_model_shape_and_consistency(tmp_path: Path) -> None:
    d = _market(tmp_path)
    q, g = _records(d, "query"), _records(d, "gallery")
    model = Tiny()
    out = evaluate_model(
        model, q, g, ["euclidean", "cosine", "dissimilarity"], "cpu", batch=5, rerank=True
    )
    assert list(out) == [
        "euclidean",
        "euclidean+rerank",
        "cosine",
        "cosine+rerank",
        "dissimilarity",
        "dissimilarity+rerank",
    ]
    for m in out.values():
        assert set(m) == {"rank1", "rank5", "rank10", "mAP", "mINP"}
        assert all(0.0 <= v <= 1.0 for v in m.values())
    # colours separate identities: every mode retrieves them
    assert out["euclidean"]["rank1"] == 1.0 and out["dissimilarity"]["mAP"] > 0.9
    # the figures are evaluate_rank_full on the Embedder's features, nothing else
    from reid_pipeline.embed.embedder import Embedder

    emb = Embedder(model, "cpu", batch=5, half=False)
    from reid_pipeline.datasets.market import read_image

    qf = emb.embed_crops([read_image(r.path) for r in q])
    gf = emb.embed_crops([read_image(r.path) for r in g])
    s = model.pair_scores(qf, gf)
    ref = evaluate_rank_full(
        -s, [r.pid for r in q], [r.pid for r in g], [r.camid for r in q], [r.camid for r in g]
    )
    assert out["dissimilarity"] == pytest.approx(ref.summary())
    # dissimilarity distance = b - s (non-negative for w >= 0), same order as -s
    dist = distance("dissimilarity", model, qf, gf)
    torch.testing.assert_close(dist, model.b.detach() - s)
    assert float(dist.min()) >= 0


def test_hard_case_differs_between_modes(tmp_path: Path) -> None:
    """With noisy images the three modes are genuinely different functions."""
    d = _market(tmp_path, pids=10, noise=90.0)
    q, g = _records(d, "query"), _records(d, "gallery")
    res = run_evaluation(
        Tiny(), q, g, ["euclidean", "cosine", "dissimilarity"], "cpu", batch=8, keep_distmats=True
    )
    dms = res.distmats
    assert not np.allclose(np.argsort(dms["euclidean"], 1), np.argsort(dms["cosine"], 1))
    assert res.results["euclidean"].num_skipped == 0


def test_undecodable_images_are_counted_and_left_out(tmp_path: Path) -> None:
    d = _market(tmp_path)
    q, g = _records(d, "query"), _records(d, "gallery")
    bad = d / "bounding_box_test" / "0001_c3s9_000009_00.jpg"
    bad.write_bytes(b"truncated")
    g = g + [ImageRecord(str(bad), 1, 2)]
    res = run_evaluation(Tiny(), q, g, ["cosine"], "cpu", batch=4)
    assert res.undecodable == [str(bad)]
    assert len(res.gallery) == len(g) - 1


def test_unknown_mode_and_empty_sets(tmp_path: Path) -> None:
    d = _market(tmp_path)
    q, g = _records(d, "query"), _records(d, "gallery")
    with pytest.raises(ValueError, match="unknown matching mode"):
        evaluate_model(Tiny(), q, g, ["manhattan"], "cpu")
    from reid_pipeline.errors import InputError

    with pytest.raises(InputError, match="query set is empty"):
        evaluate_model(Tiny(), [], g, ["cosine"], "cpu")


def test_cli_writes_metrics_plots_and_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import reid_pipeline.embed.model as model_mod

    d = _market(tmp_path / "data")
    monkeypatch.setattr(model_mod, "load_model", lambda spec, cfg, device: Tiny())
    out = tmp_path / "eval"
    rc = cli.main(
        [
            "evaluate",
            "--data",
            str(tmp_path / "data"),
            "--checkpoint",
            "x.pt",
            "--out",
            str(out),
            "--rerank",
            "--set",
            "eval.ranked_queries=3",
        ]
    )
    text = capsys.readouterr().out
    assert rc == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {
        f"{m}{s}" for m in ("euclidean", "cosine", "dissimilarity") for s in ("", "+rerank")
    }
    assert all(0 <= v <= 1 for m in metrics.values() for v in m.values())
    assert cv2.imread(str(out / "cmc.png")) is not None
    ranked = cv2.imread(str(out / "ranked_dissimilarity.png"))
    assert ranked is not None and ranked.shape[0] > 3 * 100  # 3 query rows
    info = json.loads((out / "run.json").read_text())
    assert info["skipped_queries"]["cosine"] == 0 and info["undecodable_images"] == []
    assert "dissimilarity vs best baseline" in text and "queries skipped" in text
    assert "undecodable images left out: 0" in text
    assert f"{100 * metrics['cosine']['mAP']:.1f}" in text
    assert str(d) in text


def test_cli_bad_root_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    rc = cli.main(
        [
            "evaluate",
            "--data",
            str(tmp_path / "empty"),
            "--checkpoint",
            "x.pt",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: dataset root") and "bounding_box_train" in err


def test_cli_with_torchreid_zoo_state_dict(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A real torchreid model-zoo file (random weights) through load_model and the Embedder."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid.models import build_model
    net = build_model("osnet_x0_25", num_classes=7, loss="softmax", pretrained=False)
    torch.save(net.state_dict(), tmp_path / "zoo.pth")
    _market(tmp_path / "data", pids=4)
    out = tmp_path / "eval"
    rc = cli.main(
        [
            "evaluate",
            "--data",
            str(tmp_path / "data"),
            "--checkpoint",
            str(tmp_path / "zoo.pth"),
            "--backbone",
            "osnet_x0_25",
            "--out",
            str(out),
            "--modes",
            "euclidean,dissimilarity",
            "--device",
            "cpu",
            "--set",
            "model.height=64",
            "--set",
            "model.width=32",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"euclidean", "dissimilarity"}

    # one of our own checkpoints (the imported model saved with a non-uniform w)
    from reid_pipeline.config import Config, ModelConfig
    from reid_pipeline.embed.model import load_model, save_checkpoint

    cfg = Config(model=ModelConfig(backbone="osnet_x0_25", height=64, width=32))
    model = load_model(str(tmp_path / "zoo.pth"), cfg.model, "cpu")
    with torch.no_grad():
        model.w.copy_(torch.rand(model.w.shape, generator=torch.Generator().manual_seed(0)))
    save_checkpoint(tmp_path / "ours.pt", model, cfg)
    rc = cli.main(
        [
            "evaluate",
            "--data",
            str(tmp_path / "data"),
            "--checkpoint",
            str(tmp_path / "ours.pt"),
            "--backbone",
            "osnet_x0_25",
            "--out",
            str(tmp_path / "eval2"),
            "--modes",
            "euclidean,dissimilarity",
            "--device",
            "cpu",
        ]
    )
    assert rc == 0, capsys.readouterr().err
    ours = json.loads((tmp_path / "eval2" / "metrics.json").read_text())
    assert ours["euclidean"] == pytest.approx(metrics["euclidean"])  # same backbone features
    info = json.loads((tmp_path / "eval2" / "run.json").read_text())
    assert info["model_version"] == model.model_version


def test_pick_queries_only_counted_ones() -> None:
    from reid_pipeline.evaluate.plots import pick_queries

    q = [
        ImageRecord("a", 1, 0),
        ImageRecord("b", 2, 0),
        ImageRecord("c", 3, 1),
        ImageRecord("d", 1, 2),
    ]
    g = [ImageRecord("x", 1, 0), ImageRecord("y", 2, 1), ImageRecord("z", 3, 1)]
    # q0: pid 1 only in its own camera -> not counted; q3: pid 1 seen by cam 0 -> counted
    assert pick_queries(q, g, 10) == [1, 3]
    assert pick_queries(q, g, 1) == [1]
    assert pick_queries(q, g, 0) == []
