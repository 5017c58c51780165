"""``reid bench``: every GPU-relevant stage beside the tool a user would otherwise use.

Why one command: speed claims are only worth the run that backs them, so the bench runs
our path and its baseline on the same inputs, the same device and in the same process,
and prints our figure, the baseline's and the ratio. ``--size small`` keeps it to seconds
on a CPU, which is what CI runs; ``--size full`` is the H100 table in docs/benchmarks.md.
Each stage also checks that ours computes the same thing as its reference (``checks``),
so a fast wrong path cannot pass.

Stages: ``scoring`` (the Triton kernel vs ``torch.cdist(p=1)``, a naive broadcast and the
cosine matmul; fused top-k; the cosine prefilter's recall), ``embedder`` (our Embedder vs a
torchreid-``FeatureExtractor``-like loop), ``detector`` (batched across cameras vs one
frame at a time) and ``end_to_end`` (our pipeline on N streams vs ultralytics ``track()``
per stream). A stage that cannot run here (a package missing) is reported as skipped
with the reason, never silently dropped.
"""

from __future__ import annotations

import logging
import math
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reid_pipeline.config import Config

log = logging.getLogger(__name__)

STAGES = ("scoring", "embedder", "detector", "end_to_end")

SIZES: dict[str, dict[str, Any]] = {
    # small: every stage in well under a minute on 2 shared CPU cores (CI); the model is
    # still osnet_x1_0, fed 64x32 crops so that its forward stays cheap on a CPU
    "small": {
        "nq": 32,
        "ng": 2048,
        "dim": 512,
        "ng_recall": 4096,
        "crops": 8,
        "emb_batch": 4,
        "emb_hw": (64, 32),
        "det_frames": 4,
        "det_hw": (240, 320),
        "streams": 2,
        "stream_frames": 6,
        "stream_hw": (240, 320),
        "imgsz": 128,
        "min_time": 0.0,
        "max_reps": 3,
        "cpu_threads": 1,
    },
    "full": {
        "nq": 1024,
        "ng": 262144,
        "dim": 512,
        "ng_recall": 1_000_000,
        "crops": 4096,
        "emb_batch": 256,
        "emb_hw": None,
        "det_frames": 64,
        "det_hw": (1080, 1920),
        "streams": 16,
        "stream_frames": 48,
        "stream_hw": (1080, 1920),
        "imgsz": 640,
        "min_time": 0.3,
        "max_reps": 50,
        "cpu_threads": 0,
    },
}
_TIMING = {"min_time": 0.3, "max_reps": 50}  # caps for timeit, set per size by run_bench


@dataclass
class Row:
    """One line of the table: our figure beside the baseline's, same unit, same inputs."""

    stage: str
    ours: str
    ours_value: float
    baseline: str
    baseline_value: float
    unit: str
    note: str = ""

    @property
    def ratio(self) -> float:
        if self.baseline_value > 0 and math.isfinite(self.baseline_value):
            return self.ours_value / self.baseline_value
        return float("nan")


@dataclass
class BenchResult:
    device: str
    size: str
    rows: list[Row] = field(default_factory=list)
    checks: dict[str, Any] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "size": self.size,
            "rows": [dict(asdict(r), ratio=r.ratio) for r in self.rows],
            "checks": self.checks,
            "skipped": self.skipped,
            "info": self.info,
        }


# ------------------------------------------------------------------ timing


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timeit(
    fn: Callable[[], Any], dev: torch.device, min_time: float = 0.3, max_reps: int = 50
) -> float:
    """Median seconds of ``fn`` after one warm-up call (compilation, autotuning, caches).

    CUDA work is synchronised around each call, so the time is the device's, not the
    launch's. Repeats until ``min_time`` has passed (at least 3, at most ``max_reps``).
    """
    min_time = min(min_time, _TIMING["min_time"])
    max_reps = min(max_reps, int(_TIMING["max_reps"]))
    fn()
    _sync(dev)
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < 3 or (time.perf_counter() - start < min_time and len(times) < max_reps):
        t0 = time.perf_counter()
        fn()
        _sync(dev)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


# ------------------------------------------------------------------ scoring


def bench_scoring(
    res: BenchResult, dev: torch.device, sz: dict[str, Any], use_triton: bool
) -> None:
    from reid_pipeline.match.prefilter import prefilter_recall, prefiltered_topk
    from reid_pipeline.match.scoring import (
        dichotomy_scores,
        resolve_backend,
        score_pairs,
        topk_pairs,
    )

    gen = torch.Generator(device="cpu").manual_seed(0)
    nq, ng, d = sz["nq"], sz["ng"], sz["dim"]
    # ReLU-like embeddings (the adapter's activation) and non-negative classifier weights
    q = torch.randn(nq, d, generator=gen).relu().to(dev)
    g = torch.randn(ng, d, generator=gen).relu().to(dev)
    w = torch.rand(d, generator=gen).to(dev)
    w = w / w.norm()
    b = 0.5
    half = dev.type == "cuda"
    qh, gh = (q.half(), g.half()) if half else (q, g)
    backend = resolve_backend("auto" if use_triton else "torch", dev)
    res.info["scoring_backend"] = backend
    pairs = nq * ng

    if backend == "triton":
        from reid_pipeline.match.triton_kernel import PackedGallery

        t_pack = timeit(lambda: PackedGallery.build(gh, w), dev)
        pg = PackedGallery.build(gh, w)

        def ours_fn() -> Any:
            return score_pairs(qh, pg, w, b)

        def topk_fn() -> Any:
            return topk_pairs(qh, pg, w, b, 10)

        ours_name = "Triton fp16x2 kernel, gallery packed once"
        res.info["gallery_pack_ms"] = t_pack * 1e3
    else:

        def ours_fn() -> Any:
            return score_pairs(qh, gh, w, b, backend=backend)

        def topk_fn() -> Any:
            return topk_pairs(qh, gh, w, b, 10, backend=backend)

        ours_name = f"score_pairs ({backend} reference)"
    t_ours = timeit(ours_fn, dev)
    ours = pairs / t_ours
    if backend == "triton":
        t_incl = timeit(lambda: score_pairs(qh, gh, w, b), dev)
        res.info["scoring_incl_packing_pairs_per_s"] = pairs / t_incl
    # numerics: ours vs the fp64 reference on the first rows (ties the speed to correctness)
    sub = min(nq, 64)
    ref = dichotomy_scores(qh[:sub].double(), gh.double(), w.double(), b)
    got = ours_fn()[:sub].double()
    rel = float((got - ref).norm() / ref.norm())
    res.checks["scoring_rel_err"] = rel
    res.checks["scoring_ok"] = rel < (2e-3 if backend == "triton" else 1e-5)

    qw, gw = (qh.float() * w), (gh.float() * w)
    t_cd = timeit(lambda: torch.cdist(qw, gw, p=1), dev)
    res.rows.append(
        Row(
            "scoring",
            ours_name,
            ours,
            "torch.cdist(p=1), w-scaled fp32",
            pairs / t_cd,
            "pairs/s",
            f"D={d}, {nq} queries x {ng} gallery",
        )
    )
    ng_naive = min(ng, 8192)
    t_nv = timeit(
        lambda: (
            (qh[:, None, :].float() - gh[None, :ng_naive, :].float()).abs_().mul_(w).sum(-1)
            if nq * ng_naive * d <= 2**28
            else dichotomy_scores(qh, gh[:ng_naive], w, b)
        ),
        dev,
    )
    res.rows.append(
        Row(
            "scoring",
            ours_name,
            ours,
            "naive (q[:,None]-g[None]).abs()*w",
            nq * ng_naive / t_nv,
            "pairs/s",
            f"naive on {ng_naive} gallery rows",
        )
    )
    qn = torch.nn.functional.normalize(qh.float(), dim=1).to(qh.dtype)
    gn = torch.nn.functional.normalize(gh.float(), dim=1).to(gh.dtype)
    t_cos = timeit(lambda: qn @ gn.t(), dev)
    res.rows.append(
        Row(
            "scoring",
            ours_name,
            ours,
            f"cosine {str(qh.dtype)[6:]} matmul",
            pairs / t_cos,
            "pairs/s",
            "cosine is a tensor-core matmul: the prefilter's reason to exist",
        )
    )
    t_topk = timeit(topk_fn, dev)
    res.rows.append(
        Row(
            "scoring",
            "fused top-10 (no N x M matrix)",
            pairs / t_topk,
            "full matrix + torch.topk",
            pairs / timeit(lambda: torch.topk(ours_fn(), 10, dim=1), dev),
            "pairs/s",
        )
    )
    # large gallery: cosine prefilter + exact re-scoring vs exhaustive classifier top-k
    ngr = sz["ng_recall"]
    gr = torch.randn(ngr, d, generator=gen).relu().to(dev).to(qh.dtype)
    qr = (
        (
            gr[torch.randint(0, ngr, (nq,), generator=gen).to(dev)].float()
            + 0.5 * torch.randn(nq, d, generator=gen).to(dev)
        )
        .relu()
        .to(qh.dtype)
    )
    shortlist = 256
    recall = prefilter_recall(qr, gr, w, b, shortlist=shortlist, backend=backend)
    t_pf = timeit(
        lambda: prefiltered_topk(qr, gr, w, b, 10, shortlist=shortlist),
        dev,
        min_time=0.1,
        max_reps=5,
    )
    t_ex = timeit(
        lambda: topk_pairs(qr, gr, w, b, 10, backend=backend), dev, min_time=0.1, max_reps=5
    )
    res.rows.append(
        Row(
            "scoring",
            f"cosine prefilter + re-score top {shortlist}",
            nq * ngr / t_pf,
            "exhaustive classifier top-10",
            nq * ngr / t_ex,
            "pairs/s",
            f"gallery {ngr}: recall of the true best {recall:.4f}",
        )
    )
    res.checks["prefilter_recall"] = recall


# ------------------------------------------------------------------ embedder


def random_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """Person-shaped crops of varied size with smooth content (blobs, like clothing), so
    that any two sensible resizers agree and the embeddings can be compared."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        h = int(rng.integers(96, 320))
        w = max(16, int(h / rng.uniform(1.8, 3.2)))
        small = rng.integers(0, 256, (12, 6, 3), dtype=np.uint8)
        out.append(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC))
    return out


def _torchreid_like(
    model: Any, crops: list[np.ndarray], dev: torch.device, h: int, w: int, batch: int
) -> torch.Tensor:
    """What torchreid's FeatureExtractor does: per-image CPU resize + to_tensor + normalize,
    stack, eager fp32 forward. ``model``: a torchreid network (untyped; ``.features(x)``)."""
    import cv2

    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    out = []
    with torch.no_grad():
        for i in range(0, len(crops), batch):
            ims = []
            for c in crops[i : i + batch]:
                rgb = cv2.cvtColor(
                    cv2.resize(c, (w, h), interpolation=cv2.INTER_LINEAR), cv2.COLOR_BGR2RGB
                )
                ims.append(
                    torch.from_numpy(
                        ((rgb.astype(np.float32) / 255.0 - mean) / std).transpose(2, 0, 1).copy()
                    )
                )
            x = torch.stack(ims).to(dev)
            out.append(model.features(x).float())
    return torch.cat(out)


def bench_embedder(res: BenchResult, cfg: Config, dev: torch.device, sz: dict[str, Any]) -> None:
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.graphed import GraphedFeatures
    from reid_pipeline.embed.model import ReIDModel, load_model
    from reid_pipeline.errors import CheckpointError

    torch.manual_seed(0)
    h, w = sz["emb_hw"] or (cfg.model.height, cfg.model.width)
    model = (
        ReIDModel(
            cfg.model.backbone,
            embed_dim=cfg.model.embed_dim,
            activation=cfg.model.activation,
            height=h,
            width=w,
        )
        .to(dev)
        .eval()
    )
    weights = "random init"
    try:  # trained weights: a random MobileNetV2's features are noise, too unstable to compare
        model.load_state_dict(load_model(cfg.model.checkpoint, cfg.model, dev).state_dict())
        weights = f"{cfg.model.checkpoint} weights"
    except (CheckpointError, RuntimeError) as e:
        log.info("bench embedder: %s; using random weights", str(e).splitlines()[0][:120])
    crops = random_crops(sz["crops"])
    bs = sz["emb_batch"]
    emb = Embedder(model, dev, batch=bs, half=cfg.model.half)
    n = len(crops)
    t_ours = timeit(lambda: emb.embed_crops(crops), dev, min_time=0.5, max_reps=5)
    baseline = (
        ReIDModel(
            cfg.model.backbone,
            embed_dim=cfg.model.embed_dim,
            activation=cfg.model.activation,
            height=h,
            width=w,
        )
        .to(dev)
        .eval()
    )
    baseline.load_state_dict(model.state_dict())
    t_base = timeit(
        lambda: _torchreid_like(baseline, crops, dev, h, w, bs), dev, min_time=0.5, max_reps=5
    )
    res.rows.append(
        Row(
            "embedder",
            f"Embedder.embed_crops ({dev.type} resize, "
            f"{str(emb.amp_dtype)[6:] if emb.amp_dtype else 'fp32'})",
            n / t_ours,
            "torchreid FeatureExtractor-like (CPU resize, eager fp32)",
            n / t_base,
            "crops/s",
            f"{cfg.model.backbone} {weights}, {h}x{w} input, batch {bs}",
        )
    )
    # same crops, same weights: the embeddings must agree (cosine ~1; fp16 rounding only)
    a = emb.embed_crops(crops[:8])
    r = _torchreid_like(baseline, crops[:8], dev, h, w, bs)
    cos = float(torch.nn.functional.cosine_similarity(a.float(), r.float(), dim=1).min())
    res.checks["embedder_min_cosine_vs_baseline"] = cos
    res.checks["embedder_ok"] = cos > 0.98
    # the fast path: one resize kernel per batch, the model replayed from a CUDA graph
    from reid_pipeline.embed.graphed import FastEmbedder

    fe = FastEmbedder(model, dev, batch=bs, half=cfg.model.half)
    t_fe = timeit(lambda: fe.embed_crops(crops), dev, min_time=0.5, max_reps=5)
    res.rows.append(
        Row(
            "embedder",
            f"FastEmbedder.embed_crops ({fe.describe()})",
            n / t_fe,
            "torchreid FeatureExtractor-like (CPU resize, eager fp32)",
            n / t_base,
            "crops/s",
            f"{cfg.model.backbone} {weights}, {h}x{w} input",
        )
    )
    fcos = float(
        torch.nn.functional.cosine_similarity(
            fe.embed_crops(crops[:8]).float(), r.float(), dim=1
        ).min()
    )
    res.checks["fast_embedder_min_cosine_vs_baseline"] = fcos
    res.checks["fast_embedder_ok"] = fcos > 0.98
    # model-only throughput: pre-resized uint8 batch on the device
    x = torch.randint(0, 256, (bs, 3, h, w), dtype=torch.uint8, device=dev)
    fast = (
        fe.features
        if isinstance(fe.features, GraphedFeatures)
        else GraphedFeatures(model, bs, (h, w), dev, half=cfg.model.half)
    )
    t_fast = timeit(lambda: fast(x), dev)
    xf = torch.randn(bs, 3, h, w, device=dev)
    dt = torch.float16 if dev.type == "cuda" else torch.float32
    with torch.no_grad():

        def eager() -> torch.Tensor:
            with torch.autocast(dev.type, dtype=dt, enabled=dev.type == "cuda"):
                return baseline.features(xf)

        t_eager = timeit(eager, dev)
    res.rows.append(
        Row(
            "embedder",
            f"model only: {fast.describe()}",
            bs / t_fast,
            f"eager {'fp16 autocast' if dev.type == 'cuda' else 'fp32'}, batch {bs}",
            bs / t_eager,
            "crops/s",
            "pre-resized batch on device",
        )
    )
    yf = fast(x)
    with torch.no_grad():
        from reid_pipeline.embed.embedder import normalize

        yr = baseline.features(normalize(x)).float()
    res.checks["graphed_min_cosine"] = float(
        torch.nn.functional.cosine_similarity(yf.float(), yr, dim=1).min()
    )


# ------------------------------------------------------------------ detector


def _yolo_weights(cfg: Config) -> tuple[str, str]:
    wfile = Path(cfg.detector.weights)
    if wfile.is_file():
        return str(wfile), f"weights {wfile.name}"
    return "yolo11n.yaml", (
        f"no weights file {cfg.detector.weights!r}: YOLO11n from "
        "yolo11n.yaml with RANDOM weights (speed only, no real detections)"
    )


def _frames(n: int, hw: tuple[int, int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (hw[0], hw[1], 3), dtype=np.uint8)
    return [np.roll(base, 7 * i, axis=1) for i in range(n)]


def bench_detector(res: BenchResult, cfg: Config, dev: torch.device, sz: dict[str, Any]) -> None:
    import dataclasses

    from reid_pipeline.detect.yolo import YoloDetector, load_yolo

    weights, note = _yolo_weights(cfg)
    dcfg = dataclasses.replace(
        cfg.detector,
        weights=weights,
        imgsz=sz["imgsz"],
        batch=min(cfg.detector.batch, sz["det_frames"]),
    )
    det = YoloDetector(dcfg, dev)
    frames = _frames(sz["det_frames"], sz["det_hw"])
    t_ours = timeit(lambda: det.detect(frames), dev, min_time=0.5, max_reps=5)
    one = load_yolo(weights)
    half = bool(dcfg.half) and dev.type == "cuda"

    def one_by_one() -> None:
        for f in frames:
            one.predict(f, imgsz=dcfg.imgsz, conf=dcfg.conf, half=half, device=dev, verbose=False)

    t_base = timeit(one_by_one, dev, min_time=0.5, max_reps=5)
    n = len(frames)
    res.rows.append(
        Row(
            "detector",
            f"YoloDetector.detect, batch {dcfg.batch}",
            n / t_ours,
            "ultralytics predict(), one frame at a time",
            n / t_base,
            "frames/s",
            f"{sz['det_hw'][1]}x{sz['det_hw'][0]} frames, imgsz {dcfg.imgsz}; {note}",
        )
    )
    res.info["detector_weights"] = note


# ------------------------------------------------------------------ end to end


def write_streams(root: Path, n: int, frames: int, hw: tuple[int, int]) -> list[Path]:
    """Recorded streams to read back: moving textured blocks, MJPG in .avi (fast to decode,
    and always available in OpenCV's own writer)."""
    import cv2

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n):
        p = root / f"cam{s:02d}.avi"
        vw = cv2.VideoWriter(str(p), cv2.VideoWriter.fourcc(*"MJPG"), 25.0, (hw[1], hw[0]))
        base = _frames(1, hw, seed=s)[0] // 2
        for i in range(frames):
            f = base.copy()
            x = (40 + 9 * i + 60 * s) % max(1, hw[1] - hw[1] // 10)
            y0 = hw[0] // 4
            cv2.rectangle(f, (x, y0), (x + hw[1] // 16, y0 + hw[0] // 2), (30, 90, 200), -1)
            vw.write(f)
        vw.release()
        paths.append(p)
    return paths


def bench_end_to_end(res: BenchResult, cfg: Config, dev: torch.device, sz: dict[str, Any]) -> None:
    import dataclasses

    from reid_pipeline.detect.yolo import YoloDetector, load_yolo
    from reid_pipeline.embed.model import ReIDModel
    from reid_pipeline.pipeline.build import build_components
    from reid_pipeline.pipeline.engine import Pipeline
    from reid_pipeline.pipeline.recorded import CameraInput, run_recorded

    weights, note = _yolo_weights(cfg)
    with tempfile.TemporaryDirectory(prefix="reid-bench-") as tmp:
        root = Path(tmp)
        paths = write_streams(root / "streams", sz["streams"], sz["stream_frames"], sz["stream_hw"])
        total = sz["streams"] * sz["stream_frames"]
        rcfg = dataclasses.replace(
            cfg,
            device=str(dev),
            detector=dataclasses.replace(cfg.detector, weights=weights, imgsz=sz["imgsz"]),
        )
        h, w = sz["emb_hw"] or (cfg.model.height, cfg.model.width)
        model = (
            ReIDModel(
                cfg.model.backbone,
                embed_dim=cfg.model.embed_dim,
                activation=cfg.model.activation,
                height=h,
                width=w,
            )
            .to(dev)
            .eval()
        )
        detector = YoloDetector(rcfg.detector, dev)
        parts = build_components(
            rcfg, root, db=str(root / "bench.db"), detector=detector, model=model, device=dev
        )
        pipe = Pipeline.from_components(parts)
        inputs = [CameraInput(str(p), f"cam{i:02d}") for i, p in enumerate(paths)]
        detector.detect(_frames(2, sz["stream_hw"]))  # warm-up: CUDA context, first kernels
        t0 = time.perf_counter()
        summary = run_recorded(pipe, inputs)
        t_ours = time.perf_counter() - t0
        res.checks["end_to_end_frames"] = int(summary.frames)
        res.checks["end_to_end_ok"] = int(summary.frames) == total
        # baseline: ultralytics' own loop, one frame at a time per stream, persistent tracks
        import cv2

        half = bool(rcfg.detector.half) and dev.type == "cuda"
        yolo = load_yolo(weights)
        yolo.predict(
            _frames(1, sz["stream_hw"])[0], imgsz=sz["imgsz"], device=dev, half=half, verbose=False
        )
        t1 = time.perf_counter()
        for p in paths:
            cap = cv2.VideoCapture(str(p))
            fresh = load_yolo(weights)  # a tracker per stream, as a user would run it
            while True:
                ok, frame = cap.read()
                if not ok:
                    break
                fresh.track(
                    frame,
                    persist=True,
                    imgsz=sz["imgsz"],
                    device=dev,
                    half=half,
                    verbose=False,
                    tracker=f"{rcfg.tracker.kind}.yaml",
                )
            cap.release()
        t_base = time.perf_counter() - t1
    res.rows.append(
        Row(
            "end_to_end",
            f"our pipeline, {sz['streams']} streams together",
            total / t_ours,
            "ultralytics track() loop, stream by stream",
            total / t_base,
            "frames/s",
            f"{sz['streams']} x {sz['stream_frames']} frames "
            f"{sz['stream_hw'][1]}x{sz['stream_hw'][0]} (decode, detect, track, "
            f"embed, match, gallery writes); {note}",
        )
    )


# ------------------------------------------------------------------ driver


def run_bench(
    cfg: Config,
    size: str = "small",
    stages: tuple[str, ...] = STAGES,
    device: torch.device | None = None,
) -> BenchResult:
    """Run the chosen stages; a stage that fails for a missing package or weights is
    recorded in ``skipped`` with its reason and the others still run."""
    from reid_pipeline.utils import resolve_device

    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    dev = device or resolve_device(cfg.device)
    name = (
        torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else (
            f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
        )
    )
    res = BenchResult(device=name, size=size)
    res.info["torch"] = torch.__version__
    try:
        import triton

        res.info["triton"] = triton.__version__
    except ImportError:
        res.info["triton"] = None
    sz = SIZES[size]
    _TIMING.update(min_time=sz["min_time"], max_reps=sz["max_reps"])
    runners: dict[str, Callable[[], None]] = {
        "scoring": lambda: bench_scoring(res, dev, sz, cfg.match.use_triton),
        "embedder": lambda: bench_embedder(res, cfg, dev, sz),
        "detector": lambda: bench_detector(res, cfg, dev, sz),
        "end_to_end": lambda: bench_end_to_end(res, cfg, dev, sz),
    }
    threads = torch.get_num_threads()
    if dev.type == "cpu" and sz["cpu_threads"]:
        # OSNet's hundreds of small ops each sync the intra-op pool; on a shared CI machine
        # one thread is ~5x faster than two (measured), and the small run is a smoke test
        torch.set_num_threads(sz["cpu_threads"])
        res.info["cpu_threads"] = sz["cpu_threads"]
    try:
        _run_stages(res, stages, runners, size, name)
    finally:
        torch.set_num_threads(threads)
    return res


def _run_stages(
    res: BenchResult,
    stages: tuple[str, ...],
    runners: dict[str, Callable[[], None]],
    size: str,
    name: str,
) -> None:
    for st in stages:
        log.info("bench: %s (%s, %s)", st, size, name)
        t0 = time.perf_counter()
        try:
            runners[st]()
        except ImportError as e:
            res.skipped[st] = f"missing package: {e.name or e}"
            log.warning("bench %s skipped: %s", st, res.skipped[st])
        except Exception as e:  # one broken stage must not hide the others
            res.skipped[st] = f"error: {type(e).__name__}: {e}"
            res.checks[f"{st}_ok"] = False
            log.exception("bench %s failed", st)
        res.info[f"{st}_seconds"] = round(time.perf_counter() - t0, 2)


def format_table(res: BenchResult) -> str:
    """A fixed-width table: stage, ours, baseline, ratio (ours / baseline)."""
    lines = [
        f"reid bench ({res.size}) on {res.device}",
        f"{'stage':11s} {'ours':>11s} {'baseline':>11s} {'ratio':>8s}  unit      what",
    ]
    for r in res.rows:
        lines.append(
            f"{r.stage:11s} {r.ours_value:11.3e} {r.baseline_value:11.3e} "
            f"{r.ratio:8.2f}  {r.unit:9s} {r.ours}  vs  {r.baseline}"
            + (f"  [{r.note}]" if r.note else "")
        )
    for st, why in res.skipped.items():
        lines.append(f"{st:11s} skipped: {why}")
    lines.append(
        "checks: "
        + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in res.checks.items()
        )
    )
    return "\n".join(lines)
