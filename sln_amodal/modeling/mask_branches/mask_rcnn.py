"""The Mask R-CNN mask branch: 4 x (3x3 conv + ReLU), 2x deconvolution + ReLU, 1x1 class logits.

Training: per positive RoI, the GT mask named by ``target_key`` (``amodal_masks`` or
``visible_masks``) of its matched object, cropped and resized to the 28 x 28 RoI grid with RoIAlign
(soft targets in [0, 1], as torchvision), against the logits of the GT class with binary
cross-entropy. Eval: ``masks`` (R, 1, 28, 28), the sigmoid of the predicted class's logits, which
the image transform pastes into the original image; one mask per object serves as both the amodal
and the visible mask.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..poolers import MultiScaleRoIAlign, roi_pooler_from_config
from .base import MaskBranch, RoIBatch, register_mask_branch
from .roi_masks import MaskFCN, class_mask_loss, mask_outputs, roi_mask_targets, select_class_maps


def mask_rcnn_loss(mask_logits: Tensor, rois: RoIBatch, gt_masks: list[Tensor]) -> Tensor:
    """Mask R-CNN's mask loss: ``class_mask_loss`` against the cropped GT masks of ``rois``."""
    targets = roi_mask_targets(rois, gt_masks, mask_logits.shape[-1])
    return class_mask_loss(mask_logits, torch.cat(rois.labels), targets)


def mask_network_config(cfg, backbone) -> dict:
    """The constructor arguments every Mask R-CNN-style branch starts with (Mask R-CNN, ORCNN,
    VRSP-Net): its pooler, the pooled channels, the mask network sizes, the classes and the
    binarising threshold."""
    m = cfg.MODEL.ROI_MASK_HEAD
    return {
        "pooler": roi_pooler_from_config(cfg, backbone, m.POOLER_RESOLUTION, m.POOLER_SAMPLING_RATIO),
        "in_channels": backbone.out_channels,
        "conv_dims": m.CONV_DIMS,
        "deconv_dim": m.DECONV_DIM,
        "num_classes": cfg.MODEL.NUM_CLASSES,
        "class_agnostic": m.CLS_AGNOSTIC_MASK,
        "mask_thresh": m.MASK_THRESH,
    }


@register_mask_branch("MaskRCNNHead")
class MaskRCNNHead(MaskBranch):
    """Args:
        pooler: RoIAlign for the mask branch (14 x 14 from P2..P5 by default).
        in_channels: channels of the pooled features.
        conv_dims: output channels of the 3x3 convolutions.
        deconv_dim: output channels of the 2x deconvolution.
        num_classes: foreground classes C; the predictor has C + 1 channels, or 1 if class-agnostic.
        class_agnostic: one mask per RoI instead of one per class.
        mask_thresh: probability at which a pasted mask is binarised.
        target_key: the target field holding the (G, H, W) GT masks to learn.
    """

    pasted_fields = ("masks",)

    def __init__(
        self,
        *,
        pooler: MultiScaleRoIAlign,
        in_channels: int,
        conv_dims: Sequence[int],
        deconv_dim: int,
        num_classes: int,
        class_agnostic: bool,
        mask_thresh: float,
        target_key: str,
    ):
        super().__init__()
        self.pooler = pooler
        self.target_key = target_key
        self.mask_thresh = mask_thresh
        self.mask_fcn = MaskFCN(in_channels, conv_dims, deconv_dim, 1 if class_agnostic else num_classes + 1)

    @classmethod
    def from_config(cls, cfg, backbone) -> dict:
        return {**mask_network_config(cfg, backbone), "target_key": cfg.MODEL.ROI_MASK_HEAD.TARGET_KEY}

    def forward(
        self,
        features: dict[str, Tensor],
        rois: RoIBatch,
        image_sizes: list[tuple[int, int]],
        targets: list[dict] | None = None,
    ):
        logits = self.mask_fcn(self.pooler(features, rois.boxes))  # (R, K, M, M)
        if self.training:
            return {"loss_mask": mask_rcnn_loss(logits, rois, [t[self.target_key] for t in targets])}
        probabilities = select_class_maps(logits, torch.cat(rois.labels))[:, None].sigmoid()
        return [{"masks": m} for m in probabilities.split([len(b) for b in rois.boxes])]

    def finalize(self, detection: dict[str, Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        """The shared output fields from the pasted ``masks`` (D, 1, H, W) probabilities: one mask
        per object, both the amodal and the visible mask (the baseline does not separate them), so
        the depth ranks follow the scores."""
        masks = detection["masks"][:, 0]
        return mask_outputs(detection, masks, masks, self.mask_thresh)
