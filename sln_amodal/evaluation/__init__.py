"""Amodal evaluation (SPEC section 6): a modernised amodalAPI on COCOeval's exact arithmetic."""
from .accumulate import PrecisionRecall
from .amodal_eval import AmodalEvaluator, EvaluationResult
from .detections import Detections, detections_from_results, load_results
from .plots import plot_pr_curves
from .report import format_report, write_metrics
from .subsets import (
    Subset,
    all_objects,
    gt_occluded_subset,
    invisible_subset,
    occlusion_subsets,
    vrsp_occluded_subset,
)

__all__ = [
    "AmodalEvaluator",
    "Detections",
    "EvaluationResult",
    "PrecisionRecall",
    "Subset",
    "all_objects",
    "detections_from_results",
    "format_report",
    "gt_occluded_subset",
    "invisible_subset",
    "load_results",
    "occlusion_subsets",
    "plot_pr_curves",
    "vrsp_occluded_subset",
    "write_metrics",
]
