"""The embedding network as ONNX, served by ONNX Runtime on the CPU (``model.runtime``).

What is exported: backbone + adapter in eval mode (BN on its running statistics), so
the graph's output *is* the embedding ``e`` the gallery stores. Input ``images``: float32
(N, 3, H, W), RGB, ImageNet mean/std-normalised, N a dynamic axis ("batch"), H x W fixed
to the model's input size. Output ``embedding``: float32 (N, D). Opset ``OPSET`` (17: every
op these backbones use, and loadable by onnxruntime >= 1.14), TorchScript-based exporter
(``dynamo=False``: the torch.export one needs ``onnxscript``, which is not a dependency).
Always fp32: fp16 export on a CPU is a known trap (slow or unsupported kernels), and the
embeddings must be the model's.

The pair classifier stays in torch (``ReIDModel.pair_probability``, the matcher's), but
its ``w``, ``b`` and Platt calibration travel in the file's ``metadata_props`` with the
model version and input size (``reid.*`` keys, values are JSON), so an export is
self-describing: the gallery row's model version of an ONNX-served embedding is the
checkpoint's own ``model_version`` (``load_export`` refuses a file whose version is not
the checkpoint's, naming both).

Every export is checked before it is written: onnxruntime against PyTorch on generated
person crops (``sample_crops``: rendered people on backgrounds, not noise) at batch sizes
1, 7 and 16. Tolerances: per image ``1 - cosine <= COSINE_TOL``, per pair of images
``|P_ort - P_torch| <= PROB_TOL`` (the calibrated pair probability the matcher thresholds),
and the outputs must differ between images (``DISTINCT_MIN``; the "identical embedding for
every image" failure of a bad export). A failure is one ``CheckpointError`` line naming the
backbone or the file.

``model.runtime=auto`` on a CPU device serves through onnxruntime from the export cached
beside the checkpoint (``<checkpoint stem>.onnx``), or in ``cache_dir()`` when that folder
is not writable or is the package's own ``weights/`` (keyed by model version); a missing or
stale cache is exported on the fly (a few seconds, once). CUDA devices keep torch (fp16/bf16
autocast, CUDA resize). ``OnnxEmbedder`` has the ``Embedder`` interface; it resizes each crop
once on the CPU (Pillow's antialiased bilinear: the torch runtime's filter, so both runtimes
see the same pixels within one grey level), no torch round trip.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from reid_pipeline.embed.model import IMAGENET_MEAN, IMAGENET_STD, WEIGHTS_DIR, ReIDModel
from reid_pipeline.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from reid_pipeline.config import ModelConfig
    from reid_pipeline.embed.embedder import Embedder

log = logging.getLogger(__name__)

OPSET = 17
FORMAT = "reid_pipeline.onnx/1"
INPUT_NAME = "images"
OUTPUT_NAME = "embedding"
# verification tolerances (fp32 onnxruntime vs fp32 PyTorch; measured ~1e-7 and ~1e-6)
COSINE_TOL = 1e-4  # per image: 1 - cos(e_ort, e_torch)
PROB_TOL = 1e-3  # per pair: |P(same)_ort - P(same)_torch|
DISTINCT_MIN = 1e-4  # smallest relative distance between two images' embeddings
VERIFY_BATCHES = (1, 7, 16)


# ---------------------------------------------------------------------- optional packages


def import_onnxruntime(key: str = "model.runtime") -> Any:
    """``onnxruntime``, or a ConfigError naming ``key`` and the way out."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            f"config key '{key}': onnxruntime is not installed (pip install onnxruntime, "
            "or set model.runtime=torch)"
        ) from None
    return onnxruntime


def _import_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise ConfigError(
            "exporting to ONNX needs the onnx package (pip install onnx), or set "
            "model.runtime=torch"
        ) from None
    return onnx


def onnxruntime_available() -> bool:
    try:
        import_onnxruntime()
    except ConfigError:
        return False
    return True


# ---------------------------------------------------------------------- inputs


def sample_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` BGR uint8 person crops of varied sizes (rendered walking people on camera
    backgrounds, ``datasets.scene``): real-looking inputs for checks and benchmarks."""
    import cv2

    from reid_pipeline.datasets.scene import (
        composite,
        make_background,
        random_people,
        render_person,
    )

    rng = np.random.default_rng(seed)
    people = random_people(max(1, min(n, 24)), seed)
    backgrounds = [
        make_background(k, 320, 480, seed + i) for i, k in enumerate(("indoor", "street"))
    ]
    out = []
    for i in range(n):
        h = int(rng.integers(64, 400))
        rgb, alpha = render_person(
            people[i % len(people)], h, float(rng.uniform(0, 2 * np.pi)), int(rng.choice([-1, 1]))
        )
        bg = backgrounds[i % 2]
        y0 = int(rng.integers(0, max(1, bg.shape[0] - 200)))
        x0 = int(rng.integers(0, max(1, bg.shape[1] - 100)))
        tile = cv2.resize(bg[y0 : y0 + 200, x0 : x0 + 100], (rgb.shape[1], rgb.shape[0]))
        composite(tile, rgb, alpha, 0, 0)
        # a detector's box is never tight: a few pixels of margin, random aspect
        pad_x = int(rng.integers(0, max(1, tile.shape[1] // 6)))
        out.append(np.ascontiguousarray(tile[:, pad_x : tile.shape[1] - pad_x or None]))
    return out


def resize_crops(crops: Sequence[np.ndarray], height: int, width: int) -> np.ndarray:
    """BGR uint8 crops of any size -> one BGR uint8 array (N, height, width, 3), each crop
    resized once on the CPU with Pillow's antialiased bilinear filter.

    That filter is the algorithm of the torch runtime's resize (``F.interpolate(...,
    antialias=True)`` was ported from Pillow): the pixels agree within one grey level, so
    both runtimes embed a crop alike. OpenCV's ``INTER_AREA``/``INTER_LINEAR`` are a little
    faster (15 vs 24 ms for 128 crops) but differ from it by up to 137 grey levels at edges,
    which moved the default model's pair probabilities by up to 0.09 between runtimes.
    """
    from PIL import Image

    out = np.empty((len(crops), height, width, 3), np.uint8)
    for i, c in enumerate(crops):
        a = np.asarray(c)
        if (
            a.dtype != np.uint8
            or a.ndim != 3
            or a.shape[2] != 3
            or a.shape[0] < 1
            or a.shape[1] < 1
        ):
            raise ValueError(
                f"crop {i}: expected a BGR uint8 (H, W, 3) image, got {a.dtype} {a.shape}"
            )
        if a.shape[0] == height and a.shape[1] == width:
            out[i] = a
            continue
        # the filter works per channel: BGR order passes through unchanged
        img = Image.fromarray(np.ascontiguousarray(a), "RGB")
        out[i] = np.asarray(img.resize((width, height), Image.Resampling.BILINEAR))
    return out


_SCALE = (1.0 / (255.0 * np.asarray(IMAGENET_STD, np.float32))).astype(np.float32)
_SHIFT = (-np.asarray(IMAGENET_MEAN, np.float32) / np.asarray(IMAGENET_STD, np.float32)).astype(
    np.float32
)


def normalize_bgr(batch_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 (N, H, W, 3) -> the graph's input: RGB, ImageNet-normalised, float32 NCHW."""
    n, h, w, _ = batch_bgr.shape
    x = np.empty((n, 3, h, w), np.float32)
    for c in range(3):  # output channel c (RGB) is input channel 2 - c (BGR)
        np.multiply(batch_bgr[..., 2 - c], _SCALE[c], out=x[:, c], dtype=np.float32)
        x[:, c] += _SHIFT[c]
    return x


# ---------------------------------------------------------------------- export


class EmbeddingNet(nn.Module):
    """Backbone + adapter of a ``ReIDModel``: normalised images -> embeddings (the graph)."""

    def __init__(self, model: ReIDModel) -> None:
        super().__init__()
        self.backbone = model.backbone
        self.adapter = model.adapter

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.backbone(images)).float()


def _cpu_copy(model: ReIDModel) -> EmbeddingNet:
    """An fp32 eval-mode CPU copy of the embedding path (the served model is left alone,
    wherever it lives: a model trained on a GPU exports the same)."""
    net = EmbeddingNet(model)
    net = copy.deepcopy(net).to("cpu", torch.float32)
    # a checkpoint written from CUDA may keep channels_last strides: export contiguous
    net = net.to(memory_format=torch.contiguous_format)
    return net.eval()


def model_metadata(model: ReIDModel) -> dict[str, str]:
    """The ``reid.*`` metadata_props of an export (values JSON-encoded)."""
    from reid_pipeline import __version__

    cal = model.calibration()
    meta: dict[str, Any] = {
        "format": FORMAT,
        "model_version": model.model_version,
        "backbone": model.arch_name,
        "arch": model.arch(),
        "embed_dim": model.embed_dim,
        "input_height": model.input_size[0],
        "input_width": model.input_size[1],
        "input": "float32 NCHW, RGB, (x/255 - mean) / std",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "opset": OPSET,
        "w": [float(v) for v in model.w.detach().float().cpu()],
        "b": float(model.b.detach()),
        "platt_a": cal["a"],
        "platt_c": cal["c"],
        "calibrated": cal["calibrated"],
        "source": str(model.source),
        "code_version": __version__,
    }
    return {f"reid.{k}": json.dumps(v) for k, v in meta.items()}


@dataclass
class Verification:
    """How an export compares with PyTorch (``verify_export``)."""

    images: int
    batches: tuple[int, ...]
    max_one_minus_cos: float
    max_prob_diff: float
    max_abs_diff: float
    min_distinct: float  # smallest relative distance between two images' onnxruntime outputs
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "batches": list(self.batches),
            "max_one_minus_cos": self.max_one_minus_cos,
            "max_prob_diff": self.max_prob_diff,
            "max_abs_diff": self.max_abs_diff,
            "min_distinct": self.min_distinct,
        }

    def describe(self) -> str:
        return (
            f"onnxruntime vs PyTorch on {self.images} generated crops, batches "
            f"{'/'.join(map(str, self.batches))}: max 1-cos {self.max_one_minus_cos:.1e} "
            f"(tol {COSINE_TOL:.0e}), max |dP(same)| {self.max_prob_diff:.1e} "
            f"(tol {PROB_TOL:.0e}), max |de| {self.max_abs_diff:.1e}"
        )


@dataclass
class ExportResult:
    """What ``export_model`` made: the serialised model and, once written, its path."""

    data: bytes
    metadata: dict[str, str]
    verification: Verification | None
    path: Path | None = None
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def model_version(self) -> str:
        return str(json.loads(self.metadata["reid.model_version"]))


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]


def export_model(
    model: ReIDModel,
    out: str | Path | None = None,
    *,
    opset: int = OPSET,
    verify: bool = True,
    threads: int = 0,
) -> ExportResult:
    """Export ``model``'s embedding network; check it against PyTorch (``verify``); write it
    atomically to ``out`` (None: keep it in memory, ``ExportResult.data``).

    Raises ``CheckpointError`` naming the backbone when the export or the check fails.
    """
    onnx = _import_onnx()
    t0 = time.perf_counter()
    net = _cpu_copy(model)
    h, w = model.input_size
    arch = model.arch_name
    example = torch.from_numpy(normalize_bgr(resize_crops(sample_crops(2, seed=1), h, w)))
    buf = io.BytesIO()
    f: Any = buf  # the TorchScript exporter writes to a file object too (typed as a path)
    try:
        with warnings.catch_warnings():
            # the TorchScript exporter's deprecation notice and tracer warnings (shapes that
            # become constants: H and W are fixed, only the batch axis is dynamic)
            warnings.simplefilter("ignore")
            with torch.no_grad():
                torch.onnx.export(
                    net,
                    (example,),
                    f,
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                    do_constant_folding=True,
                )
        proto = onnx.load_from_string(buf.getvalue())
        onnx.checker.check_model(proto)
    except Exception as e:  # noqa: BLE001 - the exporter raises anything (unsupported ops...)
        raise CheckpointError(
            f"backbone {arch!r} cannot be exported to ONNX (opset {opset}): {_first_line(e)}"
        ) from None
    meta = model_metadata(model)
    meta["reid.opset"] = json.dumps(int(opset))
    del proto.metadata_props[:]
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v
    proto.doc_string = (
        f"reid_pipeline embedding network {meta['reid.model_version']}: {INPUT_NAME} "
        f"(N,3,{h},{w}) float32 RGB ImageNet-normalised -> {OUTPUT_NAME} (N,{model.embed_dim})"
    )
    data = proto.SerializeToString()
    res = ExportResult(data, meta, None)
    if verify:
        session = make_session(data, threads=threads, name=f"the {arch} export")
        res.verification = verify_export(model, session, net=net)
        log.info("ONNX export of %s verified: %s", arch, res.verification.describe())
    if out is not None:
        res.path = write_atomic(Path(out), data)
    res.seconds = time.perf_counter() - t0
    return res


def write_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and a rename (never half a file)."""
    from reid_pipeline.errors import OutputError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is not what a plain write gives
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise OutputError(f"cannot write ONNX file {str(path)!r}: {e.strerror or e}") from None
    return path


def _pair_probability(e: torch.Tensor, meta: dict[str, Any]) -> torch.Tensor:
    from reid_pipeline.match.scoring import dichotomy_scores

    w = torch.tensor(meta["w"], dtype=torch.float32)
    s = dichotomy_scores(e, e, w, float(meta["b"]))
    return torch.sigmoid(float(meta["platt_a"]) * s + float(meta["platt_c"]))


def verify_export(
    model: ReIDModel,
    session: Any,
    *,
    net: nn.Module | None = None,
    crops: Sequence[np.ndarray] | None = None,
    batches: Sequence[int] = VERIFY_BATCHES,
) -> Verification:
    """Run ``session`` and PyTorch on the same real-looking crops at each batch size; raise
    ``CheckpointError`` (naming the backbone) unless they agree within the tolerances."""
    t0 = time.perf_counter()
    arch = model.arch_name
    net = net if net is not None else _cpu_copy(model)
    h, w = model.input_size
    n = max(batches)
    crops = list(crops) if crops is not None else sample_crops(n, seed=2)
    x = normalize_bgr(resize_crops(crops[:n], h, w))
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).float()
    meta = {
        "w": model.w.detach().float().cpu().tolist(),
        "b": float(model.b.detach()),
        "platt_a": float(model.platt_a),
        "platt_c": float(model.platt_c),
    }
    p_ref = _pair_probability(ref, meta)
    worst_cos = worst_p = worst_abs = 0.0
    distinct = float("inf")
    for b in batches:
        part = x[:b]
        got = torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: part})[0]).float()
        if tuple(got.shape) != (b, model.embed_dim):
            raise CheckpointError(
                f"backbone {arch!r}: the ONNX export gives shape {tuple(got.shape)} for a "
                f"batch of {b}, expected ({b}, {model.embed_dim}) (dynamic batch axis broken)"
            )
        if not bool(torch.isfinite(got).all()):
            raise CheckpointError(f"backbone {arch!r}: the ONNX export gives non-finite outputs")
        r = ref[:b]
        cos = nn.functional.cosine_similarity(got, r, dim=1, eps=1e-12)
        worst_cos = max(worst_cos, float((1 - cos).max()))
        worst_abs = max(worst_abs, float((got - r).abs().max()))
        if b > 1:
            worst_p = max(
                worst_p, float((_pair_probability(got, meta) - p_ref[:b, :b]).abs().max())
            )
            scale = float(got.norm(dim=1).mean().clamp_min(1e-12))
            d = torch.cdist(got, got) / scale
            d.fill_diagonal_(float("inf"))
            distinct = min(distinct, float(d.min()))
    ref_d = torch.cdist(ref, ref) / float(ref.norm(dim=1).mean().clamp_min(1e-12))
    ref_d.fill_diagonal_(float("inf"))
    ref_distinct = float(ref_d.min())
    v = Verification(
        n, tuple(batches), worst_cos, worst_p, worst_abs, distinct, time.perf_counter() - t0
    )
    if distinct < DISTINCT_MIN and ref_distinct >= DISTINCT_MIN:
        raise CheckpointError(
            f"backbone {arch!r}: the ONNX export gives (nearly) identical embeddings for "
            f"different images (min relative distance {distinct:.1e}; PyTorch {ref_distinct:.1e})"
        )
    if ref_distinct < DISTINCT_MIN:
        log.warning(
            "model %s gives (nearly) the same embedding for different crops in PyTorch too "
            "(min relative distance %.1e): an untrained or collapsed model?",
            arch,
            ref_distinct,
        )
    if worst_cos > COSINE_TOL or worst_p > PROB_TOL:
        raise CheckpointError(
            f"backbone {arch!r}: the ONNX export does not match PyTorch: {v.describe()}"
        )
    return v


# ---------------------------------------------------------------------- loading


def default_threads() -> int:
    """CPUs this process may run on (``sched_getaffinity``: a container's share)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def make_session(source: str | Path | bytes, *, threads: int = 0, name: str = "") -> Any:
    """An onnxruntime CPU session: ``threads`` intra-op threads (0: one per CPU of this
    process), one inter-op thread, sequential execution, every graph optimisation, no spin
    waiting (the pipeline's decoder, detector and tracker share these cores: a spinning
    worker would take their time; at batch 128 it costs the embedder nothing measurable)."""
    ort = import_onnxruntime()
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads) if threads > 0 else default_threads()
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    shown = name or (repr(str(source)) if not isinstance(source, bytes) else "'<in memory>'")
    if isinstance(source, (str, Path)) and not Path(source).is_file():
        raise CheckpointError(f"ONNX file {shown} does not exist")
    src = source if isinstance(source, bytes) else str(source)
    try:
        return ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own (Fail, InvalidGraph...)
        raise CheckpointError(
            f"ONNX file {shown} cannot be loaded by onnxruntime (corrupt, truncated or not an "
            f"ONNX model): {_first_line(e)}"
        ) from None


def session_metadata(session: Any, shown: str) -> dict[str, Any]:
    """The ``reid.*`` metadata of a loaded export, decoded; CheckpointError if it is not one."""
    raw = dict(session.get_modelmeta().custom_metadata_map)
    if raw.get("reid.format") != json.dumps(FORMAT):
        raise CheckpointError(
            f"ONNX file {shown} is not a reid_pipeline export (no reid.format metadata); "
            "make one with `reid export CHECKPOINT --out FILE.onnx`"
        )
    try:
        meta = {k[len("reid.") :]: json.loads(v) for k, v in raw.items() if k.startswith("reid.")}
        meta["embed_dim"] = int(meta["embed_dim"])
        meta["input_height"] = int(meta["input_height"])
        meta["input_width"] = int(meta["input_width"])
        str(meta["model_version"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(
            f"ONNX file {shown} has unreadable reid metadata: {_first_line(e)}"
        ) from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if [i.name for i in inputs] != [INPUT_NAME] or OUTPUT_NAME not in [o.name for o in outputs]:
        raise CheckpointError(
            f"ONNX file {shown} does not have the export's input {INPUT_NAME!r} and output "
            f"{OUTPUT_NAME!r}"
        )
    shape = list(inputs[0].shape)
    want = [meta["input_height"], meta["input_width"]]
    if len(shape) != 4 or shape[1] != 3 or shape[2:] != want:
        raise CheckpointError(
            f"ONNX file {shown}: input shape {shape} does not fit its metadata (N, 3, {want[0]}, "
            f"{want[1]})"
        )
    return meta


@dataclass
class LoadedExport:
    session: Any
    meta: dict[str, Any]
    shown: str  # how errors name it


def load_export(
    source: str | Path | bytes,
    *,
    threads: int = 0,
    expect_version: str | None = None,
    name: str = "",
) -> LoadedExport:
    """Open an export (a file or bytes) with its metadata; ``expect_version``: the
    checkpoint's model version, refused (naming the file and both versions) if different."""
    shown = name or (repr(str(source)) if not isinstance(source, bytes) else "'<in memory>'")
    session = make_session(source, threads=threads, name=shown)
    meta = session_metadata(session, shown)
    if expect_version is not None and meta["model_version"] != expect_version:
        raise CheckpointError(
            f"ONNX file {shown} holds model version {meta['model_version']}, but the "
            f"checkpoint is {expect_version}: re-export it (`reid export CHECKPOINT --out FILE`)"
        )
    return LoadedExport(session, meta, shown)


# ---------------------------------------------------------------------- the embedder


class OnnxEmbedder:
    """``Embedder``'s interface on onnxruntime's CPU provider.

    ``embed_crops(crops)``: BGR uint8 crops of any size -> (N, D) float32 torch tensor on
    ``device`` (CPU unless told otherwise). ``model_version`` is the export's, which is the
    checkpoint's (``load_export`` checks it), so gallery rows do not depend on the runtime.
    """

    runtime = "onnxruntime"

    def __init__(
        self,
        source: str | Path | bytes | LoadedExport,
        *,
        batch: int = 128,
        threads: int = 0,
        expect_version: str | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        loaded = (
            source
            if isinstance(source, LoadedExport)
            else load_export(source, threads=threads, expect_version=expect_version)
        )
        self.session = loaded.session
        self.meta = loaded.meta
        self.shown = loaded.shown
        self.batch = max(1, int(batch))
        self.height = int(self.meta["input_height"])
        self.width = int(self.meta["input_width"])
        self.device = torch.device(device)
        self.half = False
        self.threads = int(self.session.get_session_options().intra_op_num_threads)

    @property
    def dim(self) -> int:
        return int(self.meta["embed_dim"])

    @property
    def model_version(self) -> str:
        return str(self.meta["model_version"])

    def describe(self) -> str:
        return (
            f"onnxruntime {self.meta.get('backbone', '?')} {self.height}x{self.width}, "
            f"{self.threads} intra-op threads, batch {self.batch}"
        )

    def run(self, x: np.ndarray) -> np.ndarray:
        """The graph on a normalised float32 (N, 3, H, W) batch -> (N, D) float32."""
        return np.asarray(self.session.run([OUTPUT_NAME], {INPUT_NAME: x})[0], np.float32)

    def _out(self, parts: list[np.ndarray]) -> torch.Tensor:
        if not parts:
            return torch.zeros(0, self.dim, device=self.device)
        t = torch.from_numpy(np.concatenate(parts) if len(parts) > 1 else parts[0])
        return t.to(self.device) if self.device.type != "cpu" else t

    def embed_crops(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """BGR uint8 crops of any size -> (N, D) float32 embeddings."""
        parts = []
        for i in range(0, len(crops), self.batch):
            chunk = resize_crops(crops[i : i + self.batch], self.height, self.width)
            parts.append(self.run(normalize_bgr(chunk)))
        return self._out(parts)

    def embed_batch_u8(self, batch_u8: torch.Tensor) -> torch.Tensor:
        """An RGB uint8 (N, 3, H, W) batch at the input size (as ``Embedder``'s)."""
        a = batch_u8.detach().cpu().numpy()
        parts = []
        for i in range(0, len(a), self.batch):
            bgr = np.ascontiguousarray(a[i : i + self.batch, ::-1].transpose(0, 2, 3, 1))
            parts.append(self.run(normalize_bgr(bgr)))
        return self._out(parts)


# ---------------------------------------------------------------------- runtime choice


def cache_dir() -> Path:
    """Where exports of checkpoints in read-only (or the package's) folders are cached:
    ``$REID_CACHE_DIR/onnx``, else ``$XDG_CACHE_HOME/reid_pipeline/onnx`` (~/.cache)."""
    base = os.environ.get("REID_CACHE_DIR")
    root = (
        Path(base)
        if base
        else Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "reid_pipeline"
    )
    return root / "onnx"


def checkpoint_file(model: ReIDModel) -> Path | None:
    """The file ``model`` was loaded from (our checkpoints), if it is still there."""
    src = str(getattr(model, "source", "") or "")
    if not src or src == "new" or src.startswith("torchreid-zoo:"):
        return None  # built in memory, or a torchreid zoo import (its folder is not kept)
    p = Path(src)
    return p if p.is_file() else None


def export_locations(model: ReIDModel) -> tuple[list[Path], Path]:
    """(where to look for a cached export, in order; where a new one is written)."""
    cached = cache_dir() / f"{model.model_version}.onnx"
    ck = checkpoint_file(model)
    if ck is None:
        return [cached], cached
    beside = ck.with_suffix(".onnx")
    own = ck.resolve().parent == WEIGHTS_DIR.resolve()  # the package's files: not ours to add to
    writable = not own and os.access(ck.parent, os.W_OK)
    return [beside, cached], (beside if writable else cached)


def cached_export(
    model: ReIDModel, threads: int = 0, *, create: bool = True
) -> LoadedExport | None:
    """The export of ``model`` for serving: a valid cached one (same model version), else
    exported now and cached (``create``). A corrupt or stale cache file is replaced."""
    look, target = export_locations(model)
    version = model.model_version
    for p in look:
        if not p.is_file():
            continue
        try:
            loaded = load_export(p, threads=threads, expect_version=version)
        except CheckpointError as e:
            log.warning("%s; exporting again", e)
            continue
        log.info("serving %s with onnxruntime from %s", version, p)
        return loaded
    if not create:
        return None
    res = export_model(model, None, threads=threads)
    assert res.verification is not None
    from reid_pipeline.errors import OutputError

    try:
        write_atomic(target, res.data)
        where = str(target)
    except OutputError as e:
        log.warning("%s; serving the export from memory", e)
        where = "memory"
    log.info(
        "exported %s to ONNX (%s) in %.1f s; %s",
        version,
        where,
        res.seconds,
        res.verification.describe(),
    )
    return load_export(res.data, threads=threads, expect_version=version, name=repr(where))


def resolve_runtime(mcfg: ModelConfig, model: Any, device: torch.device) -> str:
    """``torch`` or ``onnxruntime`` for ``model.runtime`` on ``device`` (``auto``: onnxruntime
    on a CPU when it is installed and the model came from a file; torch on CUDA)."""
    want = mcfg.runtime
    if want != "auto":
        return want
    if device.type != "cpu" or not isinstance(model, ReIDModel):
        return "torch"
    if mcfg.onnx:
        return "onnxruntime"
    if checkpoint_file(model) is None and not str(model.source).startswith("torchreid-zoo:"):
        return "torch"  # an in-memory network (a benchmark's): nothing to cache an export for
    if not onnxruntime_available():
        log.info("model.runtime=auto: onnxruntime is not installed; embedding with torch")
        return "torch"
    return "onnxruntime"


def make_embedder(
    mcfg: ModelConfig,
    model: ReIDModel,
    device: torch.device | str,
    *,
    batch: int | None = None,
    half: bool | None = None,
    height: int | None = None,
    width: int | None = None,
) -> Embedder | OnnxEmbedder:
    """The crop embedder ``model.runtime`` asks for (see the module doc): the torch
    ``Embedder`` or an ``OnnxEmbedder`` of the same checkpoint (same model version)."""
    from reid_pipeline.embed.embedder import Embedder

    dev = torch.device(device)
    bs = int(batch if batch is not None else mcfg.batch)
    hf = bool(mcfg.half if half is None else half)

    def torch_embedder() -> Embedder:
        return Embedder(model, dev, batch=bs, half=hf, height=height, width=width)

    runtime = resolve_runtime(mcfg, model, dev)
    if runtime == "torch":
        return torch_embedder()
    import_onnxruntime()  # a clear error when it is missing (explicit model.runtime)
    explicit = mcfg.runtime == "onnxruntime" or bool(mcfg.onnx)
    if not isinstance(model, ReIDModel):
        raise ConfigError(
            f"config key 'model.runtime': onnxruntime serves a ReIDModel's export, not a "
            f"{type(model).__name__}"
        )
    size = tuple(model.input_size)
    if (height or size[0], width or size[1]) != size:
        if explicit:
            raise ConfigError(
                f"config key 'model.runtime': the ONNX export is fixed at the model's input "
                f"{size[0]}x{size[1]}; {height}x{width} needs model.runtime=torch"
            )
        return torch_embedder()
    if dev.type != "cpu":
        log.info("model.runtime=onnxruntime on %s: onnxruntime runs on the CPU", dev)
    loaded: LoadedExport | None
    try:
        if mcfg.onnx:
            loaded = load_export(
                Path(mcfg.onnx).expanduser(),
                threads=mcfg.threads,
                expect_version=model.model_version,
            )
        else:
            loaded = cached_export(model, mcfg.threads)
    except CheckpointError as e:
        if explicit:
            raise
        log.warning("model.runtime=auto: %s; embedding with torch", e)
        return torch_embedder()
    assert loaded is not None
    emb = OnnxEmbedder(loaded, batch=bs, device=dev)
    log.info("embedder: %s (%s)", emb.describe(), emb.model_version)
    return emb
