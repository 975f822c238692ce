"""Training augmentation on (image, target) pairs in the data contract's tensor layout.

Every transform is called as ``transform(image, target, rng)`` with a numpy Generator and returns a
new image and a new target dict (the inputs are left untouched). Geometry changes move images,
masks and boxes together; class labels and depth order never change.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

Target = dict
Transform = Callable[[torch.Tensor, Target, np.random.Generator], tuple[torch.Tensor, Target]]


def resized_size(height: int, width: int, short_size: int, max_size: int) -> tuple[int, int]:
    """Output size of torchvision's GeneralizedRCNNTransform resize, to the pixel.

    scale = min(short_size / short side, max_size / long side) and each side becomes
    floor(side * scale), in double precision as torchvision's eager code path computes it.
    """
    scale = min(short_size / min(height, width), max_size / max(height, width))
    return math.floor(height * scale), math.floor(width * scale)


def resize_masks_nearest(masks: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(N, h, w) masks at (H, W) by nearest neighbour: exactly ``F.interpolate(mode="nearest")``,
    C-contiguous, and about twice as fast on uint8 masks in column-major storage (the layout of
    ``structures.masks.decode_rles``).

    Whole columns are picked first (contiguous copies in that storage), then rows.
    """
    height, width = int(size[0]), int(size[1])
    rows = _nearest_source_indices(masks.shape[-2], height, masks.device)
    columns = _nearest_source_indices(masks.shape[-1], width, masks.device)
    by_columns = masks.transpose(1, 2).index_select(1, columns)  # (N, W, h)
    return by_columns.transpose(1, 2).index_select(1, rows).contiguous()  # (N, H, W)


def _nearest_source_indices(in_size: int, out_size: int, device: torch.device) -> torch.Tensor:
    """The source index of each output index, computed as torch's nearest kernel does (float32)."""
    scale = torch.tensor(in_size / out_size, dtype=torch.float32)
    source = (torch.arange(out_size, dtype=torch.float32) * scale).floor().long()
    return source.clamp(max=in_size - 1).to(device)


class ResizeShortestEdge:
    """Short side to a size drawn from ``min_sizes``, long side capped at ``max_size``.

    The image is resized bilinearly (a uint8 image stays uint8: torch's fixed-point kernel, within
    one grey level of the float resize) and the masks by nearest neighbour to the same size; boxes
    are scaled by the per-axis size ratios (as torchvision's ``resize_boxes``).
    """

    def __init__(self, min_sizes: Sequence[int], max_size: int):
        if not min_sizes:
            raise ValueError("ResizeShortestEdge needs at least one short-side size")
        self.min_sizes = tuple(int(s) for s in min_sizes)
        self.max_size = int(max_size)

    def __call__(self, image: torch.Tensor, target: Target, rng: np.random.Generator):
        short_size = self.min_sizes[rng.integers(len(self.min_sizes))]
        height, width = image.shape[-2:]
        new_size = resized_size(height, width, short_size, self.max_size)
        image = F.interpolate(image[None], size=new_size, mode="bilinear", align_corners=False)[0]
        ratio_y, ratio_x = new_size[0] / height, new_size[1] / width
        scale = torch.tensor([ratio_x, ratio_y, ratio_x, ratio_y], dtype=target["boxes"].dtype)
        target = {**target, "amodal_masks": resize_masks_nearest(target["amodal_masks"], new_size),
                  "visible_masks": resize_masks_nearest(target["visible_masks"], new_size),
                  "boxes": target["boxes"] * scale}
        return image, target


class RandomHorizontalFlip:
    """Mirror left-right with probability ``prob``; a box [x1, y1, x2, y2] becomes [W - x2, y1, W - x1, y2]."""

    def __init__(self, prob: float):
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"flip probability must lie in [0, 1], got {prob}")
        self.prob = float(prob)

    def __call__(self, image: torch.Tensor, target: Target, rng: np.random.Generator):
        if rng.random() >= self.prob:
            return image, target
        width = image.shape[-1]
        x1, y1, x2, y2 = target["boxes"].unbind(dim=1)
        boxes = torch.stack([width - x2, y1, width - x1, y2], dim=1)
        target = {**target, "amodal_masks": target["amodal_masks"].flip(-1),
                  "visible_masks": target["visible_masks"].flip(-1), "boxes": boxes}
        return image.flip(-1), target


class Compose:
    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image: torch.Tensor, target: Target, rng: np.random.Generator):
        for transform in self.transforms:
            image, target = transform(image, target, rng)
        return image, target
