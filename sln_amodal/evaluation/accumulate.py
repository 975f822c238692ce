"""COCOeval.accumulate: precision at fixed recall points and final recall, from matched detections.

Per category and max-detections setting, the detections of all images are ranked by score (ties in
image, then in-image order: COCOeval's stable mergesort over images concatenated in id order);
true and false positives (ignored detections are neither) are cumulated and the interpolated
precision (the best precision at this recall or beyond) is read at each recall point. The
arithmetic follows COCOeval operation by operation, so the numbers are identical, not just close.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PrecisionRecall:
    """COCOeval's ``eval`` arrays, with its area-range axis holding evaluation subsets instead."""

    subsets: list[str]
    precision: np.ndarray  # (T, R, K, S, M); -1 where a subset has no counted ground truth
    recall: np.ndarray  # (T, K, S, M); -1 likewise


def accumulate(
    dt_matched: np.ndarray,
    dt_ignored: np.ndarray,
    dt_score: np.ndarray,
    dt_category: np.ndarray,
    dt_rank: np.ndarray,
    gt_category: np.ndarray,
    gt_ignore: np.ndarray,
    num_categories: int,
    max_detections: tuple[int, ...],
    recall_thresholds: np.ndarray,
    subsets: list[str],
) -> PrecisionRecall:
    """``dt_matched``/``dt_ignored``: (S, T, D) bool; ``gt_ignore``: (S, G) bool.

    ``dt_rank`` is a detection's position in its group (image and category), which decides whether
    it is within each max-detections limit.
    """
    num_subsets, num_thresholds = dt_matched.shape[:2]
    shape = (num_thresholds, len(recall_thresholds), num_categories, num_subsets, len(max_detections))
    precision = -np.ones(shape)
    recall = -np.ones((num_thresholds, num_categories, num_subsets, len(max_detections)))
    for k in range(num_categories):
        detections = np.flatnonzero(dt_category == k)
        by_score = detections[np.argsort(-dt_score[detections], kind="stable")]
        num_positives = ((gt_category == k)[None, :] & ~gt_ignore).sum(axis=1)  # (S,)
        for m, limit in enumerate(max_detections):
            ranked = by_score[dt_rank[by_score] < limit]
            for s in np.flatnonzero(num_positives):
                matched, ignored = dt_matched[s][:, ranked], dt_ignored[s][:, ranked]
                precision[:, :, k, s, m], recall[:, k, s, m] = _precision_at_recalls(
                    matched & ~ignored, ~matched & ~ignored, num_positives[s], recall_thresholds)
    return PrecisionRecall(subsets=list(subsets), precision=precision, recall=recall)


def _precision_at_recalls(true_pos: np.ndarray, false_pos: np.ndarray, num_positives: int,
                          recall_thresholds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, N) bool flags in score order -> precision at each recall point (T, R), final recall (T,)."""
    num_thresholds, num_dets = true_pos.shape
    if num_dets == 0:
        return np.zeros((num_thresholds, len(recall_thresholds))), np.zeros(num_thresholds)
    tp = np.cumsum(true_pos, axis=1).astype(np.float64)
    fp = np.cumsum(false_pos, axis=1).astype(np.float64)
    rc = tp / num_positives
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
    at = np.stack([np.searchsorted(r, recall_thresholds, side="left") for r in rc])  # (T, R)
    q = np.where(at < num_dets, np.take_along_axis(pr, np.minimum(at, num_dets - 1), axis=1), 0.0)
    return q, rc[:, -1]
