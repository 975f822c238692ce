"""COCO summary numbers (AP, AP50, AP75, AR@n) from accumulated precision and recall.

As in COCOeval.summarize, a mean skips the -1 entries (categories or subsets without counted
ground truth) and is -1 itself when nothing is left. AP is taken at the largest max-detections
setting, as amodalAPI does (COCOeval fixes 100, the same for the default (1, 10, 100)).
"""
from __future__ import annotations

import numpy as np

from .accumulate import PrecisionRecall

UNDEFINED = -1.0
SUMMARY_IOUS = {"AP50": 0.5, "AP75": 0.75}  # the single-threshold APs, named by their IoU


def iou_thresholds(first: float, last: float, step: float) -> np.ndarray:
    """COCOeval's linspace construction, so each threshold is the same float as COCOeval's."""
    return np.linspace(first, last, int(np.round((last - first) / step)) + 1, endpoint=True)


def recall_thresholds(num_points: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, num_points, endpoint=True)


def mean_defined(values: np.ndarray) -> float:
    defined = values[values > UNDEFINED]
    return float(np.mean(defined)) if defined.size else UNDEFINED


def summarize(result: PrecisionRecall, subset: int, ious: np.ndarray, max_detections: tuple[int, ...]) -> dict:
    """{"AP", "AP50", "AP75", "AR<n>" for each max-detections n} of one subset."""
    precision = result.precision[..., subset, -1]  # (T, R, K)
    summary = {"AP": mean_defined(precision)}
    for name, iou in SUMMARY_IOUS.items():
        summary[name] = mean_defined(precision[np.isclose(ious, iou)])
    for m, limit in enumerate(max_detections):
        summary[f"AR{limit}"] = mean_defined(result.recall[:, :, subset, m])
    return summary


def average_precision(result: PrecisionRecall, subset: int) -> float:
    return mean_defined(result.precision[..., subset, -1])


def class_average_precision(result: PrecisionRecall, subset: int) -> list[float]:
    """AP of each category (index k of the precision array)."""
    precision = result.precision[..., subset, -1]
    return [mean_defined(precision[:, :, k]) for k in range(precision.shape[2])]
