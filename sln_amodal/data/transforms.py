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


class ResizeShortestEdge:
    """Short side to a size drawn from ``min_sizes``, long side capped at ``max_size``.

    The image is resized bilinearly and the masks by nearest neighbour to the same size; boxes are
    scaled by the per-axis size ratios (as torchvision's ``resize_boxes``).
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
        count = len(target["amodal_masks"])
        masks = torch.cat([target["amodal_masks"], target["visible_masks"]])  # (2N, H, W)
        masks = F.interpolate(masks[:, None], size=new_size, mode="nearest")[:, 0]
        ratio_y, ratio_x = new_size[0] / height, new_size[1] / width
        scale = torch.tensor([ratio_x, ratio_y, ratio_x, ratio_y], dtype=target["boxes"].dtype)
        target = {**target, "amodal_masks": masks[:count], "visible_masks": masks[count:],
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
