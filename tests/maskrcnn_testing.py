"""Shared fixtures of the Mask R-CNN tests: a small config and scenes with objects (the torchvision
reference with our weights is ``modeling.torchvision_reference.same_weights_pair``)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sln_amodal.config import get_default_config

NUM_CLASSES = 4
IMAGE_SIZES = ((240, 320), (300, 256))


def small_config():
    """Defaults at test scale: 256..320 px inputs, fewer proposals and detections."""
    cfg = get_default_config()
    cfg.MODEL.NUM_CLASSES = NUM_CLASSES
    cfg.INPUT.MIN_SIZE_TEST = 256
    cfg.INPUT.MAX_SIZE_TEST = 320
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 300
    cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 25
    return cfg


def scene(height: int, width: int, seed: int):
    """A smooth random background with three overlapping boxes drawn front to back; returns the
    image (3, H, W) in [0, 1] and its target (amodal = whole box, visible = the unhidden part)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 16 + 1, width // 16 + 1, generator=g)
    image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    corners = torch.rand(3, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6])
    sizes = (torch.rand(3, 2, generator=g) * 0.3 + 0.2) * torch.tensor([width, height])
    boxes = torch.cat([corners, corners + sizes], dim=1).floor()
    amodal = torch.zeros(3, height, width, dtype=torch.uint8)
    covered = torch.zeros(height, width, dtype=torch.bool)
    visible = torch.zeros_like(amodal)
    # Draw back to front so the last object ends up in front.
    for index, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
        amodal[index, y0:y1, x0:x1] = 1
        image[:, y0:y1, x0:x1] = torch.rand(3, 1, 1, generator=g)
    for index in reversed(range(3)):
        visible[index] = amodal[index].bool() & ~covered
        covered |= amodal[index].bool()
    target = {
        "boxes": boxes,
        "labels": torch.randint(1, NUM_CLASSES + 1, (3,), generator=g),
        "amodal_masks": amodal,
        "visible_masks": visible,
    }
    return image, target


def scenes():
    images, targets = zip(*(scene(h, w, seed) for seed, (h, w) in enumerate(IMAGE_SIZES)))
    return list(images), list(targets)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row IoU of (N, ...) masks binarised at 0.5 (1 where both are empty)."""
    a, b = (a >= 0.5).flatten(1), (b >= 0.5).flatten(1)
    union = (a | b).sum(1)
    return torch.where(union > 0, (a & b).sum(1) / union.clamp(min=1), torch.ones_like(union, dtype=torch.float32))
