"""``reid bench --size small`` on the CPU: the table and JSON have every stage, ours and the
baseline are measured, and ours computes what its reference computes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from reid_pipeline.cli import main


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    import contextlib
    import io

    out = tmp_path_factory.mktemp("bench") / "bench.json"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["bench", "--size", "small", "--device", "cpu", "--json", str(out)])
    data = json.loads(out.read_text()) if out.is_file() else {}
    assert rc == 0, (buf.getvalue(), data.get("checks"), data.get("info"))
    return data, buf.getvalue()


def test_every_stage_has_ours_and_baseline(bench_run: tuple[dict, str]) -> None:
    data, table = bench_run
    assert data["size"] == "small" and data["device"].startswith("cpu")
    assert data["skipped"] == {}
    stages = {r["stage"] for r in data["rows"]}
    assert stages == {"scoring", "embedder", "detector", "end_to_end"}
    for r in data["rows"]:
        assert r["ours_value"] > 0 and r["baseline_value"] > 0, r
        assert math.isclose(r["ratio"], r["ours_value"] / r["baseline_value"], rel_tol=1e-9)
        assert r["unit"] in ("pairs/s", "crops/s", "frames/s")
        # the printed table carries the same figures
        assert f"{r['ours_value']:11.3e}".strip() in table
    baselines = " | ".join(r["baseline"] for r in data["rows"])
    for name in (
        "torch.cdist(p=1)",
        "naive",
        "cosine",
        "FeatureExtractor-like",
        "one frame at a time",
        "track()",
    ):
        assert name in baselines, name
    assert "RANDOM weights" in table  # no detector weights offline: the output says so


def test_ours_equals_reference(bench_run: tuple[dict, str]) -> None:
    checks = bench_run[0]["checks"]
    assert checks["scoring_ok"] is True and checks["scoring_rel_err"] < 1e-5
    assert checks["prefilter_recall"] > 0.9
    assert checks["embedder_ok"] is True and checks["embedder_min_cosine_vs_baseline"] > 0.999
    assert checks["graphed_min_cosine"] > 0.999
    assert checks["fast_embedder_ok"] is True
    assert checks["end_to_end_ok"] is True and checks["end_to_end_frames"] == 2 * 6


def test_bad_stage_and_unwritable_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["bench", "--stages", "scoring,warp", "--device", "cpu"]) == 2
    assert "bench.stages" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(
        [
            "bench",
            "--stages",
            "scoring",
            "--device",
            "cpu",
            "--json",
            str(blocker / "sub" / "out.json"),
        ]
    )
    assert rc == 2
    assert "cannot write bench results" in capsys.readouterr().err


def test_timeit_and_graphed_features_on_cpu() -> None:
    from reid_pipeline.bench.speed import timeit
    from reid_pipeline.embed.embedder import normalize
    from reid_pipeline.embed.graphed import GraphedFeatures
    from reid_pipeline.embed.model import ReIDModel

    calls = []
    t = timeit(lambda: calls.append(1), torch.device("cpu"), min_time=0.0, max_reps=3)
    assert t >= 0 and len(calls) == 4  # one warm-up, then at least three timed calls
    torch.manual_seed(0)
    model = ReIDModel("osnet_x0_25", embed_dim=16, height=64, width=32).eval()
    gf = GraphedFeatures(model, 4, (64, 32), "cpu")
    x = torch.randint(0, 256, (5, 3, 64, 32), dtype=torch.uint8)
    with torch.no_grad():
        ref = model.features(normalize(x))
    assert torch.allclose(gf(x), ref, atol=1e-4)
    with pytest.raises(ValueError, match="expected uint8"):
        gf(x.float())


def test_fast_embedder_matches_embedder_on_cpu() -> None:
    import numpy as np

    from reid_pipeline.bench.speed import random_crops
    from reid_pipeline.embed.embedder import Embedder, crops_to_batch
    from reid_pipeline.embed.graphed import FastEmbedder
    from reid_pipeline.embed.model import ReIDModel

    torch.manual_seed(0)
    model = ReIDModel("osnet_x0_25", embed_dim=16, height=64, width=32).eval()
    fe = FastEmbedder(model, "cpu", batch=4)
    crops = random_crops(6)
    a, b = fe.resize(crops), crops_to_batch(crops, 64, 32, "cpu")
    assert a.shape == b.shape == (6, 3, 64, 32) and a.dtype == torch.uint8
    assert (a.float() - b.float()).abs().mean() < 2.0  # two area-like filters agree
    exact = [np.random.default_rng(1).integers(0, 256, (64, 32, 3), dtype=np.uint8)]
    assert torch.equal(fe.resize(exact), crops_to_batch(exact, 64, 32, "cpu"))
    ea, eb = fe.embed_crops(crops), Embedder(model, "cpu", batch=4).embed_crops(crops)
    assert ea.shape == eb.shape == (6, 16)
    assert torch.nn.functional.cosine_similarity(ea, eb).min() > 0.999
    assert fe.embed_crops([]).shape == (0, 16)
    with pytest.raises(ValueError, match="crop 0"):
        fe.embed_crops([np.zeros((10, 10), np.uint8)])
