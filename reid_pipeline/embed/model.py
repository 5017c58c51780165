"""The dissimilarity-space ReID model: backbone -> adapter -> embedding -> pair classifier.

One module serves training, evaluation and the pipeline, so the model evaluated is the model
deployed. The paper ("Image Retrieval Methods in the Dissimilarity Space") scores a pair by
a linear max-margin classifier on the dichotomy transform z = |e_q - e_g|; we write the
score as ``s = b - sum_d w_d |e_q - e_g|`` with ``w >= 0`` and ``||w||_2 <= w_max_norm``, so
that higher means "same person" and ``w`` is a learned diagonal (Mahalanobis-like) L1 metric.

Checkpoints are untrusted input: everything is read with ``torch.load(weights_only=True)``.
Two kinds are accepted: our own (a dict with ``format == CHECKPOINT_FORMAT``; it declares its
architecture) and torchreid model-zoo ``state_dict`` files (backbone only; the adapter is
initialised to keep the backbone's features and ``w`` is uniform, i.e. a plain L1 distance).
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from reid_pipeline.embed.backbones import build_backbone
from reid_pipeline.errors import CheckpointError
from reid_pipeline.match.scoring import score_pairs

if TYPE_CHECKING:
    from reid_pipeline.config import Config, ModelConfig

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "reid_pipeline.checkpoint/1"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_CHECKPOINT = WEIGHTS_DIR / "default.pt"

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "identity": nn.Identity,
}


def weights_version(arch: str, state_dict: dict[str, torch.Tensor]) -> str:
    """``<arch>-<sha256, 12 hex>`` of the weights as float32: an fp16 export and the model
    loaded from it get the same version."""
    h = hashlib.sha256()
    for k, v in sorted(state_dict.items()):
        h.update(k.encode())
        t = v.detach().to("cpu")
        t = t.float() if t.is_floating_point() else t
        h.update(t.contiguous().numpy().tobytes())
    return f"{arch}-{h.hexdigest()[:12]}"


class ReIDModel(nn.Module):
    """Backbone + adapter (Linear, BN, activation) + identity head + dichotomy classifier.

    ``forward`` (training) returns ``(embedding, identity logits)``; ``embed`` is the
    inference path (eval mode, no head) used by every consumer. Platt parameters
    (``platt_a``, ``platt_c``) are buffers, so calibration travels inside the state_dict.
    """

    # buffers (register_buffer), declared so type checkers know they are tensors
    platt_a: torch.Tensor
    platt_c: torch.Tensor
    calibrated: torch.Tensor

    def __init__(
        self,
        backbone: str = "osnet_x1_0",
        num_classes: int = 1,
        embed_dim: int = 512,
        activation: str = "relu",
        height: int = 256,
        width: int = 128,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise CheckpointError(f"unknown adapter activation {activation!r}")
        self.arch_name = backbone
        self.embed_dim = int(embed_dim)
        self.activation_name = activation
        self.num_classes = int(num_classes)
        self.input_size = (int(height), int(width))
        self.backbone, self.feat_dim = build_backbone(backbone, num_classes)
        self.adapter = nn.Sequential(
            nn.Linear(self.feat_dim, self.embed_dim, bias=False),
            nn.BatchNorm1d(self.embed_dim),
            _ACTIVATIONS[activation](),
        )
        self.head = nn.Linear(self.embed_dim, max(1, self.num_classes), bias=False)
        nn.init.normal_(self.head.weight, std=0.001)
        # w starts uniform with unit L2 norm: the score is a scaled L1 distance until trained
        self.w = nn.Parameter(torch.full((self.embed_dim,), 1.0 / math.sqrt(self.embed_dim)))
        self.b = nn.Parameter(torch.zeros(()))
        self.register_buffer("platt_a", torch.tensor(1.0))
        self.register_buffer("platt_c", torch.tensor(0.0))
        self.register_buffer("calibrated", torch.tensor(False))
        # not ``_version``: nn.Module's own (an int) versions the state_dict's metadata
        self._weights_version: str | None = None
        # "torch": the fp32 reference (evaluation, training); serving sets "auto" when
        # match.use_triton is on, so CUDA scores go through the Triton kernel
        self.scoring_backend = "torch"
        self.source = "new"

    # ------------------------------------------------------------------ description
    def arch(self) -> dict[str, Any]:
        """What is needed to rebuild this module before loading its state_dict."""
        return {
            "backbone": self.arch_name,
            "embed_dim": self.embed_dim,
            "activation": self.activation_name,
            "num_classes": self.num_classes,
            "feat_dim": self.feat_dim,
            "height": self.input_size[0],
            "width": self.input_size[1],
        }

    @property
    def model_version(self) -> str:
        """``<arch>-<sha256 of the weights, 12 hex>``: names the exact weights in a gallery row."""
        if self._weights_version is None:
            self.refresh_version()
        assert self._weights_version is not None
        return self._weights_version

    def refresh_version(self) -> str:
        """Recompute the weights hash (call after training or loading changes the weights)."""
        self._weights_version = weights_version(self.arch_name, self.state_dict())
        return self._weights_version

    # ------------------------------------------------------------------ forward paths
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Embedding in the current mode (train: BN batch statistics)."""
        return self.adapter(self.backbone(images))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training path: (embedding, identity logits)."""
        e = self.features(images)
        return e, self.head(e)

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Embeddings of normalised images (B, 3, H, W) in eval mode, no identity head."""
        was = self.training
        self.eval()
        try:
            return self.features(images).float()
        finally:
            self.train(was)

    # ------------------------------------------------------------------ pair classifier
    def pair_scores(self, e_q: torch.Tensor, e_g: torch.Tensor) -> torch.Tensor:
        """Classifier score for every (query, gallery) pair, (Nq, Ng); higher = same person."""
        return score_pairs(e_q, e_g, self.w.detach(), self.b.detach(), backend=self.scoring_backend)

    def pair_probability(self, e_q: torch.Tensor, e_g: torch.Tensor) -> torch.Tensor:
        """Calibrated P(same person) = sigmoid(a * s + c) for every pair, (Nq, Ng)."""
        return self.score_to_probability(self.pair_scores(e_q, e_g))

    def score_to_probability(self, scores: torch.Tensor) -> torch.Tensor:
        a = self.platt_a.to(scores.device, torch.float32)
        c = self.platt_c.to(scores.device, torch.float32)
        return torch.sigmoid(a * scores.float() + c)

    @torch.no_grad()
    def constrain_w(self, max_norm: float) -> None:
        """Project ``w`` onto {w >= 0, ||w||_2 <= max_norm} (non-negative keeps s monotone in
        every |e_q - e_g|_d, so the score stays a weighted L1 distance)."""
        self.w.clamp_(min=0.0)
        n = float(self.w.norm())
        if n > max_norm:
            self.w.mul_(max_norm / n)

    def calibrate(
        self, scores: torch.Tensor, labels: torch.Tensor, balanced: bool = True, steps: int = 200
    ) -> tuple[float, float]:
        """Fit Platt's ``sigmoid(a*s + c)`` on validation pair scores and 0/1 labels.

        ``balanced`` weighs both classes equally (prior 0.5), so p = 0.5 is the point where
        the score is as likely for a match as for a non-match - independent of how many
        impostor pairs the validation split happens to have.
        """
        s = scores.detach().reshape(-1).float().cpu()
        y = labels.detach().reshape(-1).float().cpu()
        if s.numel() != y.numel() or s.numel() == 0:
            raise ValueError(
                f"calibrate needs as many scores as labels, got {s.numel()}/{y.numel()}"
            )
        npos, nneg = float(y.sum()), float((1 - y).sum())
        if npos == 0 or nneg == 0:
            raise ValueError("calibrate needs both matching and non-matching pairs")
        wts = (
            torch.where(y > 0, 0.5 / npos, 0.5 / nneg)
            if balanced
            else torch.full_like(y, 1 / len(y))
        )
        mu, sd = s.mean(), s.std().clamp_min(1e-6)
        x = (s - mu) / sd
        p = torch.zeros(2, requires_grad=True)
        opt = torch.optim.LBFGS([p], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = (
                wts
                * nn.functional.binary_cross_entropy_with_logits(
                    p[0] * x + p[1], y, reduction="none"
                )
            ).sum()
            loss.backward()
            return loss

        opt.step(closure)
        fitted = p.detach()
        a = float(fitted[0]) / float(sd)
        c = float(fitted[1]) - a * float(mu)
        self.platt_a.fill_(a)
        self.platt_c.fill_(c)
        self.calibrated.fill_(True)
        self._weights_version = None
        log.info("calibrated pair probabilities: a=%.4g c=%.4g on %d pairs", a, c, len(y))
        return a, c

    def calibration(self) -> dict[str, float | bool]:
        return {
            "a": float(self.platt_a),
            "c": float(self.platt_c),
            "calibrated": bool(self.calibrated),
        }

    # ------------------------------------------------------------------ zoo import
    def init_from_backbone(self) -> None:
        """Make the adapter pass the backbone's features through (identity or orthogonal) and
        ``w`` uniform, so an imported zoo backbone is usable before any training."""
        lin, bn = self.adapter[0], self.adapter[1]
        assert isinstance(lin, nn.Linear) and isinstance(bn, nn.BatchNorm1d)
        with torch.no_grad():
            if self.feat_dim == self.embed_dim:
                lin.weight.copy_(torch.eye(self.embed_dim))
            else:
                nn.init.orthogonal_(lin.weight)
            bn.reset_running_stats()
            bn.weight.fill_(1.0)
            bn.bias.zero_()
            self.w.fill_(1.0 / math.sqrt(self.embed_dim))
            self.b.zero_()
        self._weights_version = None


# ---------------------------------------------------------------------- checkpoints


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip errors, truncation, unsafe globals...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} cannot be read as a torch checkpoint "
            f"(corrupt, truncated or not a checkpoint): {first[:200]}"
        ) from None


def _strip_prefix(sd: dict[str, Any]) -> dict[str, Any]:
    if sd and all(k.startswith("module.") for k in sd):
        return {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _guess_arch(sd: dict[str, torch.Tensor]) -> str | None:
    """Which common torchreid architecture a zoo state_dict fits exactly (shapes), if any."""
    candidates = [
        "osnet_x1_0",
        "osnet_x0_75",
        "osnet_x0_5",
        "osnet_x0_25",
        "osnet_ain_x1_0",
        "osnet_ain_x0_25",
        "osnet_ibn_x1_0",
        "resnet50",
        "resnet50_fc512",
        "resnet18",
        "mobilenetv2_x1_0",
    ]
    want = {k: tuple(v.shape) for k, v in sd.items() if not k.startswith("classifier.")}
    for name in candidates:
        try:
            with torch.device("meta"):
                net, _ = build_backbone(name)
        except (RuntimeError, TypeError, ValueError, NotImplementedError) as e:
            log.debug("cannot build %s on the meta device: %s", name, e)
            continue
        have = {k: tuple(v.shape) for k, v in net.state_dict().items()}
        if have == want:
            return name
    return None


def _load_zoo(path: Path, sd: dict[str, Any], mcfg: ModelConfig) -> ReIDModel:
    sd = _strip_prefix(sd)
    if not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise CheckpointError(
            f"checkpoint {str(path)!r} is neither a reid_pipeline checkpoint "
            "nor a torchreid state_dict"
        )
    model = ReIDModel(
        mcfg.backbone,
        num_classes=1,
        embed_dim=mcfg.embed_dim,
        activation="identity",
        height=mcfg.height,
        width=mcfg.width,
    )
    back = {k: v for k, v in sd.items() if not k.startswith("classifier.")}
    try:
        model.backbone.load_state_dict(back, strict=True)
    except RuntimeError:
        other = _guess_arch(back)
        if other and other != mcfg.backbone:
            raise CheckpointError(
                f"checkpoint {str(path)!r} is a torchreid {other} model but model.backbone is "
                f"{mcfg.backbone} (set model.backbone={other})"
            ) from None
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit architecture "
            f"{mcfg.backbone} (model.backbone): keys or shapes differ"
        ) from None
    model.init_from_backbone()
    model.source = f"torchreid-zoo:{path.name}"
    log.info(
        "imported torchreid %s backbone from %s (adapter passes features through, uniform w)",
        mcfg.backbone,
        path,
    )
    return model


def _load_ours(path: Path, ck: dict[str, Any], mcfg: ModelConfig | None) -> ReIDModel:
    arch = ck.get("arch")
    sd = ck.get("state_dict")
    if not isinstance(arch, dict) or not isinstance(sd, dict):
        raise CheckpointError(f"checkpoint {str(path)!r} lacks its arch or state_dict")
    if mcfg is not None and arch.get("backbone") != mcfg.backbone:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a {arch.get('backbone')} model but model.backbone is "
            f"{mcfg.backbone} (set model.backbone={arch.get('backbone')})"
        )
    try:
        model = ReIDModel(
            str(arch["backbone"]),
            num_classes=int(arch["num_classes"]),
            embed_dim=int(arch["embed_dim"]),
            activation=str(arch["activation"]),
            height=int(arch.get("height", 256)),
            width=int(arch.get("width", 128)),
        )
        model.load_state_dict(
            {k: v.float() if v.is_floating_point() else v for k, v in _strip_prefix(sd).items()},
            strict=True,
        )
    except (KeyError, RuntimeError, ValueError, TypeError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not match its declared architecture: {first}"
        ) from None
    model.source = str(path)
    return model


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw dict of one of our checkpoints (for --resume); CheckpointError otherwise."""
    p = Path(path)
    ck = _torch_load(p)
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"checkpoint {str(p)!r} is not a reid_pipeline checkpoint")
    return ck


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is one of our checkpoints (False for any other file; errors name it)."""
    ck = _torch_load(Path(path).expanduser())
    return isinstance(ck, dict) and ck.get("format") == CHECKPOINT_FORMAT


def load_model(spec: str, cfg: ModelConfig, device: torch.device | str = "cpu") -> ReIDModel:
    """Load the ReID model named by ``spec`` in eval mode on ``device``.

    ``spec``: ``"default"`` (the bundled ``reid_pipeline/weights/default.pt``; CheckpointError
    if it is not there), a path to one of our checkpoints, or a torchreid model-zoo
    ``state_dict`` (optionally wrapped in ``{'state_dict': ...}``, ``module.`` prefixes ok).
    The architecture must be ``cfg.backbone``; another one is refused naming both.
    """
    if spec in ("", "default"):
        path = DEFAULT_CHECKPOINT
        if not path.is_file():
            raise CheckpointError(
                f"the bundled default checkpoint {str(path)!r} is not there; pass "
                "--checkpoint PATH (ours or a torchreid model-zoo file) or train one with "
                "`reid train`"
            )
    else:
        path = Path(spec).expanduser()
    ck = _torch_load(path)
    if isinstance(ck, dict) and ck.get("format") == CHECKPOINT_FORMAT:
        model = _load_ours(path, ck, cfg)
    elif isinstance(ck, dict):
        inner = ck.get("state_dict", ck) if "state_dict" in ck else ck
        if not isinstance(inner, dict):
            raise CheckpointError(f"checkpoint {str(path)!r} has a state_dict that is not a dict")
        model = _load_zoo(path, dict(inner), cfg)
    else:
        raise CheckpointError(
            f"checkpoint {str(path)!r} holds a {type(ck).__name__}, not a checkpoint dict"
        )
    model.to(device).eval()
    model.refresh_version()
    return model


def _rng_state() -> dict[str, Any]:
    st: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def save_checkpoint(
    path: str | Path,
    model: ReIDModel,
    cfg: Config,
    epoch: int = 0,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a full training checkpoint atomically (tmp file + rename: a crash never leaves a
    half-written file where a good one was). Carries the frozen config and code version."""
    from reid_pipeline import __version__

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ck = {
        "format": CHECKPOINT_FORMAT,
        "arch": model.arch(),
        "state_dict": model.state_dict(),
        "config": cfg.to_dict(),
        "model_version": model.refresh_version(),
        "code_version": __version__,
        "calibration": model.calibration(),
        "epoch": int(epoch),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": _rng_state(),
        "extra": extra or {},
    }
    tmp = p.with_name(p.name + ".tmp")
    torch.save(ck, str(tmp))
    tmp.replace(p)
    return p


def export_fp16(
    path: str | Path,
    model: ReIDModel,
    cfg: Config | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """The small shipped form: fp16 weights (no identity head, no optimizer), config,
    calibration. The head is dropped because only training uses it."""
    from reid_pipeline import __version__

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    arch = model.arch()
    arch["num_classes"] = 1
    sd = {}
    for k, v in model.state_dict().items():
        if k == "head.weight":
            v = torch.zeros(1, v.shape[1], dtype=v.dtype)
        sd[k] = (
            v.detach().cpu().half()
            if v.is_floating_point() and k not in ("w", "b", "platt_a", "platt_c")
            else v.detach().cpu()
        )
    ck = {
        "format": CHECKPOINT_FORMAT,
        "arch": arch,
        "state_dict": sd,
        "config": cfg.to_dict() if cfg is not None else {},
        "model_version": weights_version(model.arch_name, sd),
        "code_version": __version__,
        "calibration": model.calibration(),
        "epoch": -1,
        "extra": extra or {},
    }
    tmp = p.with_name(p.name + ".tmp")
    torch.save(ck, str(tmp))
    tmp.replace(p)
    return p
