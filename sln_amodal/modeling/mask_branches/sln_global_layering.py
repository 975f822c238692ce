"""The global layering module of the SLN: per-pixel classification of the global layering map G.

G(p) = min(K, number of objects whose amodal mask covers p), classes 0..K (SPEC section 2). The
module reads one FPN level; its soft output is cropped per RoI and feeds the instance layering
head, so every RoI sees how crowded the scene is around it.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import conv_stack, init_predictor, init_trunk


class GlobalLayeringModule(nn.Module):
    """``forward(features) -> (N, K + 1, H/s, W/s)`` logits of G on the FPN level ``feature_name``.

    Args:
        feature_name: the FPN level read (e.g. "p2", stride 4: the finest).
        in_channels: its channels.
        conv_dims: output channels of the 3x3 convolutions before the 1x1 classifier.
        num_layers: K; the classifier has K + 1 outputs.
    """

    def __init__(self, feature_name: str, in_channels: int, conv_dims: Sequence[int], num_layers: int):
        super().__init__()
        self.feature_name = feature_name
        self.num_layers = num_layers
        self.convs, in_channels = conv_stack(in_channels, conv_dims)
        self.classifier = nn.Conv2d(in_channels, num_layers + 1, 1)
        init_trunk(self.convs)
        init_predictor(self.classifier)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return self.classifier(self.convs(features[self.feature_name]))


def global_layering_targets(global_maps: list[Tensor], batch_hw: tuple[int, int], stride: int) -> Tensor:
    """G of each image, zero-padded to the batch and sampled at the centres of the stride-s cells.

    global_maps: per image its G (H_i, W_i) int64 (``global_layering_map`` of its amodal masks) in
    network-input pixels (training images are not resized by the model, so the masks already match
    the batch). Returns (B, H/s, W/s) int64.
    """
    height, width = batch_hw
    device = global_maps[0].device
    maps = torch.zeros((len(global_maps), height, width), dtype=torch.long, device=device)
    for slot, global_map in zip(maps, global_maps):
        slot[: global_map.shape[-2], : global_map.shape[-1]] = global_map
    return maps[:, stride // 2 :: stride, stride // 2 :: stride]


def global_layering_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-pixel cross-entropy between (B, K + 1, h, w) logits and (B, h, w) classes."""
    return F.cross_entropy(logits, targets)
