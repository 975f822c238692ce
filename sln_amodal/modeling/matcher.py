"""Assign each predicted box (anchor or proposal) to at most one ground-truth box by IoU."""
from __future__ import annotations

import torch
from torch import Tensor


class Matcher:
    """Match predictions to ground truth from a (G, P) quality matrix (IoU of GT g and prediction p).

    A prediction whose best IoU is >= ``high_threshold`` matches that GT; below ``low_threshold`` it
    is background (``BELOW_LOW_THRESHOLD``); in between it is ignored (``BETWEEN_THRESHOLDS``).
    With ``allow_low_quality_matches`` every GT also keeps the predictions that overlap it best
    (ties included), even below the threshold, so no GT is left without a positive (the RPN's rule).
    """

    BELOW_LOW_THRESHOLD = -1
    BETWEEN_THRESHOLDS = -2

    def __init__(self, high_threshold: float, low_threshold: float, allow_low_quality_matches: bool):
        if low_threshold > high_threshold:
            raise ValueError(f"low IoU threshold {low_threshold} exceeds the high threshold {high_threshold}")
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.allow_low_quality_matches = allow_low_quality_matches

    def __call__(self, quality: Tensor) -> Tensor:
        """(G, P) quality, G >= 1 -> (P,) int64: matched GT index, or one of the two negative codes."""
        if quality.shape[0] == 0:
            raise ValueError("matching needs at least one ground-truth box")
        best_quality, best_gt = quality.max(dim=0)
        matches = best_gt.clone()
        matches[best_quality < self.low_threshold] = self.BELOW_LOW_THRESHOLD
        matches[(best_quality >= self.low_threshold) & (best_quality < self.high_threshold)] = self.BETWEEN_THRESHOLDS
        if self.allow_low_quality_matches:
            best_per_gt = quality.max(dim=1).values
            low_quality = torch.where(quality == best_per_gt[:, None])[1]
            matches[low_quality] = best_gt[low_quality]
        return matches
