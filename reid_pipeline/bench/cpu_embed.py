"""CPU embedding throughput (issue 17): our torch ``Embedder``, our ``OnnxEmbedder`` and
torchreid's ``FeatureExtractor``, in the same run, on the same model and input size.

    uv run python -m reid_pipeline.bench.cpu_embed                 # 2 threads, 128 crops
    uv run python -m reid_pipeline.bench.cpu_embed --threads 2 --crops 128 --reps 7 \
        --json runs/cpu_embed.json

Two models:

* ``osnet_x1_0`` at 256x128 (the issue's comparison), random weights saved as a torchreid
  ``state_dict``: ``FeatureExtractor(model_name="osnet_x1_0", model_path=that file)`` builds
  it, our side imports the same file (``load_model``, adapter passing features through);
* the bundled default ``tv_mobilenet_v2`` at 128x64, which ``FeatureExtractor`` cannot build
  (torchreid has no such architecture): the baseline is ``FeatureExtractor.__call__``'s own
  code on our network (per crop ``ToPILImage -> Resize -> ToTensor -> Normalize``, stack,
  eager forward under ``no_grad``).

The crops are ``--crops`` generated people of random sizes (64-400 px tall,
``embed.onnx.sample_crops``); FeatureExtractor gets them already in RGB (its callers'
conversion is not timed). Each round times every embedder once on all crops, in turn, so a
busy machine slows them alike; the figure is the median over ``--reps`` rounds after one
warm-up call. Prints the table, the agreement of the outputs (cosine), and with ``--json``
writes it all.

``--int8 MARKET_ROOT`` also probes int8 quantisation of the default model's export with
onnxruntime (static, QDQ, per-channel weights, percentile-calibrated on 512 train images of
that dataset; dynamic quantisation for comparison): speed beside fp32, and mAP on the
dataset's query/gallery from the same runner ``reid evaluate`` uses. The int8 files stay in
a temporary folder: the project serves fp32 only (their mAP did not hold, docs/benchmarks.md).

    uv run python -m reid_pipeline.bench.cpu_embed --cases default \
        --int8 ../shared/data/market1501-dev
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch


def _fe_like(net: torch.nn.Module, size: tuple[int, int]) -> Callable[[list[np.ndarray]], Any]:
    """``torchreid.utils.FeatureExtractor.__call__`` for a list of RGB arrays, on ``net``."""
    import torchvision.transforms as T

    preprocess = T.Compose(
        [
            T.Resize(size),
            T.ToTensor(),
            T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    to_pil = T.ToPILImage()
    net.eval()

    def call(images: list[np.ndarray]) -> Any:
        batch = torch.stack([preprocess(to_pil(a)) for a in images], dim=0)
        with torch.no_grad():
            return net(batch)

    return call


def _osnet_case(tmp: Path, threads: int) -> dict[str, Any]:
    from reid_pipeline.config import ModelConfig
    from reid_pipeline.embed.model import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torchreid.reid.models import build_model
        from torchreid.reid.utils import FeatureExtractor  # torchreid.utils in the docs
    torch.manual_seed(0)
    net = build_model("osnet_x1_0", num_classes=1, loss="softmax", pretrained=False)
    path = tmp / "osnet_x1_0.pth"
    torch.save(net.state_dict(), path)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints what it loaded
        fe = FeatureExtractor(
            model_name="osnet_x1_0",
            model_path=str(path),
            image_size=(256, 128),
            device="cpu",
            verbose=False,
        )
    mcfg = ModelConfig(backbone="osnet_x1_0", height=256, width=128, threads=threads)
    model = load_model(str(path), mcfg, "cpu")
    return {
        "name": "osnet_x1_0 256x128",
        "model": model,
        "baseline": lambda rgb: fe(list(rgb)),
        "baseline_name": "torchreid FeatureExtractor",
    }


def _default_case(threads: int) -> dict[str, Any]:
    from reid_pipeline.config import ModelConfig
    from reid_pipeline.embed.model import load_model
    from reid_pipeline.embed.onnx import EmbeddingNet

    model = load_model("default", ModelConfig(threads=threads), "cpu")
    return {
        "name": "tv_mobilenet_v2 128x64 (default)",
        "model": model,
        "baseline": _fe_like(EmbeddingNet(model), model.input_size),
        "baseline_name": "FeatureExtractor's loop",
    }


def _time_rounds(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    for f in fns.values():  # warm-up: first-call allocations, ORT's arena, lazy imports
        f()
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            t = time.perf_counter()
            f()
            out[k].append(time.perf_counter() - t)
    return out


def _cos(a: Any, b: Any) -> float:
    a, b = torch.as_tensor(a).float(), torch.as_tensor(b).float()
    return float(torch.nn.functional.cosine_similarity(a, b, dim=1).min())


def run_case(case: dict[str, Any], crops: Sequence[np.ndarray], threads: int, reps: int) -> dict:
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.onnx import OnnxEmbedder, export_model

    model = case["model"]
    rgb = [np.ascontiguousarray(c[:, :, ::-1]) for c in crops]
    ours_torch = Embedder(model, "cpu", batch=len(crops), half=False)
    res = export_model(model, None, threads=threads)
    ours_ort = OnnxEmbedder(res.data, batch=len(crops), threads=threads)
    fns = {
        "baseline": lambda: case["baseline"](rgb),
        "torch": lambda: ours_torch.embed_crops(crops),
        "onnxruntime": lambda: ours_ort.embed_crops(crops),
    }
    times = _time_rounds(fns, reps)
    n = len(crops)
    rate = {k: n / statistics.median(v) for k, v in times.items()}
    e_base = fns["baseline"]()
    e_torch = fns["torch"]()
    e_ort = fns["onnxruntime"]()
    return {
        "case": case["name"],
        "model_version": model.model_version,
        "baseline": case["baseline_name"],
        "crops_per_s": {k: round(v, 1) for k, v in rate.items()},
        "seconds": {k: [round(t, 4) for t in v] for k, v in times.items()},
        "ratio_onnxruntime_vs_baseline": round(rate["onnxruntime"] / rate["baseline"], 2),
        "ratio_torch_vs_baseline": round(rate["torch"] / rate["baseline"], 2),
        "min_cos_onnxruntime_vs_torch": _cos(e_ort, e_torch),
        # the baseline has no adapter: comparable only where the adapter passes features on
        "min_cos_onnxruntime_vs_baseline": _cos(e_ort, e_base)
        if tuple(e_base.shape) == tuple(e_ort.shape)
        else None,
        "export_check": res.verification.to_dict() if res.verification else None,
    }


def int8_probe(
    root: str, crops: Sequence[np.ndarray], threads: int, reps: int, tmp: Path
) -> list[dict[str, Any]]:
    """fp32 and int8 exports of the default model: crops/s and mAP on ``root``'s test split."""
    import cv2
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from reid_pipeline.config import ModelConfig
    from reid_pipeline.datasets.market import load_dataset
    from reid_pipeline.embed.model import load_model
    from reid_pipeline.embed.onnx import (
        OnnxEmbedder,
        export_model,
        normalize_bgr,
        resize_crops,
        write_atomic,
    )
    from reid_pipeline.evaluate.runner import embed_records, evaluate_features

    model = load_model("default", ModelConfig(), "cpu")
    h, w = model.input_size
    ds = load_dataset(root)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(ds.train), min(512, len(ds.train)), replace=False)
    calib: list[np.ndarray] = []
    for i in pick:
        img = cv2.imread(ds.train[int(i)].path)
        if img is not None:
            calib.append(img)
    fp32 = write_atomic(tmp / "fp32.onnx", export_model(model, None, threads=threads).data)
    pre = tmp / "pre.onnx"
    quant_pre_process(str(fp32), str(pre))
    meta = list(onnx.load(str(fp32)).metadata_props)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.i = 0

        def get_next(self) -> dict[str, np.ndarray] | None:
            if self.i >= len(calib):
                return None
            part = calib[self.i : self.i + 32]
            self.i += 32
            return {"images": normalize_bgr(resize_crops(part, h, w))}

    graph = onnx.load(str(pre)).graph
    depthwise = [
        n.name
        for n in graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]
    ends = [graph.node[0].name] + [n.name for n in graph.node if n.op_type in ("Gemm", "MatMul")]
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    ends.append(convs[-1])
    variants: dict[str, Path] = {"fp32": fp32}
    for name, exclude in (
        ("int8 static", []),
        ("int8 static, first/last layers and depthwise fp32", ends + depthwise),
    ):
        out = tmp / f"{len(variants)}.onnx"
        quantize_static(
            str(pre),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.Percentile,
            extra_options={"CalibPercentile": 99.99},
            nodes_to_exclude=exclude,
        )
        variants[name] = out
    dyn = tmp / "dyn.onnx"
    quantize_dynamic(str(pre), str(dyn), weight_type=QuantType.QInt8)
    variants["int8 dynamic"] = dyn
    embedders = {}
    for name, path in variants.items():
        q = onnx.load(str(path))
        del q.metadata_props[:]
        q.metadata_props.extend(meta)  # the export's reid.* metadata, for OnnxEmbedder
        onnx.save(q, str(path))
        embedders[name] = OnnxEmbedder(path, threads=threads, batch=len(crops))

    def call(e: OnnxEmbedder) -> Callable[[], Any]:
        return lambda: e.embed_crops(crops)

    times = _time_rounds({k: call(e) for k, e in embedders.items()}, reps)
    rows = []
    for name, emb in embedders.items():
        qf, q_kept, _ = embed_records(emb, list(ds.query), f"{name}: query")
        gf, g_kept, _ = embed_records(emb, list(ds.gallery), f"{name}: gallery")
        res = evaluate_features(model, qf, gf, q_kept, g_kept, ["cosine", "dissimilarity"])
        m = res.metrics()
        rows.append(
            {
                "variant": name,
                "crops_per_s": round(len(crops) / statistics.median(times[name]), 1),
                "mAP_dissimilarity": round(100 * m["dissimilarity"]["mAP"], 2),
                "mAP_cosine": round(100 * m["cosine"]["mAP"], 2),
                "rank1_dissimilarity": round(100 * m["dissimilarity"]["rank1"], 2),
                "size_mb": round(path_size(variants[name]) / 1e6, 1),
            }
        )
    return rows


def path_size(p: Path) -> int:
    return p.stat().st_size


def format_int8(rows: list[dict[str, Any]]) -> str:
    base = rows[0]
    lines = [
        "int8 probe (default model, onnxruntime), Market test split:",
        f"{'variant':52}{'crops/s':>9}{'x fp32':>8}{'mAP diss':>10}{'d mAP':>8}"
        f"{'mAP cos':>9}{'R1 diss':>9}{'MB':>6}",
    ]
    for r in rows:
        lines.append(
            f"{r['variant']:52}{r['crops_per_s']:>9.1f}"
            f"{r['crops_per_s'] / base['crops_per_s']:>7.2f}x{r['mAP_dissimilarity']:>10.2f}"
            f"{r['mAP_dissimilarity'] - base['mAP_dissimilarity']:>+8.2f}{r['mAP_cosine']:>9.2f}"
            f"{r['rank1_dissimilarity']:>9.2f}{r['size_mb']:>6.1f}"
        )
    return "\n".join(lines)


def format_rows(rows: list[dict[str, Any]], threads: int, n: int) -> str:
    lines = [
        f"CPU embedding, {threads} threads, {n} crops of random sizes (crops/s, median)",
        f"{'model':34}{'baseline':>12}{'torch':>10}{'onnxrt':>10}{'onnxrt/base':>13}"
        f"{'torch/base':>12}",
    ]
    for r in rows:
        c = r["crops_per_s"]
        lines.append(
            f"{r['case']:34}{c['baseline']:>12.1f}{c['torch']:>10.1f}{c['onnxruntime']:>10.1f}"
            f"{r['ratio_onnxruntime_vs_baseline']:>12.2f}x{r['ratio_torch_vs_baseline']:>11.2f}x"
        )
    for r in rows:
        base = r["min_cos_onnxruntime_vs_baseline"]
        lines.append(
            f"  {r['case']}: baseline = {r['baseline']}; min cos onnxruntime vs torch "
            f"{r['min_cos_onnxruntime_vs_torch']:.6f}"
            + (f", vs baseline {base:.6f}" if base is not None else "")
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads")
    ap.add_argument("--crops", type=int, default=128)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", default="osnet,default", help="comma list: osnet, default")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--int8", default="", metavar="MARKET_ROOT", help="also probe int8 (above)")
    a = ap.parse_args(argv)
    import os

    os.environ.setdefault("REID_NO_PROGRESS", "1")  # the int8 probe's embedding passes
    from reid_pipeline.embed.onnx import sample_crops

    torch.set_num_threads(max(1, a.threads))
    crops = sample_crops(a.crops, seed=a.seed)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [c.strip() for c in a.cases.split(",") if c.strip()]:
            if name == "osnet":
                case = _osnet_case(Path(tmp), a.threads)
            elif name == "default":
                case = _default_case(a.threads)
            else:
                raise SystemExit(f"unknown case {name!r} (osnet, default)")
            rows.append(run_case(case, crops, a.threads, a.reps))
            print(format_rows(rows[-1:], a.threads, a.crops).splitlines()[2], flush=True)
        int8 = int8_probe(a.int8, crops, a.threads, a.reps, Path(tmp)) if a.int8 else []
    print(format_rows(rows, a.threads, a.crops))
    if int8:
        print(format_int8(int8))
    if a.json:
        out = Path(a.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "threads": a.threads,
            "crops": a.crops,
            "reps": a.reps,
            "rows": rows,
            "int8": int8,
        }
        out.write_text(json.dumps(info, indent=1) + "\n")
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
