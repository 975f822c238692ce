"""Decoding predicted sem-dist maps into masks, occlusion layers and depth order (SPEC section 3).

Nothing is rescaled per mask: the levels of S are absolute, so fixed thresholds read them.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from .depth_relation import depth_ranks_from_order, on_shared_pixels, pairwise_overlap_sums
from .targets import LEVEL_OFFSET, NO_LAYER, check_num_layers, occlusion_rate


PASTE_CHUNK_PIXELS = 2**22  # padded window pixels resized at once: bounds the temporary memory


@dataclass
class _AxisWindows:
    """Per box, the image pixels along one axis whose centres lie inside it, padded to the longest
    window: pixel ``first[r] + i`` for ``i < count[r]`` interpolates grid cells ``lower[r, i]`` and
    ``upper[r, i]`` with weight ``upper_weight[r, i]`` on the upper one."""

    first: torch.Tensor  # (R,) int64
    count: torch.Tensor  # (R,) int64
    lower: torch.Tensor  # (R, L) int64
    upper: torch.Tensor  # (R, L) int64
    upper_weight: torch.Tensor  # (R, L) float32


def _axis_windows(
    starts: torch.Tensor, ends: torch.Tensor, image_size: int, grid_size: int
) -> _AxisWindows:
    """Linear interpolation along one axis from each box's grid to the image pixels inside the box.

    starts, ends: (R,) float64 box edges. The pixels are those whose centres j + 0.5 lie in
    [start, end), clipped to the image. Cell centres sit at start + (u + 0.5)·(end - start)/grid_size,
    so a box covering the whole axis with grid_size == image_size maps pixel j to cell j exactly
    (weight 0 on the next cell).
    """
    first = torch.ceil(starts - 0.5).clamp(0, image_size)
    stop = torch.maximum(torch.ceil(ends - 0.5), first).clamp(max=image_size)
    count = (stop - first).long()
    length = int(count.max()) if len(count) else 0
    centres = first.float()[:, None] + torch.arange(length, dtype=torch.float32, device=starts.device) + 0.5
    extent = (ends - starts).clamp(min=torch.finfo(torch.float32).eps).float()[:, None]
    position = (centres - starts.float()[:, None]) * grid_size / extent - 0.5  # in grid cells
    # Inside the box the border cells extend to its edge instead of fading into zero, which would
    # pull border values across level boundaries of S.
    position = position.clamp(0, grid_size - 1)
    lower = position.floor()
    upper_weight = position - lower
    lower = lower.long()
    upper = (lower + 1).clamp(max=grid_size - 1)
    return _AxisWindows(first.long(), count, lower, upper, upper_weight)


@dataclass
class _PastedChunk:
    """Some boxes' maps of S resized onto the image pixels inside their boxes, padded to one window
    size (h, w); the padding holds S = 0. Box ``indices.start + i``'s window starts at image pixel
    (``tops[i]``, ``lefts[i]``) and its first ``heights[i]`` x ``widths[i]`` pixels lie inside it."""

    indices: slice  # the boxes' indices, consecutive
    resized: torch.Tensor  # (Rc, h, w) the map resized (bilinear), 0 on the padding
    tops: list[int]
    lefts: list[int]
    heights: list[int]
    widths: list[int]

    def write_into(self, output: torch.Tensor, windows: torch.Tensor) -> None:
        """Copy each box's part of ``windows`` (Rc, h, w) into its image of ``output`` (R, H, W).

        One rectangular slice per box: cheaper than a scatter of every pixel's flat index."""
        for window, box, top, left, height, width in zip(
            windows, range(self.indices.start, self.indices.stop), self.tops, self.lefts, self.heights, self.widths
        ):
            output[box, top : top + height, left : left + width] = window[:height, :width]


def _pasted_chunks(sem_dist: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> Iterator[_PastedChunk]:
    """Each map of S (R, Mh, Mw) resized (bilinear) onto the image pixels inside its box (R, 4) xyxy,
    a few boxes at a time (at most ``PASTE_CHUNK_PIXELS`` padded pixels, but always one box).

    Only the pixels inside the boxes are computed: time follows the boxes' areas, where a dense
    paste costs R full images.
    """
    num_maps, grid_height, grid_width = sem_dist.shape
    edges = boxes.detach().double()
    row_windows = _axis_windows(edges[:, 1], edges[:, 3], height, grid_height)
    column_windows = _axis_windows(edges[:, 0], edges[:, 2], width, grid_width)
    row_firsts, column_firsts = row_windows.first.tolist(), column_windows.first.tolist()
    row_counts, column_counts = row_windows.count.tolist(), column_windows.count.tolist()
    begin = 0
    while begin < num_maps:
        end, rows, columns = begin + 1, row_counts[begin], column_counts[begin]
        while end < num_maps:
            wider_rows, wider_columns = max(rows, row_counts[end]), max(columns, column_counts[end])
            if (end + 1 - begin) * wider_rows * wider_columns > PASTE_CHUNK_PIXELS:
                break
            end, rows, columns = end + 1, wider_rows, wider_columns
        indices = slice(begin, end)
        resized = _resized_windows(sem_dist, indices, row_windows, column_windows, rows, columns)
        yield _PastedChunk(indices, resized, row_firsts[begin:end], column_firsts[begin:end],
                           row_counts[begin:end], column_counts[begin:end])
        begin = end


def _resized_windows(sem_dist: torch.Tensor, indices: slice, row_windows: _AxisWindows,
                     column_windows: _AxisWindows, rows: int, columns: int) -> torch.Tensor:
    """(Rc, rows, columns): the maps of the boxes ``indices`` resized onto their windows, cut to
    ``rows`` x ``columns``, 0 on each window's padding."""
    grids = sem_dist[indices]  # (Rc, Mh, Mw)
    row_lower, row_upper = row_windows.lower[indices, :rows], row_windows.upper[indices, :rows]
    row_weight = row_windows.upper_weight[indices, :rows].to(grids.dtype)
    column_lower, column_upper = column_windows.lower[indices, :columns], column_windows.upper[indices, :columns]
    column_weight = column_windows.upper_weight[indices, :columns].to(grids.dtype)
    rows_of = (-1, -1, grids.shape[-1])
    resized_rows = torch.lerp(  # (Rc, h, Mw)
        grids.gather(1, row_lower[..., None].expand(rows_of)),
        grids.gather(1, row_upper[..., None].expand(rows_of)),
        row_weight[..., None],
    )
    spread = (-1, rows, -1)
    resized = torch.lerp(
        resized_rows.gather(2, column_lower[:, None, :].expand(spread)),
        resized_rows.gather(2, column_upper[:, None, :].expand(spread)),
        column_weight[:, None, :],
    )  # (Rc, h, w)
    inside = ((torch.arange(rows, device=grids.device) < row_windows.count[indices, None])[:, :, None]
              & (torch.arange(columns, device=grids.device) < column_windows.count[indices, None])[:, None, :])
    return resized.masked_fill(~inside, 0)


def paste_sem_dist(sem_dist: torch.Tensor, boxes: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize each map of S (R, Mh, Mw) to its box (R, 4) xyxy and place it in an (R, H, W) image.

    Bilinear inside the box, 0 outside it. A full-image box with an H x W grid is the identity.
    """
    pasted = sem_dist.new_zeros((len(sem_dist), height, width))
    for chunk in _pasted_chunks(sem_dist, boxes, height, width):
        chunk.write_into(pasted, chunk.resized)
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
    amodal, layers = on_shared_pixels(amodal, layers)
    layer_sums = pairwise_overlap_sums(layers.clamp(min=0), amodal)  # [a, b]: ℓ̂_a over O
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
    # The layers say everything: amodal where a layer is set, visible on layer 0 (``decode_sem_dist``),
    # so one image-size map is written per box and the masks are read off it.
    layers = torch.full((num_detections, height, width), NO_LAYER, dtype=torch.int8, device=device)
    occlude_rate = torch.zeros(num_detections, device=device)
    for chunk in _pasted_chunks(sem_dist, boxes, height, width):
        # The padding holds S = 0: outside every mask, so the occlusion rates count the box alone.
        decoded = decode_sem_dist(chunk.resized, num_layers, amodal_thresh=amodal_thresh, visible_margin=visible_margin)
        chunk.write_into(layers, decoded["layers"])
        occlude_rate[chunk.indices] = decoded["occlude_rate"]
    amodal = layers != NO_LAYER
    in_front = pairwise_order_from_layers(amodal, layers)
    return {
        "amodal": amodal,
        "visible": layers == 0,
        "occlude_rate": occlude_rate,
        "depth_rank": depth_ranks_from_order(in_front, scores),
        "in_front": in_front,
    }
