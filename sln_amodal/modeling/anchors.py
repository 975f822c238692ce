"""Anchor boxes of the RPN: on every FPN level, a few boxes of one size and several aspect ratios
centred on (the corner of) every feature-map cell, in the pixel coordinates of the padded batch.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class AnchorGenerator(nn.Module):
    """Args:
        sizes: per level, the anchor sizes (sqrt of the area, pixels).
        aspect_ratios: per level, the ratios height / width; a single entry serves every level.

    Anchor order is level, then cell (row-major), then (ratio, size), which is the channel order
    of the RPN head's outputs (and torchvision's).
    """

    def __init__(self, sizes: Sequence[Sequence[float]], aspect_ratios: Sequence[Sequence[float]]):
        super().__init__()
        if len(aspect_ratios) == 1:
            aspect_ratios = tuple(aspect_ratios) * len(sizes)
        if len(aspect_ratios) != len(sizes):
            raise ValueError(f"{len(sizes)} anchor size levels but {len(aspect_ratios)} aspect-ratio levels")
        self.cell_anchors = [_cell_anchors(s, r) for s, r in zip(sizes, aspect_ratios)]

    @property
    def num_anchors_per_location(self) -> int:
        counts = {len(cell) for cell in self.cell_anchors}
        if len(counts) != 1:
            raise ValueError(f"the shared RPN head needs the same anchor count on every level, got {sorted(counts)}")
        return counts.pop()

    def forward(
        self, batch_hw: Sequence[int], feature_sizes: Sequence[Sequence[int]], device: torch.device
    ) -> list[Tensor]:
        """Per level (H_l * W_l * A, 4) anchors xyxy for a padded batch of ``batch_hw`` (H, W)."""
        if len(feature_sizes) != len(self.cell_anchors):
            raise ValueError(f"{len(feature_sizes)} feature levels but anchors for {len(self.cell_anchors)}")
        anchors = []
        for (height, width), cell in zip(feature_sizes, self.cell_anchors):
            # The stride is the integer ratio of batch to feature size (torchvision's rule): for an
            # odd-sized P5 it is not a power of two on P6, e.g. 800 // 13 = 61.
            stride_y, stride_x = batch_hw[0] // height, batch_hw[1] // width
            shifts_x = torch.arange(width, dtype=torch.float32, device=device) * stride_x
            shifts_y = torch.arange(height, dtype=torch.float32, device=device) * stride_y
            shift_y, shift_x = torch.meshgrid(shifts_y, shifts_x, indexing="ij")
            shifts = torch.stack((shift_x, shift_y, shift_x, shift_y), dim=-1).reshape(-1, 1, 4)
            anchors.append((shifts + cell.to(device)[None]).reshape(-1, 4))
        return anchors


def _cell_anchors(sizes: Sequence[float], aspect_ratios: Sequence[float]) -> Tensor:
    """(len(ratios) * len(sizes), 4) anchors centred on 0, rounded to whole pixels."""
    sizes_t = torch.as_tensor(sizes, dtype=torch.float32)
    ratios = torch.as_tensor(aspect_ratios, dtype=torch.float32)
    height_factor = torch.sqrt(ratios)
    width_factor = 1 / height_factor
    widths = (width_factor[:, None] * sizes_t[None, :]).reshape(-1)
    heights = (height_factor[:, None] * sizes_t[None, :]).reshape(-1)
    return (torch.stack((-widths, -heights, widths, heights), dim=1) / 2).round()
