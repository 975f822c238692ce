"""The Mask R-CNN mask branch: 4 x (3x3 conv + ReLU), 2x deconvolution + ReLU, 1x1 class logits.

It follows the mask-branch interface of ``roi_heads.py``. Training: per positive RoI, the GT mask
named by ``target_key`` (``amodal_masks`` or ``visible_masks``) of its matched object, cropped and
resized to the 28 x 28 RoI grid with RoIAlign (soft targets in [0, 1], as torchvision), against the
logits of the GT class with binary cross-entropy. Eval: ``masks`` (R, 1, 28, 28), the sigmoid of
the predicted class's logits, which the image transform pastes into the original image.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_align

from ..layering import depth_ranks_from_order
from .poolers import MultiScaleRoIAlign
from .roi_heads import RoIBatch

UPSAMPLE_FACTOR = 2  # the deconvolution doubles the pooled resolution (14 -> 28)


def crop_masks_to_boxes(masks: Tensor, boxes: Tensor, mask_index: Tensor, size: int) -> Tensor:
    """Crop ``masks[mask_index[r]]`` to ``boxes[r]`` and resize it to size x size with RoIAlign.

    Args: (G, H, W) masks of one image, (R, 4) boxes xyxy in the same pixels, (R,) int64 indices.
    Returns: (R, size, size) float values in [0, 1] (the covered fraction of each bin).
    """
    rois = torch.cat([mask_index[:, None].to(boxes.dtype), boxes], dim=1)
    return roi_align(masks[:, None].to(boxes.dtype), rois, (size, size), spatial_scale=1.0)[:, 0]


def mask_rcnn_loss(mask_logits: Tensor, rois: RoIBatch, gt_masks: list[Tensor]) -> Tensor:
    """Mean per-pixel BCE between the logits of each RoI's GT class (channel 0 when class-agnostic)
    and its cropped GT mask. ``mask_logits`` (R, K, M, M) runs over ``rois`` image by image."""
    size = mask_logits.shape[-1]
    mask_targets = torch.cat(
        [crop_masks_to_boxes(m, b, i, size) for m, b, i in zip(gt_masks, rois.boxes, rois.matched_gt)]
    )
    if mask_targets.numel() == 0:
        # No positive RoI: a zero that still depends on the parameters keeps DDP's graph complete.
        return mask_logits.sum() * 0
    return F.binary_cross_entropy_with_logits(select_class_maps(mask_logits, torch.cat(rois.labels)), mask_targets)


def select_class_maps(maps: Tensor, labels: Tensor) -> Tensor:
    """(R, K, M, M) per-class maps -> (R, M, M): each RoI's class, or the only map if K == 1."""
    channels = labels if maps.shape[1] > 1 else torch.zeros_like(labels)
    return maps[torch.arange(len(labels), device=labels.device), channels]


class MaskRCNNHead(nn.Module):
    """Args:
        pooler: RoIAlign for the mask branch (14 x 14 from P2..P5 by default).
        in_channels: channels of the pooled features.
        conv_dims: output channels of the 3x3 convolutions.
        deconv_dim: output channels of the 2x deconvolution.
        num_classes: foreground classes C; the predictor has C + 1 channels, or 1 if class-agnostic.
        class_agnostic: one mask per RoI instead of one per class.
        target_key: the target field holding the (G, H, W) GT masks to learn.
        mask_thresh: probability at which a pasted mask is binarised.
    """

    def __init__(
        self,
        pooler: MultiScaleRoIAlign,
        in_channels: int,
        conv_dims: Sequence[int],
        deconv_dim: int,
        num_classes: int,
        class_agnostic: bool,
        target_key: str,
        mask_thresh: float,
    ):
        super().__init__()
        self.pooler = pooler
        self.target_key = target_key
        self.mask_thresh = mask_thresh
        self.convs = nn.ModuleList()
        for out_channels in conv_dims:
            self.convs.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
            in_channels = out_channels
        self.deconv = nn.ConvTranspose2d(in_channels, deconv_dim, UPSAMPLE_FACTOR, stride=UPSAMPLE_FACTOR)
        self.predictor = nn.Conv2d(deconv_dim, 1 if class_agnostic else num_classes + 1, 1)
        for layer in [*self.convs, self.deconv, self.predictor]:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def mask_logits(self, features: dict[str, Tensor], boxes: list[Tensor]) -> Tensor:
        """(R, K, M, M) logits for the boxes of all images, in order."""
        x = self.pooler(features, boxes)
        for conv in self.convs:
            x = F.relu(conv(x), inplace=True)
        return self.predictor(F.relu(self.deconv(x), inplace=True))

    def forward(
        self,
        features: dict[str, Tensor],
        rois: RoIBatch,
        image_sizes: list[tuple[int, int]],
        targets: list[dict] | None = None,
    ):
        logits = self.mask_logits(features, rois.boxes)
        if self.training:
            return {"loss_mask": mask_rcnn_loss(logits, rois, [t[self.target_key] for t in targets])}
        probabilities = select_class_maps(logits, torch.cat(rois.labels))[:, None].sigmoid()
        return [{"masks": m} for m in probabilities.split([len(b) for b in rois.boxes])]

    def finalize(self, detection: dict[str, Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        """The shared output fields from the pasted ``masks`` (D, 1, H, W) probabilities.

        One mask per object: it is both the amodal and the visible mask (the baseline does not
        separate them), so the visible-overlap rule leaves every pair unordered and the depth
        ranks follow the scores.
        """
        masks = detection["masks"][:, 0] >= self.mask_thresh
        return {
            **detection,
            "amodal_masks": masks,
            "visible_masks": masks,
            "occlude_rate": torch.zeros(len(masks), device=masks.device),
            # Amodal == visible orders no pair, so the pairwise overlaps need not be computed.
            "depth_rank": depth_ranks_from_order(
                torch.zeros(len(masks), len(masks), dtype=torch.bool, device=masks.device), detection["scores"]
            ),
        }
