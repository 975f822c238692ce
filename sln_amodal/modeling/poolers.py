"""Multi-scale RoIAlign: pool each RoI from the FPN level that suits its size (FPN paper, eq. 1).

level = floor(canonical_level + log2(sqrt(area) / canonical_box_size)), clamped to the pooled
levels, so a 224 x 224 box pools from P4, one half that size from P3, and so on.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import box_area

from .backbone import FPN, ROI_FEATURE_NAMES
from .roi_align import roi_align

# Nudges log2 of an exact power-of-two box size up before the floor, so float error cannot drop
# it one level (torchvision's value).
LEVEL_MAPPING_EPS = 1e-6


def assign_boxes_to_levels(
    boxes: Tensor, min_level: int, max_level: int, canonical_box_size: int, canonical_level: int
) -> Tensor:
    """(R, 4) boxes xyxy -> (R,) int64 index of the level, 0 for ``min_level``."""
    box_sizes = torch.sqrt(box_area(boxes))
    levels = torch.floor(canonical_level + torch.log2(box_sizes / canonical_box_size) + LEVEL_MAPPING_EPS)
    return (levels.clamp(min=min_level, max=max_level) - min_level).to(torch.int64)


def boxes_to_rois(boxes: list[Tensor]) -> Tensor:
    """Per image (R_i, 4) boxes -> (sum R_i, 5) rows (image index, x1, y1, x2, y2) for ``roi_align``."""
    concat = torch.cat(boxes)
    image_index = torch.repeat_interleave(
        torch.arange(len(boxes), device=concat.device, dtype=concat.dtype),
        torch.as_tensor([len(b) for b in boxes], device=concat.device),
    )
    return torch.cat([image_index[:, None], concat], dim=1)


class MultiScaleRoIAlign(nn.Module):
    """``forward(features, boxes) -> (R, C, S, S)``: RoIAlign from the level each box maps to.

    Args:
        feature_names: the pooled levels, finest first (e.g. p2..p5).
        strides: stride of each of those levels; powers of two.
        output_size: S, the side of the pooled grid.
        sampling_ratio: sampling points per bin side (0 or less: adaptive).
        canonical_box_size, canonical_level: eq. 1 of the FPN paper.
        aligned: shift boxes by half a pixel (detectron2's ROIAlignV2) or not (torchvision).
    """

    def __init__(
        self,
        feature_names: Sequence[str],
        strides: Sequence[int],
        output_size: int,
        sampling_ratio: int,
        canonical_box_size: int,
        canonical_level: int,
        aligned: bool,
    ):
        super().__init__()
        self.feature_names = tuple(feature_names)
        self.scales = [1.0 / s for s in strides]
        self.min_level = int(math.log2(strides[0]))
        self.max_level = int(math.log2(strides[-1]))
        if len(strides) != self.max_level - self.min_level + 1:
            raise ValueError(f"pooled levels must be consecutive powers of two, got strides {tuple(strides)}")
        self.output_size = (output_size, output_size)
        self.sampling_ratio = sampling_ratio
        self.canonical_box_size = canonical_box_size
        self.canonical_level = canonical_level
        self.aligned = aligned

    def forward(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        """Args: FPN features by name, per image (R_i, 4) boxes xyxy in input pixels."""
        rois = boxes_to_rois(boxes)
        levels = assign_boxes_to_levels(
            rois[:, 1:], self.min_level, self.max_level, self.canonical_box_size, self.canonical_level
        )
        first = features[self.feature_names[0]]
        pooled = first.new_zeros((len(rois), first.shape[1], *self.output_size))
        for level, (name, scale) in enumerate(zip(self.feature_names, self.scales)):
            in_level = torch.where(levels == level)[0]
            pooled[in_level] = roi_align(
                features[name],
                rois[in_level],
                output_size=self.output_size,
                spatial_scale=scale,
                sampling_ratio=self.sampling_ratio,
                aligned=self.aligned,
            ).to(pooled.dtype)
        return pooled


def roi_pooler_from_config(cfg, backbone: FPN, resolution: int, sampling_ratio: int) -> MultiScaleRoIAlign:
    """RoIAlign over P2..P5 at ``resolution``, placed by MODEL.ROI_HEADS; the box branch and every
    mask branch pool with one."""
    h = cfg.MODEL.ROI_HEADS
    return MultiScaleRoIAlign(
        ROI_FEATURE_NAMES,
        [backbone.strides[name] for name in ROI_FEATURE_NAMES],
        resolution,
        sampling_ratio,
        h.CANONICAL_BOX_SIZE,
        h.CANONICAL_LEVEL,
        h.POOLER_ALIGNED,
    )
