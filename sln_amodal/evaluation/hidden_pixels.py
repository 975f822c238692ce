"""Hidden-pixel recall and precision of matched objects, pooled over the dataset.

Over every ground truth g matched one-to-one to a detection d (the amodal matching at
``DEPTH_MATCH_IOU`` that depth order uses; crowd regions take no part), with the hidden parts
H_g = A_g \\ V_g and Ĥ_d = Â_d \\ V̂_d (visible masks clipped to their amodal masks, hidden.py):
- recall = Σ|Ĥ_d ∩ H_g| / Σ|H_g|: how much of what is really hidden the detection calls hidden;
- precision = Σ|Ĥ_d ∩ H_g| / Σ|Ĥ_d ∩ A_g|: of the pixels the detection calls hidden inside the
  ground-truth object, the share that is hidden. Predicted pixels outside A_g are errors of the
  amodal shape, which amodal AP scores, not of the layering, so they are left out.
Pixels are pooled, so a large object weighs more than a small one; unoccluded matched objects
count too (they add no hidden pixel, but whatever their detection calls hidden lowers precision).
A ratio whose denominator is 0 is -1, as depth-order accuracy without a matched pair is.
"""
from __future__ import annotations

import numpy as np

from .hidden import HiddenParts, hidden_overlaps, paired_intersections
from .metrics import UNDEFINED


def hidden_pixel_scores(gt: HiddenParts, dt: HiddenParts, gt_detection: np.ndarray) -> dict:
    """``gt_detection``: (G,) index of the detection matched to each ground truth, or -1.

    Returns {"recall", "precision", "gt_hidden" (Σ|H_g|), "predicted_hidden" (Σ|Ĥ_d ∩ A_g|),
    "correct_hidden" (Σ|Ĥ_d ∩ H_g|), "matched_objects"}.
    """
    matched = np.flatnonzero(gt_detection >= 0)
    in_gt_hidden, in_gt_amodal = hidden_overlaps(*paired_intersections(dt[gt_detection[matched]], gt[matched]))
    gt_hidden, predicted, correct = int(gt.area[matched].sum()), int(in_gt_amodal.sum()), int(in_gt_hidden.sum())
    return {
        "recall": correct / gt_hidden if gt_hidden else UNDEFINED,
        "precision": correct / predicted if predicted else UNDEFINED,
        "gt_hidden": gt_hidden,
        "predicted_hidden": predicted,
        "correct_hidden": correct,
        "matched_objects": len(matched),
    }
