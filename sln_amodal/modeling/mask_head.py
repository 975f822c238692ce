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

from ..layering import depth_ranks_from_order, occlusion_rate, order_from_visible_overlap
from .poolers import MultiScaleRoIAlign
from .roi_align import ADAPTIVE_SAMPLING, roi_align
from .roi_heads import RoIBatch

UPSAMPLE_FACTOR = 2  # the deconvolution doubles the pooled resolution (14 -> 28)


def crop_masks_to_boxes(masks: Tensor, boxes: Tensor, mask_index: Tensor, size: int) -> Tensor:
    """Crop ``masks[mask_index[r]]`` to ``boxes[r]`` and resize it to size x size with RoIAlign.

    Args: (G, H, W) masks of one image, (R, 4) boxes xyxy in the same pixels, (R,) int64 indices.
    Returns: (R, size, size) float values in [0, 1] (the covered fraction of each bin).
    """
    rois = torch.cat([mask_index[:, None].to(boxes.dtype), boxes], dim=1)
    pixels = masks[:, None].to(boxes.dtype)  # (G, 1, H, W)
    return roi_align(pixels, rois, (size, size), 1.0, ADAPTIVE_SAMPLING, aligned=False)[:, 0]


def roi_mask_targets(rois: RoIBatch, gt_masks: list[Tensor], size: int) -> Tensor:
    """(R, size, size) soft targets: per positive RoI its matched object's GT mask cropped to the box.
    ``gt_masks`` holds one (G_i, H, W) tensor per image; ``rois`` runs over the images in order."""
    return torch.cat([crop_masks_to_boxes(m, b, i, size) for m, b, i in zip(gt_masks, rois.boxes, rois.matched_gt)])


def graph_keeping_zero(*tensors: Tensor) -> Tensor:
    """A zero loss that still depends on ``tensors``: with nothing to learn from (no positive RoI),
    the parameters behind them still take part in the backward pass, which DDP needs."""
    return sum(tensor.sum() * 0 for tensor in tensors)


def class_mask_loss(mask_logits: Tensor, labels: Tensor, mask_targets: Tensor, weights: Tensor | None = None) -> Tensor:
    """Per-pixel BCE between the (R, K, M, M) logits of each RoI's class and its (R, M, M) target,
    averaged per RoI, scaled by the RoI's ``weights`` (R,) if given, then averaged over the RoIs."""
    if mask_targets.numel() == 0:
        return graph_keeping_zero(mask_logits)
    maps = select_class_maps(mask_logits, labels)
    if weights is None:
        return F.binary_cross_entropy_with_logits(maps, mask_targets)
    per_roi = F.binary_cross_entropy_with_logits(maps, mask_targets, reduction="none").mean(dim=(1, 2))
    return (per_roi * weights).mean()


def mask_rcnn_loss(mask_logits: Tensor, rois: RoIBatch, gt_masks: list[Tensor]) -> Tensor:
    """Mask R-CNN's mask loss: ``class_mask_loss`` against the cropped GT masks of ``rois``."""
    targets = roi_mask_targets(rois, gt_masks, mask_logits.shape[-1])
    return class_mask_loss(mask_logits, torch.cat(rois.labels), targets)


def select_class_maps(maps: Tensor, labels: Tensor) -> Tensor:
    """(R, K, M, M) per-class maps -> (R, M, M): each RoI's class, or the only map if K == 1."""
    channels = labels if maps.shape[1] > 1 else torch.zeros_like(labels)
    return maps[torch.arange(len(labels), device=labels.device), channels]


class MaskFCN(nn.Module):
    """The Mask R-CNN mask network: (R, C, P, P) features -> (R, K, 2P, 2P) logits.

    ``len(conv_dims)`` x (3x3 conv + ReLU), a 2x deconvolution + ReLU and a 1x1 predictor of
    ``num_outputs`` maps; every layer gets torchvision's initialisation (Kaiming normal, zero bias).
    The baselines' heads stack several of these (ORCNN, VRSP-Net).
    """

    def __init__(self, in_channels: int, conv_dims: Sequence[int], deconv_dim: int, num_outputs: int):
        super().__init__()
        self.convs = nn.ModuleList()
        for out_channels in conv_dims:
            self.convs.append(nn.Conv2d(in_channels, out_channels, 3, padding=1))
            in_channels = out_channels
        self.deconv = nn.ConvTranspose2d(in_channels, deconv_dim, UPSAMPLE_FACTOR, stride=UPSAMPLE_FACTOR)
        self.predictor = nn.Conv2d(deconv_dim, num_outputs, 1)
        for layer in [*self.convs, self.deconv, self.predictor]:
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(layer.bias)

    def forward_with_features(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits (R, K, 2P, 2P) and the features of the last convolution (R, D, P, P) and of the
        deconvolution (R, D', 2P, 2P), which VRSP-Net's feature-matching loss compares."""
        for conv in self.convs:
            x = F.relu(conv(x), inplace=True)
        upsampled = F.relu(self.deconv(x), inplace=True)
        return self.predictor(upsampled), [x, upsampled]

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_with_features(x)[0]


def mask_outputs(
    detection: dict[str, Tensor], amodal: Tensor, visible: Tensor, mask_thresh: float
) -> dict[str, Tensor]:
    """The shared output fields from pasted (D, H, W) amodal and visible mask probabilities.

    The visible mask is kept inside the amodal one, and the depth ranks follow the visible-overlap
    rule (SPEC section 6), ties by score. A head with one mask passes the same tensor twice: amodal
    == visible occludes nothing and orders no pair, so neither is computed from the masks.
    """
    amodal_masks = amodal >= mask_thresh
    num = len(amodal_masks)
    if visible is amodal:
        visible_masks = amodal_masks
        occlude_rate = torch.zeros(num, device=amodal.device)
        in_front = torch.zeros(num, num, dtype=torch.bool, device=amodal.device)
    else:
        visible_masks = (visible >= mask_thresh) & amodal_masks
        occlude_rate = occlusion_rate(amodal_masks, visible_masks)
        in_front = order_from_visible_overlap(amodal_masks, visible_masks)
    return {
        **detection,
        "amodal_masks": amodal_masks,
        "visible_masks": visible_masks,
        "occlude_rate": occlude_rate,
        "depth_rank": depth_ranks_from_order(in_front, detection["scores"]),
    }


class MaskRCNNHead(nn.Module):
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

    def __init__(
        self,
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
