"""Pictures of amodal predictions: overlays on the image (a mask branch draws its own RoI-grid
pictures, ``MaskBranch.debug_pictures``).

They take tensors or arrays and return (H, W, 3) uint8 arrays, ready for PNG files or
TensorBoard's ``add_image(..., dataformats="HWC")``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch
from matplotlib.colors import hsv_to_rgb
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw, ImageFont
from torchvision.ops import nms

from ..config import CfgNode, get_default_config
from ..numbers import GOLDEN_RATIO_CONJUGATE, UINT8_MAX
from ..structures.masks import resize_mask
from ..modeling.mask_branches import OUTPUT_FIELDS
from .inference import check_output_fields

# Object colours: hues GOLDEN_RATIO_CONJUGATE apart (numbers.py),
# saturated and bright so they show on photos and under black label text backgrounds.
COLOUR_SATURATION = 0.85
COLOUR_VALUE = 0.95
LABEL_PADDING = 1  # pixels around a label's text inside its black box
LABEL_BACKGROUND = (0, 0, 0)
UNKNOWN_RANK_TEXT = "?"  # a depth rank of 0 means unknown


@dataclass(frozen=True)
class OverlayStyle:
    """How ``draw_overlay`` paints; built from the ``VIS`` config section by ``overlay_style``."""

    fill_alpha: float
    hatch_spacing: int
    hatch_width: int
    outline_width: int
    colour_seed: int


def overlay_style(cfg: CfgNode) -> OverlayStyle:
    v = cfg.VIS
    return OverlayStyle(v.FILL_ALPHA, v.HATCH_SPACING, v.HATCH_WIDTH, v.OUTLINE_WIDTH, v.COLOUR_SEED)


def object_colours(count: int, seed: int) -> np.ndarray:
    """(count, 3) float RGB in [0, 1], the same sequence for the same seed."""
    offset = np.random.default_rng(seed).random()
    hues = (offset + np.arange(count) * GOLDEN_RATIO_CONJUGATE) % 1.0
    hsv = np.stack([hues, np.full(count, COLOUR_SATURATION), np.full(count, COLOUR_VALUE)], axis=1)
    return hsv_to_rgb(hsv)


def ranks_among_drawn(depth_ranks: np.ndarray) -> np.ndarray:
    """Depth ranks (1 = front-most, 0 unknown) renumbered 1, 2, ... among the given objects alone,
    keeping their order and ties: a picture's "#1" is the front-most object it shows."""
    ranks = np.asarray(depth_ranks, dtype=np.int64)
    known = ranks > 0
    renumbered = np.zeros_like(ranks)
    renumbered[known] = np.unique(ranks[known], return_inverse=True)[1] + 1
    return renumbered


def detections_to_draw(output: dict, score_thresh: float, duplicate_iou: Optional[float] = None) -> np.ndarray:
    """Indices, in output order, of the detections a picture shows: those scoring at least
    ``score_thresh`` and, with ``duplicate_iou``, not overlapping a higher-scoring shown one at a box
    IoU above it (class-agnostic NMS over what per-class NMS left)."""
    scores = torch.as_tensor(_as_numpy(output["scores"]), dtype=torch.float32)
    keep = torch.nonzero(scores >= score_thresh).flatten()
    if duplicate_iou is not None and len(keep) > 1:
        boxes = torch.as_tensor(_as_numpy(output["boxes"]), dtype=torch.float32)[keep]
        keep = keep[nms(boxes, scores[keep], duplicate_iou)].sort().values
    return keep.numpy()


def draw_overlay(
    image,
    output: dict,
    score_thresh: float,
    class_names: Optional[Sequence[str]] = None,
    style: Optional[OverlayStyle] = None,
    resize_masks: bool = False,
    duplicate_iou: Optional[float] = None,
) -> np.ndarray:
    """Paint one image's detections scoring at least ``score_thresh`` onto it (with
    ``duplicate_iou``, one per object: see ``detections_to_draw``).

    Per object, in its own colour and painted back to front (largest depth rank first): the visible
    region filled (alpha blend), the hidden region (amodal minus visible) hatched with diagonal
    lines, both the hidden region and the amodal mask outlined, and a label "#rank name score" at
    the top-left corner of the box, the rank counted among the objects drawn. ``image`` is
    (H, W, 3) uint8, or float in [0, 1]; ``output`` holds the model's per-image fields (tensors or
    arrays) in the same pixels; ``class_names[i - 1]``
    names label i (the label number when None); ``style`` defaults to the ``VIS`` defaults. With
    ``resize_masks`` the masks may be at a smaller working resolution (the boxes still in image
    pixels): each drawn object's are resized to the image's in turn (``resize_mask``), so only one
    object's full-size masks exist at a time. Returns (H, W, 3) uint8.
    """
    style = style or overlay_style(get_default_config())
    canvas = _as_uint8_image(image).astype(np.float32)
    height, width = canvas.shape[:2]
    check_output_fields(output, "the overlay")
    for name in ("amodal_masks", "visible_masks"):
        if tuple(output[name].shape[1:]) != (height, width) and not resize_masks:
            raise ValueError(f"{name} {tuple(output[name].shape[1:])} do not match the image's size {(height, width)}")
    keep = detections_to_draw(output, score_thresh, duplicate_iou)
    fields = {name: _rows(output[name], keep) for name in OUTPUT_FIELDS}
    colours = object_colours(len(keep), style.colour_seed) * UINT8_MAX
    ranks = ranks_among_drawn(fields["depth_rank"])
    # Back to front: unknown ranks (0) go to the back, rank 1 is painted last.
    painting_order = np.argsort(-np.where(ranks > 0, ranks, np.iinfo(np.int64).max), kind="stable")
    hatch_lines = _diagonal_lines(height, width, style.hatch_spacing, style.hatch_width)
    for index in painting_order:
        colour = colours[index]
        amodal = resize_mask(fields["amodal_masks"][index], (height, width))
        visible = resize_mask(fields["visible_masks"][index], (height, width)) & amodal
        hidden = amodal & ~visible
        canvas[visible] = (1 - style.fill_alpha) * canvas[visible] + style.fill_alpha * colour
        canvas[(hidden & hatch_lines) | _inner_outline(hidden, style.outline_width)
               | _inner_outline(amodal, style.outline_width)] = colour

    picture = Image.fromarray(canvas.round().astype(np.uint8))
    draw = ImageDraw.Draw(picture)
    font = ImageFont.load_default()
    for index in painting_order:
        label = int(fields["labels"][index])
        name = class_names[label - 1] if class_names is not None else str(label)
        rank = int(ranks[index])
        text = f"#{rank if rank > 0 else UNKNOWN_RANK_TEXT} {name} {fields['scores'][index]:.2f}"
        _draw_label(draw, font, text, fields["boxes"][index], tuple(int(c) for c in colours[index].round()), width)
    return np.array(picture)


def _draw_label(draw: ImageDraw.ImageDraw, font, text: str, box: np.ndarray, colour: tuple, image_width: int) -> None:
    """Text in the object's colour on a black box just above the box's top-left corner (inside the
    image: below the corner when there is no room above, shifted left at the right edge)."""
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    text_w, text_h = right - left + 2 * LABEL_PADDING, bottom - top + 2 * LABEL_PADDING
    x = min(max(int(box[0]), 0), max(image_width - text_w, 0))
    y = int(box[1]) - text_h
    if y < 0:
        y = max(int(box[1]), 0)
    draw.rectangle((x, y, x + text_w - 1, y + text_h - 1), fill=LABEL_BACKGROUND)
    draw.text((x + LABEL_PADDING - left, y + LABEL_PADDING - top), text, fill=colour, font=font)


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _rows(value, rows: np.ndarray) -> np.ndarray:
    """``value[rows]`` as an array; a tensor is indexed where it lives, so only those rows leave the device."""
    if isinstance(value, torch.Tensor):
        return _as_numpy(value[torch.as_tensor(rows, device=value.device)])
    return np.asarray(value)[rows]


def _as_uint8_image(image) -> np.ndarray:
    """(H, W, 3) uint8, or float in [0, 1] -> (H, W, 3) uint8."""
    array = _as_numpy(image)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {array.shape}")
    if array.dtype == np.uint8:
        return array
    return (np.clip(array.astype(np.float32), 0.0, 1.0) * UINT8_MAX).round().astype(np.uint8)


def _diagonal_lines(height: int, width: int, spacing: int, line_width: int) -> np.ndarray:
    """(H, W) bool: lines along the anti-diagonal, ``line_width`` pixels thick every ``spacing`` pixels."""
    return (np.arange(height)[:, None] + np.arange(width)[None, :]) % spacing < line_width


def _inner_outline(mask: np.ndarray, line_width: int) -> np.ndarray:
    """The pixels of ``mask`` within ``line_width`` pixels (square neighbourhood) of its outside;
    beyond the image border counts as outside."""
    if line_width < 1 or not mask.any():
        return np.zeros_like(mask)
    padded = np.pad(mask, line_width, constant_values=False)
    window = 2 * line_width + 1
    eroded = sliding_window_view(padded, (window, window)).all(axis=(-2, -1))
    return mask & ~eroded
