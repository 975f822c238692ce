"""The SLN branch's debug pictures: its sem-dist maps on the RoI grid, colour-mapped, each beside
the target of the object its detection found (training) or alone (``amodal_test.py``).

Pictures are (H, W, 3) uint8 arrays, ready for PNG files or TensorBoard.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib import colormaps
from torch import Tensor
from torchvision.ops import box_iou

from ...layering import resolve_depth_order, roi_layering_targets
from ...numbers import UINT8_MAX
from .roi_masks import scale_boxes

# Sem-dist pictures: a fixed colour scale from 0 (background) to K (visible level), never rescaled
# per map, so equal colours mean equal levels across maps and steps.
SEM_DIST_COLORMAP = "viridis"
SEM_DIST_GRID_COLUMNS = 8  # RoI tiles per row
MAP_GAP = 1  # pixels between the predicted and the target map of one RoI
TILE_GAP = 4  # pixels between RoIs: wider, so the pairs stand apart
GAP_COLOUR = (UINT8_MAX, UINT8_MAX, UINT8_MAX)


def matched_sem_dist_maps(
    detections: dict[str, Tensor],
    target: dict,
    num_layers: int,
    dist_saturation: float,
    max_rois: int,
    match_iou: float,
    roi_scale: float,
) -> tuple[Tensor, Tensor]:
    """Predicted and target sem-dist maps (R, M, M) of up to ``max_rois`` detections, best score
    first, whose box overlaps a ground-truth box at IoU >= ``match_iou``.

    detections: one image's model output (``boxes``, ``scores``, ``sem_dist`` (D, M, M)); target:
    that image's ground truth (data contract) in the same pixels. The target map is built on the
    detection's own RoI grid from the best-overlapping object (SPEC section 2), with the sem-dist
    ramp ``dist_saturation`` (tau, resolved), on each box scaled by ``roi_scale`` as the branch's RoIs are.
    """
    boxes, scores, predicted = detections["boxes"].cpu(), detections["scores"].cpu(), detections["sem_dist"].cpu()
    resolution = predicted.shape[-1]
    if len(boxes) == 0 or len(target["boxes"]) == 0:
        empty = predicted.new_zeros((0, resolution, resolution))
        return empty, empty
    best_iou, matched = box_iou(boxes, target["boxes"].cpu()).max(dim=1)
    keep = torch.where(best_iou >= match_iou)[0]
    keep = keep[scores[keep].argsort(descending=True)[:max_rois]]
    amodal, visible = target["amodal_masks"].cpu().bool(), target["visible_masks"].cpu().bool()
    in_front = resolve_depth_order(amodal, visible, target["depth_rank"].cpu(), target["depth_constraints"].cpu())
    _, expected = roi_layering_targets(
        amodal, visible, in_front, scale_boxes(boxes[keep], roi_scale), matched[keep], resolution, num_layers,
        dist_saturation,
    )
    return predicted[keep], expected


def sem_dist_picture(predicted, target, num_layers: int) -> np.ndarray:
    """Sem-dist maps (R, M, M) as a grid of colour-mapped tiles, each the predicted map beside its
    target (unless ``target`` is None), on the fixed scale 0..``num_layers``. Returns uint8 (H, W, 3)."""
    maps = [torch.as_tensor(predicted).detach().cpu().float().numpy()]
    if target is not None:
        maps.append(torch.as_tensor(target).detach().cpu().float().numpy())
        if maps[1].shape != maps[0].shape:
            raise ValueError(f"target maps {maps[1].shape} differ from the predicted ones {maps[0].shape}")
    count, grid_h, grid_w = maps[0].shape
    colormap = colormaps[SEM_DIST_COLORMAP]
    coloured = [colormap(np.clip(m / num_layers, 0.0, 1.0))[..., :3] * UINT8_MAX for m in maps]  # (R, M, M, 3)
    tile_w = len(maps) * grid_w + (len(maps) - 1) * MAP_GAP
    columns = min(max(count, 1), SEM_DIST_GRID_COLUMNS)
    rows = max(math.ceil(count / columns), 1)
    picture = np.empty((rows * (grid_h + TILE_GAP) - TILE_GAP, columns * (tile_w + TILE_GAP) - TILE_GAP, 3),
                       dtype=np.uint8)
    picture[:] = GAP_COLOUR
    for index in range(count):
        top = (index // columns) * (grid_h + TILE_GAP)
        left = (index % columns) * (tile_w + TILE_GAP)
        for position, tiles in enumerate(coloured):
            x = left + position * (grid_w + MAP_GAP)
            picture[top:top + grid_h, x:x + grid_w] = tiles[index].round()
    return picture
