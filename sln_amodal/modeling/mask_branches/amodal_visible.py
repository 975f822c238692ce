"""The base of the mask branches that predict an amodal and a visible mask per RoI with two
Mask R-CNN mask networks (ORCNN, VRSP-Net).

Eval outputs ``amodal_probs`` and ``visible_probs`` (R, 1, M, M), the sigmoids of the predicted
class's logits, which the image transform pastes; ``finalize`` binarises them and derives the
occlusion rate and the depth ranks (the object with more visible pixels in an overlap is in front).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..poolers import MultiScaleRoIAlign
from .base import MaskBranch, RoIBatch
from .mask_rcnn import mask_network_config
from .roi_masks import MaskFCN, mask_outputs, select_class_maps


class AmodalVisibleHead(MaskBranch):
    """Args:
        pooler: RoIAlign for the branch (14 x 14 by default).
        in_channels: channels of the pooled features.
        conv_dims, deconv_dim: of each mask network (4 x 256 and 256 in Mask R-CNN).
        num_classes: foreground classes C; each network predicts C + 1 maps, or 1 if class-agnostic.
        class_agnostic: one mask per RoI instead of one per class.
        mask_thresh: probability at which a pasted mask is binarised.
    """

    pasted_fields = ("amodal_probs", "visible_probs")

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
    ):
        super().__init__()
        self.pooler = pooler
        self.mask_thresh = mask_thresh
        num_outputs = 1 if class_agnostic else num_classes + 1
        self.amodal_fcn = MaskFCN(in_channels, conv_dims, deconv_dim, num_outputs)
        self.visible_fcn = MaskFCN(in_channels, conv_dims, deconv_dim, num_outputs)

    @classmethod
    def from_config(cls, cfg, backbone) -> dict:
        return mask_network_config(cfg, backbone)

    @staticmethod
    def predictions(amodal_logits: Tensor, visible_logits: Tensor, rois: RoIBatch, **per_roi: Tensor) -> list[dict]:
        """Per image: the amodal and visible probabilities of each RoI's class (R_i, 1, M, M) and any
        other (R,) fields given, split by image."""
        labels = torch.cat(rois.labels)
        fields = {
            "amodal_probs": select_class_maps(amodal_logits, labels)[:, None].sigmoid(),
            "visible_probs": select_class_maps(visible_logits, labels)[:, None].sigmoid(),
            **per_roi,
        }
        counts = [len(b) for b in rois.boxes]
        split = {name: value.split(counts) for name, value in fields.items()}
        return [{name: parts[i] for name, parts in split.items()} for i in range(len(counts))]

    def finalize(self, detection: dict[str, Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        return mask_outputs(
            detection, detection["amodal_probs"][:, 0], detection["visible_probs"][:, 0], self.mask_thresh
        )
