"""Mask R-CNN (He et al., 2017): image transform -> ResNet-FPN -> RPN -> RoI heads (box + mask).

Training: ``model(images, targets) -> {loss_objectness, loss_rpn_box_reg, loss_classifier,
loss_box_reg, loss_mask}`` (the mask branch may name its own losses). Eval: ``model(images) ->``
one dict per image with ``boxes`` (D, 4) xyxy in original-image pixels, ``labels`` (D,) 1..C,
``scores`` (D,) and, with a mask branch, every field of ``mask_branches.OUTPUT_FIELDS`` (and any
other output of the branch).
Images are float (3, H, W) RGB in [0, 1]; targets follow the project's data contract.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from .backbone import FPN
from .image_transform import ImageTransform
from .mask_branches import INPUT_IMAGE
from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork


class MaskRCNN(nn.Module):
    def __init__(
        self,
        transform: ImageTransform,
        backbone: FPN,
        rpn: RegionProposalNetwork,
        roi_heads: RoIHeads,
    ):
        super().__init__()
        self.transform = transform
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads

    def forward(self, images: list[Tensor], targets: Optional[list[dict]] = None):
        if self.training:
            check_targets(targets, len(images))
        original_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in images]
        batch, image_sizes = self.transform(images)
        features = self.extract_features(batch)
        proposals, rpn_losses = self.rpn(tuple(batch.shape[-2:]), image_sizes, features, targets)
        detections, roi_losses = self.roi_heads(features, proposals, image_sizes, targets)
        if self.training:
            return {**roi_losses, **rpn_losses}
        detections = self.transform.postprocess(detections, image_sizes, original_sizes, self.roi_heads.pasted_fields)
        return self.roi_heads.finalize(detections, original_sizes)

    def extract_features(self, batch: Tensor) -> dict[str, Tensor]:
        """What the RPN and the RoI heads read: the FPN levels by name and, under ``INPUT_IMAGE``,
        the normalised batch (N, 3, H, W) itself."""
        return {**self.backbone(batch), INPUT_IMAGE: batch}

    def check_categories(self, categories: list[dict]) -> None:
        """Raise if the model's dataset-bound state (a shape-prior codebook) was built for other categories."""
        self.roi_heads.check_categories(categories)

    @property
    def debug_picture_names(self) -> tuple[str, ...]:
        """The names of the pictures ``debug_pictures`` draws (none without a mask branch that draws)."""
        return self.roi_heads.debug_picture_names

    def debug_pictures(self, detection: dict[str, Tensor], target: Optional[dict], max_rois: int,
                       match_iou: float) -> dict[str, np.ndarray]:
        """The mask branch's pictures of one image's eval output (``MaskBranch.debug_pictures``)."""
        return self.roi_heads.debug_pictures(detection, target, max_rois, match_iou)


def check_targets(targets: Optional[list[dict]], num_images: int) -> None:
    """Fail with the image and field named on targets the model cannot train on."""
    if targets is None or len(targets) != num_images:
        got = "none" if targets is None else len(targets)
        raise ValueError(f"training needs one target dict per image ({num_images}), got {got}")
    for index, target in enumerate(targets):
        where = f"targets[{index}] (image {target.get('file_name', target.get('image_id', '?'))})"
        boxes = target.get("boxes")
        if not isinstance(boxes, Tensor) or boxes.dim() != 2 or boxes.shape[-1] != 4 or not boxes.is_floating_point():
            raise ValueError(f"{where}: 'boxes' must be a float (N, 4) tensor, got {getattr(boxes, 'shape', boxes)}")
        labels = target.get("labels")
        if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != boxes.shape[:1]:
            raise ValueError(f"{where}: 'labels' must be an int64 tensor with one entry per box")
        degenerate = torch.where((boxes[:, 2:] <= boxes[:, :2]).any(dim=1))[0]
        if len(degenerate):
            raise ValueError(
                f"{where}: 'boxes' has {len(degenerate)} box(es) without positive width and height, "
                f"first {boxes[degenerate[0]].tolist()}"
            )
