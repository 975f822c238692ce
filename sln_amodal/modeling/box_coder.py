"""Box regression parameterisation of R-CNN: (dx, dy, dw, dh) of a box relative to a reference box.

dx = wx * (x_target - x_ref) / w_ref, dw = ww * log(w_target / w_ref) (likewise y, h), on box centres
and sizes; the weights (wx, wy, ww, wh) rescale the deltas to comparable magnitudes.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

# Largest log-scale change a decoded delta may apply (Detectron's and torchvision's bound), so an
# untrained head cannot produce overflowing exp().
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    def __init__(self, weights: tuple[float, float, float, float], scale_clamp: float = DEFAULT_SCALE_CLAMP):
        self.weights = tuple(float(w) for w in weights)
        self.scale_clamp = scale_clamp

    def encode(self, targets: Tensor, references: Tensor) -> Tensor:
        """Deltas (R, 4) that turn ``references`` (R, 4) into ``targets`` (R, 4), boxes xyxy."""
        wx, wy, ww, wh = self.weights
        ref_widths = references[:, 2] - references[:, 0]
        ref_heights = references[:, 3] - references[:, 1]
        ref_ctr_x = references[:, 0] + 0.5 * ref_widths
        ref_ctr_y = references[:, 1] + 0.5 * ref_heights

        target_widths = targets[:, 2] - targets[:, 0]
        target_heights = targets[:, 3] - targets[:, 1]
        target_ctr_x = targets[:, 0] + 0.5 * target_widths
        target_ctr_y = targets[:, 1] + 0.5 * target_heights

        dx = wx * (target_ctr_x - ref_ctr_x) / ref_widths
        dy = wy * (target_ctr_y - ref_ctr_y) / ref_heights
        dw = ww * torch.log(target_widths / ref_widths)
        dh = wh * torch.log(target_heights / ref_heights)
        return torch.stack((dx, dy, dw, dh), dim=1)

    def decode(self, deltas: Tensor, references: Tensor) -> Tensor:
        """Apply ``deltas`` (..., 4k), k boxes per reference, to ``references`` (..., 4) -> (..., k, 4).

        Leading dimensions broadcast, so one set of anchors serves a whole batch. Half-precision
        deltas (mixed precision) are decoded in the references' float32, where pixel coordinates
        keep sub-pixel precision.
        """
        wx, wy, ww, wh = self.weights
        dtype = torch.promote_types(deltas.dtype, references.dtype)
        deltas, references = deltas.to(dtype), references.to(dtype)
        widths = (references[..., 2] - references[..., 0])[..., None]
        heights = (references[..., 3] - references[..., 1])[..., None]
        ctr_x = references[..., 0, None] + 0.5 * widths
        ctr_y = references[..., 1, None] + 0.5 * heights

        dx = deltas[..., 0::4] / wx
        dy = deltas[..., 1::4] / wy
        dw = torch.clamp(deltas[..., 2::4] / ww, max=self.scale_clamp)
        dh = torch.clamp(deltas[..., 3::4] / wh, max=self.scale_clamp)

        pred_ctr_x = dx * widths + ctr_x
        pred_ctr_y = dy * heights + ctr_y
        half_w = 0.5 * (torch.exp(dw) * widths)
        half_h = 0.5 * (torch.exp(dh) * heights)
        return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=-1)
