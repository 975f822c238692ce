"""Feature Pyramid Network (Lin et al., 2017) on a ResNet: levels P2..P6, as in torchvision.

P2..P5 come from a 1x1 lateral convolution of res2..res5 plus the nearest-upsampled coarser level,
smoothed by a 3x3 convolution; P6 subsamples P5 by two (torchvision's ``LastLevelMaxPool``, a
1x1 max-pool with stride 2) and serves only the RPN's largest anchors.
"""
from __future__ import annotations

from collections import OrderedDict

import torch.nn.functional as F
from torch import Tensor, nn

from .resnet import STAGE_NAMES, ResNet

FEATURE_NAMES = ("p2", "p3", "p4", "p5", "p6")
FEATURE_STRIDES = {"p2": 4, "p3": 8, "p4": 16, "p5": 32, "p6": 64}
ROI_FEATURE_NAMES = ("p2", "p3", "p4", "p5")  # RoI heads pool from these; P6 serves the RPN only
EXTRA_LEVEL_STRIDE = 2  # P6 = every second pixel of P5


class FPN(nn.Module):
    """ResNet + FPN: ``forward(images) -> OrderedDict p2..p6`` of (N, out_channels, H/s, W/s).

    Attributes:
        out_channels: channels of every level.
        strides: ``{level name: stride in input pixels}``.
    """

    def __init__(self, bottom_up: ResNet, out_channels: int):
        super().__init__()
        self.bottom_up = bottom_up
        self.out_channels = out_channels
        self.strides = dict(FEATURE_STRIDES)
        self.lateral_convs = nn.ModuleList(
            nn.Conv2d(bottom_up.out_channels[name], out_channels, 1) for name in STAGE_NAMES
        )
        self.output_convs = nn.ModuleList(
            nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in STAGE_NAMES
        )
        for conv in [*self.lateral_convs, *self.output_convs]:
            nn.init.kaiming_uniform_(conv.weight, a=1)
            nn.init.zeros_(conv.bias)

    def forward(self, images: Tensor) -> "OrderedDict[str, Tensor]":
        stages = self.bottom_up(images)
        bottom_up = [stages[name] for name in STAGE_NAMES]
        # Top-down pass, coarsest level first.
        top_down = self.lateral_convs[-1](bottom_up[-1])
        outputs = [self.output_convs[-1](top_down)]
        for level in range(len(bottom_up) - 2, -1, -1):
            lateral = self.lateral_convs[level](bottom_up[level])
            top_down = lateral + F.interpolate(top_down, size=lateral.shape[-2:], mode="nearest")
            outputs.insert(0, self.output_convs[level](top_down))
        outputs.append(F.max_pool2d(outputs[-1], kernel_size=1, stride=EXTRA_LEVEL_STRIDE))
        return OrderedDict(zip(FEATURE_NAMES, outputs))
