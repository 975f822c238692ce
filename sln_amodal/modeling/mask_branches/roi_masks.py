"""The toolbox of the mask branches: what several of them compute the same way.

- RoI mask targets: a GT mask cropped to each RoI's box and resized to its grid (RoIAlign, soft
  values in [0, 1], as torchvision);
- class selection: each RoI's map among per-class maps;
- the per-class binary cross-entropy of Mask R-CNN, optionally weighted per RoI;
- the zero loss that keeps DDP's graph complete when a batch has no positive RoI;
- boxes scaled about their centres (a branch that reads and pastes beyond the box);
- the Mask R-CNN mask network (``MaskFCN``) and its upsampling factor;
- the output rule: the shared output fields from an amodal and a visible mask probability.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...layering import depth_ranks_from_order, occlusion_rate, order_from_visible_overlap
from ..layers import channels_last
from ..roi_align import ADAPTIVE_SAMPLING, roi_align
from .base import RoIBatch

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


def scale_boxes(boxes: Tensor, factor: float) -> Tensor:
    """(R, 4) xyxy boxes scaled by ``factor`` about their centres (1: the boxes themselves)."""
    if factor == 1.0:
        return boxes
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    half_sizes = (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)
    return torch.cat([centres - half_sizes, centres + half_sizes], dim=1)


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
        x = channels_last(x)
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
