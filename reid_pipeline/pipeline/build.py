"""The one place that builds the pipeline's components from a config.

Every command that needs a model, a gallery or a matcher gets it here, so each wiring
step has one definition: the device, the ReID model (checkpoint or bundled default), the
embedder, the detector, the gallery and its default database URL, the exemplar cache and
the identity matcher. Each builder names its input when it fails (a missing checkpoint, an
unreachable database), and the cheap checks come first, so a bad input costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reid_pipeline.config import Config

if TYPE_CHECKING:
    import torch

    from reid_pipeline.detect import Detector
    from reid_pipeline.embed.embedder import Embedder
    from reid_pipeline.embed.model import ReIDModel
    from reid_pipeline.embed.onnx import OnnxEmbedder
    from reid_pipeline.gallery import Gallery
    from reid_pipeline.gallery.cache import ExemplarCache
    from reid_pipeline.match.assign import IdentityMatcher

DEFAULT_DB_NAME = "reid.db"  # the embedded default: SQLite beside the run's outputs


def default_db_url(cfg: Config, out_dir: str | Path | None = None) -> str:
    """``gallery.db``, or the embedded SQLite file ``<out>/reid.db`` (``out_dir``, default
    ``output.out``: where ``reid process`` writes it) when none is given."""
    return cfg.gallery.db or str(
        Path(cfg.output.out if out_dir is None else out_dir) / DEFAULT_DB_NAME
    )


def crops_dir(cfg: Config, db_url: str, out_dir: str | Path) -> Path | str | None:
    """Where crop images go: ``gallery.crops_dir``; for a server database, ``<out>/crops``
    (SQLite keeps them beside its file)."""
    if cfg.gallery.crops_dir:
        return cfg.gallery.crops_dir
    if "://" in db_url and not db_url.startswith("sqlite"):
        return Path(out_dir) / "crops"
    return None


def open_gallery(cfg: Config, out_dir: str | Path, db: str | None = None) -> Gallery:
    """The run's gallery (migrated to the current schema)."""
    from reid_pipeline.gallery import Gallery

    url = db or default_db_url(cfg, out_dir)
    return Gallery.open(url, cfg.gallery, crops_dir(cfg, url, out_dir))


def build_model(cfg: Config, device: torch.device, checkpoint: str | None = None) -> ReIDModel:
    """The ReID model in eval mode, with the scoring backend ``match.use_triton`` asks for."""
    from reid_pipeline.embed.model import load_model

    model = load_model(checkpoint or cfg.model.checkpoint, cfg.model, device)
    model.scoring_backend = "auto" if cfg.match.use_triton else "torch"
    model.eval()
    return model


def build_embedder(cfg: Config, model: ReIDModel, device: torch.device) -> Embedder | OnnxEmbedder:
    """The batched crop embedder at the input size the model was built (trained) for, on
    the runtime ``model.runtime`` picks (auto: onnxruntime on a CPU, torch on CUDA); both
    give the checkpoint's model version."""
    from reid_pipeline.embed.onnx import make_embedder

    return make_embedder(cfg.model, model, device)


def build_matcher(
    cfg: Config, model: ReIDModel, gallery: Gallery, device: torch.device
) -> tuple[ExemplarCache, IdentityMatcher]:
    """The gallery's exemplar cache (for this model version) and the identity matcher."""
    from reid_pipeline.gallery.cache import ExemplarCache
    from reid_pipeline.match.assign import IdentityMatcher

    cache = ExemplarCache(gallery, model.model_version, device=device)
    return cache, IdentityMatcher(model.pair_probability, cache, cfg.match, pair_distance(model))


def pair_distance(model: Any) -> Any:
    """The pair classifier's distance ``w.|q - g|`` (its score is ``b - distance``) for the
    matcher's relative gate; None for a model without a dichotomy classifier."""
    if not hasattr(model, "pair_scores") or not hasattr(model, "b"):
        return None
    bias = model.b
    b = float(bias.detach() if hasattr(bias, "detach") else bias)

    def distance(q: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return b - model.pair_scores(q, g).float()

    return distance


@dataclass(frozen=True)
class Components:
    """What a run is made of; ``detector`` is None for commands that detect nothing."""

    cfg: Config
    device: Any  # torch.device
    model: Any  # ReIDModel (or a stand-in with the same methods, in tests)
    embedder: Any
    detector: Any
    gallery: Any
    cache: Any
    matcher: Any
    db_url: str

    def close(self) -> None:
        self.gallery.close()


def build_components(
    cfg: Config,
    out_dir: str | Path,
    *,
    db: str | None = None,
    checkpoint: str | None = None,
    cameras: Sequence[str] = (),
    detector: bool | Detector = True,
    model: ReIDModel | None = None,
    device: torch.device | None = None,
) -> Components:
    """Build every component of a run from ``cfg``.

    ``detector``: True builds ``detector.kind`` (for ``cameras``), False builds none, an
    object is used as it is; ``model`` likewise replaces the configured checkpoint (the
    benchmark's randomly initialised network). The model comes before the database, so a
    wrong checkpoint fails before anything is created on disk.
    """
    from reid_pipeline.utils import resolve_device

    dev = device if device is not None else resolve_device(cfg.device)
    net = model if model is not None else build_model(cfg, dev, checkpoint)
    det: Any = None
    if detector is True:
        from reid_pipeline.detect import build_detector

        det = build_detector(cfg.detector, dev, cameras=cameras)
    elif detector is not False:
        det = detector
    embedder = build_embedder(cfg, net, dev)
    url = db or default_db_url(cfg, out_dir)
    gallery = open_gallery(cfg, out_dir, url)
    cache, matcher = build_matcher(cfg, net, gallery, dev)
    return Components(cfg, dev, net, embedder, det, gallery, cache, matcher, url)
