"""ResNet-18/34/50/101 feature extractor (He et al., 2016) with torchvision's layout of strides.

The bottleneck puts the stride on its 3x3 convolution (torchvision's "ResNet v1.5"), so ImageNet
weights of torchvision load through ``modeling.weights``. The network returns the outputs of its
four stages res2..res5 (strides 4, 8, 16, 32) for the FPN; it has no classifier.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..norm import build_norm, conv_norm

STEM_CHANNELS = 64
STAGE_NAMES = ("res2", "res3", "res4", "res5")
# 3x3 convolution width of each stage: the paper's (He et al.), which ImageNet and COCO weights fit.
STAGE_WIDTHS = (64, 128, 256, 512)
STAGE_STRIDES = (1, 2, 2, 2)  # stride of each stage's first block; the stem already has stride 4
# Parts a freeze can reach, bottom first: the stem, then the four stages.
FREEZABLE_PARTS = ("stem",) + STAGE_NAMES


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with an identity (or projected) shortcut; ResNet-18/34."""

    expansion = 1

    def __init__(self, in_channels: int, width: int, stride: int, make_norm):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stride, padding=1, bias=False)
        self.norm1 = make_norm(width)
        self.conv2 = nn.Conv2d(width, out_channels, 3, padding=1, bias=False)
        self.norm2 = make_norm(out_channels)
        self.shortcut = _shortcut(in_channels, out_channels, stride, make_norm)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(conv_norm(self.conv1, self.norm1, x))
        out = conv_norm(self.conv2, self.norm2, out)
        # The projection runs last so its output is not held through the main path.
        out += x if self.shortcut is None else self.shortcut(x)
        return self.relu(out)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided), 1x1 expand by 4, with a shortcut; ResNet-50/101."""

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int, make_norm):
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.norm1 = make_norm(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.norm2 = make_norm(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.norm3 = make_norm(out_channels)
        self.shortcut = _shortcut(in_channels, out_channels, stride, make_norm)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(conv_norm(self.conv1, self.norm1, x))
        out = self.relu(conv_norm(self.conv2, self.norm2, out))
        out = conv_norm(self.conv3, self.norm3, out)
        out += x if self.shortcut is None else self.shortcut(x)
        return self.relu(out)


class Projection(nn.Module):
    """A strided 1x1 convolution and its norm: the shortcut of a block that changes shape."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, make_norm):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
        self.norm = make_norm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        return conv_norm(self.conv, self.norm, x)


def _shortcut(in_channels: int, out_channels: int, stride: int, make_norm) -> Projection | None:
    """The projection where the block changes shape; the identity (None) otherwise."""
    if stride == 1 and in_channels == out_channels:
        return None
    return Projection(in_channels, out_channels, stride, make_norm)


RESNET_SPECS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class Stem(nn.Module):
    """7x7/2 convolution, norm, ReLU, 3x3/2 max-pool: stride 4."""

    def __init__(self, make_norm):
        super().__init__()
        self.conv = nn.Conv2d(3, STEM_CHANNELS, 7, stride=2, padding=3, bias=False)
        self.norm = make_norm(STEM_CHANNELS)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.relu(conv_norm(self.conv, self.norm, x)))


class ResNet(nn.Module):
    """ResNet body returning ``{"res2": (N, C2, H/4, W/4), ..., "res5": (N, C5, H/32, W/32)}``.

    Args:
        depth: 18, 34, 50 or 101.
        norm: "FrozenBN", "BN" or "GN" (see ``modeling.norm``).
        norm_eps: epsilon of the normalisation layers.
        gn_groups: groups of GroupNorm.
        trainable_layers: how many parts, counted from the top (res5, res4, res3, res2, stem),
            are trained; the others have ``requires_grad=False`` and, with batch norm, frozen BN.
        stage_widths: the 3x3 convolution width of res2..res5. Pretrained weights fit only
            ``STAGE_WIDTHS``; narrower stages are for models trained from scratch.
    """

    def __init__(
        self,
        depth: int,
        norm: str,
        norm_eps: float,
        gn_groups: int,
        trainable_layers: int,
        stage_widths: tuple[int, ...] = STAGE_WIDTHS,
    ):
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(
                f"MODEL.BACKBONE.DEPTH: unsupported ResNet depth {depth}, expected one of {sorted(RESNET_SPECS)}"
            )
        if not 0 <= trainable_layers <= len(FREEZABLE_PARTS):
            raise ValueError(
                f"MODEL.BACKBONE.TRAINABLE_LAYERS must be in [0, {len(FREEZABLE_PARTS)}], got {trainable_layers}"
            )
        self.depth = depth
        block, blocks_per_stage = RESNET_SPECS[depth]
        frozen_parts = set(FREEZABLE_PARTS[: len(FREEZABLE_PARTS) - trainable_layers])

        def norm_factory(part: str):
            # Batch statistics of a layer that is not trained must not drift either.
            kind = "FrozenBN" if part in frozen_parts and norm == "BN" else norm
            return lambda channels: build_norm(kind, channels, norm_eps, gn_groups)

        self.stem = Stem(norm_factory("stem"))
        in_channels = STEM_CHANNELS
        self.out_channels: dict[str, int] = {}
        for name, width, stride, num_blocks in zip(STAGE_NAMES, stage_widths, STAGE_STRIDES, blocks_per_stage):
            make_norm = norm_factory(name)
            blocks = []
            for index in range(num_blocks):
                blocks.append(block(in_channels, width, stride if index == 0 else 1, make_norm))
                in_channels = width * block.expansion
            self.add_module(name, nn.Sequential(*blocks))
            self.out_channels[name] = in_channels

        self._init_weights()
        for part in frozen_parts:
            getattr(self, part).requires_grad_(False)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(x)
        outputs = {}
        for name in STAGE_NAMES:
            x = getattr(self, name)(x)
            outputs[name] = x
        return outputs
