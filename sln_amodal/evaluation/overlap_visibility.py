"""Which object the detections show where two ground-truth objects overlap.

Over the ordered ground-truth pairs that depth-order accuracy counts (overlapping, non-crowd,
relation known: ``depth_order.ordered_pairs``) whose two objects were both matched, with the
ground-truth overlap O = A_front ∩ A_back: the share of O that the front object's detection calls
visible and the share the back object's detection calls visible (visible masks clipped to their
amodal masks, as in hidden.py). Right layering shows the front object there: front 1, back 0.
Shares are pixel-weighted over pairs, Σ|V̂_front ∩ O| / Σ|O| and likewise for the back, and -1
when no pair was matched (every counted pair overlaps, so Σ|O| > 0 otherwise).
"""
from __future__ import annotations

import numpy as np

from ..structures.masks import rle_areas, rle_intersection, rle_intersection_areas
from .depth_order_accuracy import OrderedPairs
from .hidden import HiddenParts
from .metrics import UNDEFINED


def overlap_visible_shares(pairs: OrderedPairs, gt: HiddenParts, dt: HiddenParts, gt_detection: np.ndarray) -> dict:
    """``gt_detection``: (G,) index of the detection matched to each ground truth, or -1.

    Returns {"front", "back", "pairs" (matched pairs), "overlap_pixels" (Σ|O|)}.
    """
    both, det_front, det_back = pairs.matched(gt_detection)
    overlaps = [rle_intersection(gt.amodal[front], gt.amodal[back]) for front, back in
                zip(pairs.front[both], pairs.back[both])]
    overlap_pixels = int(rle_areas(overlaps).sum())
    shown = {side: int(rle_intersection_areas([dt.visible[d] for d in detections], overlaps).sum())
             for side, detections in (("front", det_front), ("back", det_back))}
    return {
        "front": shown["front"] / overlap_pixels if overlap_pixels else UNDEFINED,
        "back": shown["back"] / overlap_pixels if overlap_pixels else UNDEFINED,
        "pairs": len(both),
        "overlap_pixels": overlap_pixels,
    }
