"""Network input and output geometry: normalise, resize (eval), pad into a batch; map detections
back to the original image and paste RoI-grid maps into it.

Training images arrive already resized (and flipped) by the data pipeline, so the training path
only normalises and pads. The eval path resizes as torchvision's ``GeneralizedRCNNTransform``: the
short side to ``min_size`` unless the long side would exceed ``max_size``, bilinear.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.transforms import resized_size

# RoI-grid maps get one zero pixel on each side before pasting, so a pasted mask fades to zero at
# its box border instead of ending in a hard edge (torchvision's and Detectron's convention).
PASTE_PADDING = 1


def _interpolation_weights(starts: Tensor, lengths: Tensor, grid_size: int, image_extent: int) -> Tensor:
    """Linear-interpolation weights that stretch a grid of ``grid_size`` cells over ``lengths``
    pixels starting at pixel ``starts`` along one image axis (``F.interpolate``'s bilinear rule,
    align_corners=False). Returns (R, image_extent, grid_size); rows outside the span are zero.
    """
    pixels = torch.arange(image_extent, device=starts.device)
    offsets = pixels[None, :] - starts[:, None]  # (R, E) position inside the stretched grid
    inside = (offsets >= 0) & (offsets < lengths[:, None])
    scale = grid_size / lengths.to(torch.float32)
    source = ((offsets.to(torch.float32) + 0.5) * scale[:, None] - 0.5).clamp(min=0)
    lower = source.floor().to(torch.int64).clamp(max=grid_size - 1)
    upper = (lower + 1).clamp(max=grid_size - 1)
    upper_weight = (source - lower) * inside
    lower_weight = (1 - (source - lower)) * inside
    weights = torch.zeros(len(starts), image_extent, grid_size, device=starts.device)
    weights.scatter_add_(2, lower[..., None], lower_weight[..., None])
    weights.scatter_add_(2, upper[..., None], upper_weight[..., None])
    return weights


def paste_masks_in_image(maps: Tensor, boxes: Tensor, image_size: Sequence[int]) -> Tensor:
    """Paste RoI-grid maps (R, K, M, M) into boxes (R, 4) xyxy of an image (H, W) -> (R, K, H, W).

    Same geometry as torchvision's ``paste_masks_in_image``: pad the map by one zero pixel, grow
    the box by the same fraction, round the box to integer pixels (toward zero), resize the map
    bilinearly to the box and place it; zero elsewhere. Done for all RoIs at once as two batched
    matrix products with sparse interpolation weights instead of one resize per RoI.
    """
    height, width = int(image_size[0]), int(image_size[1])
    num_rois, channels, grid_h, grid_w = maps.shape
    if num_rois == 0:
        return maps.new_zeros((0, channels, height, width))
    padded = F.pad(maps, (PASTE_PADDING,) * 4)
    grow_x = (grid_w + 2 * PASTE_PADDING) / grid_w
    grow_y = (grid_h + 2 * PASTE_PADDING) / grid_h
    half_w = (boxes[:, 2] - boxes[:, 0]) * 0.5 * grow_x
    half_h = (boxes[:, 3] - boxes[:, 1]) * 0.5 * grow_y
    center_x = (boxes[:, 2] + boxes[:, 0]) * 0.5
    center_y = (boxes[:, 3] + boxes[:, 1]) * 0.5
    x0, x1 = (center_x - half_w).to(torch.int64), (center_x + half_w).to(torch.int64)
    y0, y1 = (center_y - half_h).to(torch.int64), (center_y + half_h).to(torch.int64)
    # The resized map covers pixels x0..x1 inclusive (at least one pixel).
    columns = _interpolation_weights(x0, (x1 - x0 + 1).clamp(min=1), padded.shape[-1], width)  # (R, W, Mw)
    rows = _interpolation_weights(y0, (y1 - y0 + 1).clamp(min=1), padded.shape[-2], height)  # (R, H, Mh)
    stretched_x = padded @ columns.to(maps.dtype).transpose(1, 2)[:, None]  # (R, K, Mh, W)
    return rows.to(maps.dtype)[:, None] @ stretched_x


class ImageTransform(nn.Module):
    """``forward(images) -> (batch (N, 3, H, W), image_sizes)``; ``postprocess`` maps results back.

    Args:
        pixel_mean, pixel_std: per-channel statistics of 0..1 RGB input.
        min_size_test, max_size_test: eval resizing (short side, cap on the long side).
        size_divisibility: the padded batch's height and width are multiples of this.
    """

    def __init__(
        self,
        pixel_mean: Sequence[float],
        pixel_std: Sequence[float],
        min_size_test: int,
        max_size_test: int,
        size_divisibility: int,
    ):
        super().__init__()
        # Buffers follow the model across devices; they are config, not weights, so not saved.
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), persistent=False)
        self.min_size_test = min_size_test
        self.max_size_test = max_size_test
        self.size_divisibility = size_divisibility

    def forward(self, images: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        prepared = []
        for index, image in enumerate(images):
            if image.dim() != 3 or image.shape[0] != len(self.pixel_mean) or not image.is_floating_point():
                raise ValueError(
                    f"images[{index}]: expected a float (3, H, W) RGB tensor in [0, 1], "
                    f"got {tuple(image.shape)} {image.dtype}"
                )
            image = (image - self.pixel_mean) / self.pixel_std
            if not self.training:
                image = self.resize(image)
            prepared.append(image)
        image_sizes = [(int(image.shape[-2]), int(image.shape[-1])) for image in prepared]
        return self.batch(prepared), image_sizes

    def resize(self, image: Tensor) -> Tensor:
        size = resized_size(*image.shape[-2:], self.min_size_test, self.max_size_test)
        return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]

    def batch(self, images: list[Tensor]) -> Tensor:
        """Zero-pad (after normalisation, so padding is the mean colour) into (N, 3, H, W)."""
        stride = self.size_divisibility
        height = math.ceil(max(image.shape[-2] for image in images) / stride) * stride
        width = math.ceil(max(image.shape[-1] for image in images) / stride) * stride
        batch = images[0].new_zeros((len(images), images[0].shape[0], height, width))
        for slot, image in zip(batch, images):
            slot[:, : image.shape[-2], : image.shape[-1]].copy_(image)
        return batch

    def postprocess(
        self,
        detections: list[dict[str, Tensor]],
        image_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
        pasted_fields: tuple[str, ...] = (),
    ) -> list[dict[str, Tensor]]:
        """Rescale boxes to the original images; paste the ``pasted_fields``, (R, K, M, M) RoI maps, into them."""
        results = []
        for detection, size, original in zip(detections, image_sizes, original_sizes):
            device = detection["boxes"].device
            ratio_hw = torch.tensor(original, dtype=torch.float32, device=device) / torch.tensor(
                size, dtype=torch.float32, device=device
            )
            boxes = detection["boxes"] * ratio_hw[[1, 0, 1, 0]]
            result = {
                key: paste_masks_in_image(value, boxes, original) if key in pasted_fields else value
                for key, value in detection.items()
            }
            result["boxes"] = boxes
            results.append(result)
        return results
