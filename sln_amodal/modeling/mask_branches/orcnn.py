"""ORCNN (Follmann et al., WACV 2019): parallel amodal and visible Mask R-CNN mask networks on the
same RoI features, plus an occlusion (invisible) mask without parameters of its own.

The invisible logits are ``amodal - relu(visible)`` (as in VRSP-Net's ORCNN baseline): high where
the amodal mask is on and the visible one off. Three BCE losses on the RoI's class: amodal against
the GT amodal mask, visible against the GT visible mask, invisible against amodal minus visible.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .amodal_visible import AmodalVisibleHead
from .base import RoIBatch, register_mask_branch
from .roi_masks import class_mask_loss, roi_mask_targets


@register_mask_branch("ORCNNHead")
class ORCNNHead(AmodalVisibleHead):
    """The constructor arguments are ``AmodalVisibleHead``'s."""

    def forward(
        self,
        features: dict[str, Tensor],
        rois: RoIBatch,
        image_sizes: list[tuple[int, int]],
        targets: list[dict] | None = None,
    ):
        x = self.pooler(features, rois.boxes)
        amodal_logits, visible_logits = self.amodal_fcn(x), self.visible_fcn(x)  # (R, K, M, M) each
        if not self.training:
            return self.predictions(amodal_logits, visible_logits, rois)
        size, labels = amodal_logits.shape[-1], torch.cat(rois.labels)
        amodal_targets = roi_mask_targets(rois, [t["amodal_masks"] for t in targets], size)
        visible_targets = roi_mask_targets(rois, [t["visible_masks"] for t in targets], size)
        invisible_logits = amodal_logits - F.relu(visible_logits)
        return {
            "loss_amodal_mask": class_mask_loss(amodal_logits, labels, amodal_targets),
            "loss_visible_mask": class_mask_loss(visible_logits, labels, visible_targets),
            # Visible lies inside amodal, so the difference of the covered fractions is the hidden fraction.
            "loss_invisible_mask": class_mask_loss(
                invisible_logits, labels, (amodal_targets - visible_targets).clamp(min=0)
            ),
        }
