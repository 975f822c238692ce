"""Decoding predicted sem-dist maps into masks, occlusion layers and depth order (SPEC section 3).

Nothing is rescaled per mask: the levels of S are absolute, so fixed thresholds read them.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from .depth_relation import depth_ranks_from_order, pairwise_overlap_sums
from .targets import LEVEL_OFFSET, NO_LAYER, check_num_layers, occlusion_rate


def _axis_interpolation(
    start: float, end: float, image_size: int, grid_size: int, device: torch.device
) -> tuple[slice, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Linear interpolation along one axis from a box's grid to the image pixels inside the box.

    The pixels are those whose centres j + 0.5 lie in [start, end), clipped to the image. Returns
    their slice and, per pixel, the lower and upper grid cells and the weight of the upper cell.
    Cell centres sit at start + (u + 0.5)·(end - start)/grid_size, so a box covering the whole
    axis with grid_size == image_size maps pixel j to cell j exactly (weight 0 on the next cell).
    """
    first = min(max(math.ceil(start - 0.5), 0), image_size)
    stop = min(max(math.ceil(end - 0.5), first), image_size)
    centres = torch.arange(first, stop, dtype=torch.float32, device=device) + 0.5
    extent = max(end - start, torch.finfo(torch.float32).eps)
    position = (centres - start) * grid_size / extent - 0.5  # in grid cells
    # Inside the box the border cells extend to its edge instead of fading into zero, which would
    # pull border values across level boundaries of S.
    position = position.clamp(0, grid_size - 1)
    lower = position.floor()
    upper_weight = position - lower
    lower = lower.long()
    upper = (lower + 1).clamp(max=grid_size - 1)
    return slice(first, stop), lower, upper, upper_weight


def _pasted_windows(
    sem_dist: torch.Tensor, boxes: torch.Tensor, height: int, width: int
) -> Iterator[tuple[int, slice, slice, torch.Tensor]]:
    """For each map of S (R, Mh, Mw) and box (R, 4) xyxy: its index, the rows and columns of the
    image pixels inside the box, and the map resized (bilinear) onto those pixels.

    Only the pixels inside each box are computed: a loop over boxes costs the boxes' areas, where a
    batched paste costs R full images.
    """
    _, grid_height, grid_width = sem_dist.shape
    for index, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        rows, row_lower, row_upper, row_weight = _axis_interpolation(y1, y2, height, grid_height, sem_dist.device)
        columns, col_lower, col_upper, col_weight = _axis_interpolation(x1, x2, width, grid_width, sem_dist.device)
        grid = sem_dist[index]
        row_weight, col_weight = row_weight.to(grid.dtype), col_weight.to(grid.dtype)
        resized_rows = torch.lerp(grid[row_lower], grid[row_upper], row_weight[:, None])  # (h, Mw)
        resized = torch.lerp(resized_rows[:, col_lower], resized_rows[:, col_upper], col_weight)  # (h, w)
        yield index, rows, columns, resized


def paste_sem_dist(sem_dist: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize each map of S (R, Mh, Mw) to its box (R, 4) xyxy and place it in an (R, H, W) image.

    Bilinear inside the box, 0 outside it. A full-image box with an H x W grid is the identity.
    """
    pasted = sem_dist.new_zeros((len(sem_dist), height, width))
    for index, rows, columns, resized in _pasted_windows(sem_dist, boxes, height, width):
        pasted[index, rows, columns] = resized
    return pasted


def decode_sem_dist(
    sem_dist: torch.Tensor, num_layers: int, *, amodal_thresh: float, visible_margin: float
) -> dict[str, torch.Tensor]:
    """Masks and layers from pasted sem-dist maps S (R, H, W).

    Returns ``amodal`` (R, H, W) bool (S >= amodal_thresh), ``visible`` (R, H, W) bool
    (S >= K - visible_margin, within amodal), ``layers`` (R, H, W) int8: ℓ̂ = K - λ with
    λ = clamp(round(S), 1, K-1) on the hidden part, 0 on the visible part, ``NO_LAYER`` (-1)
    outside the amodal mask (int8 keeps image-size stacks small; K is tiny), and ``occlude_rate``
    (R,) float32 = 1 - |visible| / |amodal| (0 for an empty mask). Rounding is half-up, so with the
    default thresholds λ >= 1 exactly on the amodal mask and λ = K exactly on the visible one.
    """
    check_num_layers(num_layers)
    if amodal_thresh <= 0:
        raise ValueError(f"AMODAL_THRESH must be positive (S is 0 on the background), got {amodal_thresh}")
    amodal = sem_dist >= amodal_thresh
    visible = (sem_dist >= num_layers - visible_margin) & amodal
    level = (sem_dist + LEVEL_OFFSET).floor().clamp(1, num_layers - 1)
    hidden_layers = (num_layers - level).to(torch.int8)
    layers = torch.where(amodal, hidden_layers, torch.full_like(hidden_layers, NO_LAYER))
    layers.masked_fill_(visible, 0)
    return {"amodal": amodal, "visible": visible, "layers": layers, "occlude_rate": occlusion_rate(amodal, visible)}


def pairwise_order_from_layers(amodal: torch.Tensor, layers: torch.Tensor) -> torch.Tensor:
    """``in_front`` (R, R) bool: a is in front of b iff their amodal masks (R, H, W) overlap in O
    and the mean of ℓ̂_a over O is below that of ℓ̂_b. Both means share the divisor |O|, so the
    exact sums are compared; a non-empty difference implies a non-empty O."""
    layer_sums = pairwise_overlap_sums(layers.clamp(min=0).flatten(1), amodal.flatten(1))  # [a, b]: ℓ̂_a over O
    return layer_sums < layer_sums.T


def decode_detections(
    sem_dist: torch.Tensor,
    boxes: torch.Tensor,
    scores: torch.Tensor,
    height: int,
    width: int,
    num_layers: int,
    *,
    amodal_thresh: float,
    visible_margin: float,
) -> dict[str, torch.Tensor]:
    """Per-image outputs of the sem-dist head: S (R, M, M), boxes (R, 4) xyxy, scores (R,).

    Returns ``amodal``/``visible`` (R, H, W) bool, ``occlude_rate`` (R,) float32, ``depth_rank``
    (R,) int64 (1 = front-most, cycles broken by score) and ``in_front`` (R, R) bool. Each map is
    decoded on the pixels of its box only (outside it S is 0: no mask, no layer).
    """
    num_detections = len(sem_dist)
    device = sem_dist.device
    amodal = torch.zeros((num_detections, height, width), dtype=torch.bool, device=device)
    visible = torch.zeros_like(amodal)
    layers = torch.full(amodal.shape, NO_LAYER, dtype=torch.int8, device=device)
    occlude_rate = torch.zeros(num_detections, device=device)
    for index, rows, columns, resized in _pasted_windows(sem_dist, boxes, height, width):
        decoded = decode_sem_dist(
            resized[None], num_layers, amodal_thresh=amodal_thresh, visible_margin=visible_margin
        )
        amodal[index, rows, columns] = decoded["amodal"][0]
        visible[index, rows, columns] = decoded["visible"][0]
        layers[index, rows, columns] = decoded["layers"][0]
        occlude_rate[index] = decoded["occlude_rate"][0]
    in_front = pairwise_order_from_layers(amodal, layers)
    return {
        "amodal": amodal,
        "visible": visible,
        "occlude_rate": occlude_rate,
        "depth_rank": depth_ranks_from_order(in_front, scores),
        "in_front": in_front,
    }
