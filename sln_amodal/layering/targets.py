"""Layering targets of SPEC section 2: occlusion layers, the global and instance layering maps and
the sem-dist map, at image resolution and on RoI grids.

Shapes: N objects, R RoIs, K layer levels, M x M RoI grid. Layer values ``ℓ`` are 0 (visible)
.. K-1 inside an object's amodal mask and ``NO_LAYER`` outside it, so ``L = 1 + ℓ`` is 0 there.
"""
from __future__ import annotations

import collections
import math
from typing import Optional

import torch

from ..structures.pixel_counts import as_float, count_true

NO_LAYER = -1  # ℓ outside the object's amodal mask
OUTSIDE_GRID = -1  # L given to pixels beyond a grid: differs from every L (L >= 0)
DIST_SATURATION_DIVISOR = 8  # default τ = M / 8 (SPEC section 2)
LEVEL_OFFSET = 0.5  # S = K - ℓ - 0.5 + 0.5·δ: the level band (K-ℓ-0.5, K-ℓ] ...
RAMP_SPAN = 0.5  # ... filled by the distance ramp δ in (0, 1]
MAX_NUM_LAYERS = torch.iinfo(torch.int8).max  # layer maps are compared and stored as int8


def check_num_layers(num_layers: int) -> None:
    """K must leave room for the visible level and at least one hidden level, and fit in int8."""
    if not 2 <= num_layers <= MAX_NUM_LAYERS:
        raise ValueError(f"NUM_LAYERS (K) must be between 2 and {MAX_NUM_LAYERS}, got {num_layers}")


def resolve_dist_saturation(dist_saturation: Optional[float], roi_resolution: int) -> float:
    """τ from config ``MODEL.SLN.DIST_SATURATION``: None means ``ROI_RESOLUTION / 8``."""
    tau = roi_resolution / DIST_SATURATION_DIVISOR if dist_saturation is None else float(dist_saturation)
    if tau <= 0:
        raise ValueError(f"DIST_SATURATION (tau) must be positive, got {tau}")
    return tau


def occlusion_layers(
    amodal: torch.Tensor, visible: torch.Tensor, targets: torch.Tensor, in_front: torch.Tensor, num_layers: int
) -> torch.Tensor:
    """ℓ of target objects at sampled points: the one definition used at image size and on RoI grids.

    amodal:   (B, N, *points) bool, the amodal masks of all N objects sampled at B point sets.
    visible:  (B, T, *points) bool, the visible masks of the T target objects of each point set.
    targets:  (B, T) int64 object indices.
    in_front: (N, N) bool.
    Returns (B, T, *points) int64: 0 where visible, else max(1, number of objects in front of the
    target covering the point), clamped to K-1; ``NO_LAYER`` outside the target's amodal mask.
    """
    check_num_layers(num_layers)
    batch, num_targets = targets.shape
    points_shape = amodal.shape[2:]
    amodal = amodal.flatten(2)  # (B, N, P)
    visible = visible.flatten(2)  # (B, T, P)
    occluders = in_front.T[targets]  # (B, T, N): [b, t, j] = object j is in front of target t
    covering = torch.bmm(as_float(occluders), as_float(amodal))  # (B, T, P) small exact integers
    batch_index = torch.arange(batch, device=amodal.device)[:, None]
    own_amodal = amodal[batch_index, targets]  # (B, T, P)
    hidden_layer = covering.clamp(min=1, max=num_layers - 1).long()
    layers = torch.where(visible, torch.zeros_like(hidden_layer), hidden_layer)
    layers = layers.masked_fill(~own_amodal, NO_LAYER)
    return layers.reshape(batch, num_targets, *points_shape)


def occlusion_rate(amodal: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """(N,) float32 ``1 - |visible| / |amodal|`` per object from (N, H, W) bool masks, each visible
    mask within its amodal mask; 0 for an empty amodal mask."""
    amodal_area = count_true(amodal.flatten(1), dim=1)
    visible_area = count_true(visible.flatten(1), dim=1)
    return torch.where(amodal_area > 0, 1 - visible_area / amodal_area.clamp(min=1), 0).float()


def global_layering_map(amodal: torch.Tensor, num_layers: int) -> torch.Tensor:
    """G (H, W) int64 from amodal (N, H, W) bool: how many objects cover a pixel, clamped to K."""
    return count_true(amodal, dim=0).clamp(max=num_layers)


def instance_layering_maps(
    amodal: torch.Tensor, visible: torch.Tensor, in_front: torch.Tensor, num_layers: int
) -> torch.Tensor:
    """L (N, H, W) int64: 1 + ℓ_i on A_i, 0 elsewhere, from (N, H, W) bool masks."""
    num_objects = amodal.shape[0]
    targets = torch.arange(num_objects, device=amodal.device)[None]
    layers = occlusion_layers(amodal[None], visible[None], targets, in_front, num_layers)[0]
    return layers + 1


def _distance_rings(tau: float, height: int, width: int) -> list[tuple[int, list[tuple[int, int]]]]:
    """Grid offsets shorter than τ grouped by squared length: [(dy²+dx², [(dy, dx), ...]), ...].

    A pixel is never farther than ``min((H+1)//2, (W+1)//2)`` from the outside of the grid, which
    counts as a different level, so longer offsets are never needed even when τ exceeds M.
    """
    reach = min((height + 1) // 2, (width + 1) // 2, math.ceil(tau))
    rings = collections.defaultdict(list)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            length_sq = dy * dy + dx * dx
            if 0 < length_sq < tau**2 and length_sq <= reach**2:
                rings[length_sq].append((dy, dx))
    return sorted(rings.items())


def sem_dist_from_layers(layer_maps: torch.Tensor, num_layers: int, tau: float) -> torch.Tensor:
    """S (R, Mh, Mw) float32 from instance layering maps L (R, Mh, Mw) int64 (SPEC section 2).

    S = K - ℓ - 0.5 + 0.5·min(1, d/τ) where L > 0 (ℓ = L - 1), 0 elsewhere; d is the Euclidean
    distance to the nearest grid pixel with a different L, pixels beyond the grid counting as
    different. Only distances below τ change S, so only offsets shorter than τ are compared
    (padding + shifted views, all RoIs at once): exact below τ, saturated at and beyond it.
    """
    check_num_layers(num_layers)
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    _, height, width = layer_maps.shape
    rings = _distance_rings(tau, height, width)
    reach = max((max(abs(dy), abs(dx)) for _, offsets in rings for dy, dx in offsets), default=0)
    levels = layer_maps.to(torch.int8)  # narrow dtype: the shifted comparisons are the hot loop
    padded = torch.nn.functional.pad(levels, (reach, reach, reach, reach), value=OUTSIDE_GRID)
    # A squared distance whose root is at least τ: the offsets stop below τ, or, when the grid caps
    # them, every pixel finds a different level (the outside) within reach anyway.
    saturated_sq = (reach + 1) ** 2
    nearest_sq = torch.full(layer_maps.shape, saturated_sq, dtype=torch.int32, device=layer_maps.device)
    for length_sq, offsets in rings:
        differs = torch.zeros_like(levels, dtype=torch.bool)
        for dy, dx in offsets:
            differs |= padded[:, reach + dy : reach + dy + height, reach + dx : reach + dx + width] != levels
        # length_sq where the ring holds a different level, saturated_sq elsewhere (arithmetic
        # select: several times faster than torch.where on CPU).
        ring_sq = differs.int() * (length_sq - saturated_sq) + saturated_sq
        nearest_sq = torch.minimum(nearest_sq, ring_sq)
    ramp = (nearest_sq.float().sqrt() / tau).clamp(max=1)
    layers = levels.float() - 1
    sem_dist = num_layers - layers - LEVEL_OFFSET + RAMP_SPAN * ramp
    return sem_dist.masked_fill_(levels == 0, 0)


def roi_grid_pixels(
    rois: torch.Tensor, resolution: int, height: int, width: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Nearest image pixel of each RoI grid cell centre: rows (R, M), columns (R, M), int64, and
    ``inside`` (R, M, M) bool, whether the centre lies in the image.

    Cell u of a RoI spans x1 + [u, u+1)·(x2-x1)/M; its centre falls in pixel floor(x). Rows and
    columns are clamped to the image so they can index it; cells outside it are background, as
    roi_align's zero fill makes them for the head's input (an amodal mask ends at the image border).
    """
    centres = torch.arange(resolution, dtype=rois.dtype, device=rois.device) + 0.5
    x1, y1, x2, y2 = rois.unbind(dim=1)
    xs = (x1[:, None] + centres * (x2 - x1)[:, None] / resolution).floor().long()
    ys = (y1[:, None] + centres * (y2 - y1)[:, None] / resolution).floor().long()
    inside = ((ys >= 0) & (ys < height))[:, :, None] & ((xs >= 0) & (xs < width))[:, None, :]
    return ys.clamp(0, height - 1), xs.clamp(0, width - 1), inside


def roi_cover_levels(global_map: torch.Tensor, rois: torch.Tensor, resolution: int) -> torch.Tensor:
    """(R, M, M) int64: G (H, W) of the image (``global_layering_map``) at each RoI grid cell's
    centre pixel, 0 for cells outside the image.

    G counts the amodal masks over a pixel, clamped to K >= 2, so ``>= 1`` (some object) and
    ``>= 2`` (overlapped) are exact. Inside its object's amodal mask an overlapped cell is where the
    layering is decided: visible if the object is in front there, hidden if another object is.
    Outside it, a covered cell shows another object, which the RoI's map must leave out.
    """
    height, width = global_map.shape
    rows, columns, inside = roi_grid_pixels(rois, resolution, height, width)
    return torch.where(inside, global_map[rows[:, :, None], columns[:, None, :]].long(), 0)


def roi_layering_targets(
    amodal: torch.Tensor,
    visible: torch.Tensor,
    in_front: torch.Tensor,
    rois: torch.Tensor,
    gt_index: torch.Tensor,
    resolution: int,
    num_layers: int,
    tau: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Instance layering map L and sem-dist map S on the M x M grid of each RoI.

    amodal, visible: (N, H, W) bool; in_front: (N, N) bool; rois: (R, 4) float xyxy image pixels;
    gt_index: (R,) int64 object matched to each RoI. Every object's masks are sampled at the grid
    cell centres (nearest pixel), ℓ of the matched object comes from those samples, and S from L;
    cells whose centre lies outside the image are background (L = 0).
    Returns L (R, M, M) int64 and S (R, M, M) float32.
    """
    num_objects, height, width = amodal.shape
    num_rois = len(rois)
    rows, columns, inside = roi_grid_pixels(rois, resolution, height, width)
    pixels = (rows[:, :, None] * width + columns[:, None, :]).view(num_rois, resolution**2)  # flat indices
    # A gather over flattened masks is the fastest way (on CPU) to sample every object at every point.
    amodal_samples = amodal.flatten(1).gather(1, pixels.view(1, -1).expand(num_objects, -1))  # (N, R*M*M)
    amodal_samples = amodal_samples.view(num_objects, num_rois, resolution**2).transpose(0, 1)  # (R, N, M*M)
    visible_samples = visible.flatten().take(gt_index[:, None] * (height * width) + pixels)  # (R, M*M)
    layers = occlusion_layers(amodal_samples, visible_samples[:, None], gt_index[:, None], in_front, num_layers)
    layer_maps = (layers.view(num_rois, resolution, resolution) + 1) * inside
    return layer_maps, sem_dist_from_layers(layer_maps, num_layers, tau)
