"""The amodal evaluator (SPEC section 6): amodalAPI's protocol on COCOeval's exact arithmetic.

Against upstream amodalAPI (Python 2, one class, one annotator's regions per image):
- the visible-mask evaluation really scores visible ground truth (upstream passed
  ``useAmodalGT=2`` for "visible", which its ``if p.useAmodalGT`` still read as amodal);
- an image with ground truth but no detections, or detections for an image the ground truth lacks
  (ignored and counted when reading the results), does not crash;
- categories (COCOeval's useCats) and crowd ground truth work as in COCO;
- one IoU computation serves every occlusion bucket and things/stuff split: only ignore flags change.
Beyond amodalAPI (issue 12), the same machinery scores the hidden parts (invisible-mask AP), and
the objects matched for depth order also give the layering diagnostics: hidden-pixel recall and
precision, and what each detection of an overlapping pair shows in the overlap.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..config import CfgNode
from ..data.records import AnnotationSet
from .accumulate import PrecisionRecall, accumulate
from .depth_order_accuracy import depth_order_accuracy, ordered_pairs
from .detections import Detections
from .hidden import HiddenParts, group_hidden_ious, hidden_parts
from .hidden_pixels import hidden_pixel_scores
from .inputs import group_ious, prepare_inputs
from .matching import GreedyMatcher
from .metrics import average_precision, class_average_precision, iou_thresholds, recall_thresholds, summarize
from .overlap_visibility import overlap_visible_shares
from .subsets import (
    Subset,
    all_objects,
    gt_occluded_subset,
    invisible_subset,
    occlusion_subsets,
    vrsp_occluded_subset,
)

# metrics.json families of amodal results and the things/stuff split each one scores.
AMODAL_FAMILIES = {"amodal": "both", "amodal_things": "things", "amodal_stuff": "stuff"}
ALL_BUCKET = "all"  # the occlusion bucket that covers every object; per-class AP is read there


@dataclass
class EvaluationResult:
    metrics: dict  # the content of metrics.json
    curves: dict[str, PrecisionRecall]  # per family: precision over recall, for the plots
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray


class AmodalEvaluator:
    """Scores ``detections`` against ``ground_truth`` with the settings of config section EVAL."""

    def __init__(self, ground_truth: AnnotationSet, detections: Detections, eval_cfg: CfgNode, progress: bool = False):
        self.iou_thresholds = iou_thresholds(*eval_cfg.IOU_THRESHOLDS)
        self.recall_thresholds = recall_thresholds(eval_cfg.RECALL_POINTS)
        self.max_detections = tuple(sorted(int(n) for n in eval_cfg.MAX_DETECTIONS))
        self.buckets = {name: (float(low), float(high)) for name, (low, high) in eval_cfg.OCCLUSION_BUCKETS.items()}
        if ALL_BUCKET not in self.buckets:
            raise ValueError(f"EVAL.OCCLUSION_BUCKETS must define {ALL_BUCKET!r}, got {sorted(self.buckets)}")
        self.occluded_thresh = float(eval_cfg.OCCLUDED_THRESH)
        self.depth_match_iou = float(eval_cfg.DEPTH_MATCH_IOU)
        self.progress = progress
        self.inputs = prepare_inputs(ground_truth, detections, self.max_detections[-1], bool(eval_cfg.USE_CATS))
        self._ious: dict[str, list] = {}
        self._matchers: dict[str, GreedyMatcher] = {}

    def precision_recall(self, masks: str, subsets: list[Subset]) -> PrecisionRecall:
        """COCOeval's evaluate + accumulate on ``masks``, one subset per area range.

        ``masks``: "amodal", "visible" or "invisible" (the hidden parts, amodal minus visible).
        """
        if masks not in self._matchers:
            self._matchers[masks] = self._matcher(masks, self.iou_thresholds)
        gt_ignore = np.stack([s.gt_ignore for s in subsets])  # (S, G)
        matched_gt = self._matchers[masks].match(gt_ignore)  # (S, T, D)
        # A trailing "not ignored" column lets index -1 (unmatched) gather a harmless value.
        padded = np.concatenate([gt_ignore, np.zeros((len(subsets), 1), dtype=bool)], axis=1)
        dt_matched = matched_gt >= 0
        dt_ignored = np.where(dt_matched, padded[np.arange(len(subsets))[:, None, None], matched_gt],
                              np.stack([s.dt_ignore_unmatched for s in subsets])[:, None, :])
        inputs = self.inputs
        return accumulate(
            dt_matched, dt_ignored, inputs.dt_score, inputs.eval_category(inputs.dt_category), inputs.dt_rank,
            inputs.eval_category(inputs.gt_category), gt_ignore, inputs.num_eval_categories,
            self.max_detections, self.recall_thresholds, [s.name for s in subsets],
        )

    # The hidden parts are built once; the invisible-mask IoUs, VRSP-Net's visible fraction and the
    # layering diagnostics all read them.
    @cached_property
    def gt_hidden(self) -> HiddenParts:
        return hidden_parts(self.inputs.gt_amodal, self.inputs.gt_visible, "ground-truth hidden parts", self.progress)

    @cached_property
    def dt_hidden(self) -> HiddenParts:
        return hidden_parts(self.inputs.dt_amodal, self.inputs.dt_visible, "predicted hidden parts", self.progress)

    def matched_detections(self) -> np.ndarray:
        """(G,) the detection matched one-to-one to each ground truth, or -1: the greedy amodal
        matching at EVAL.DEPTH_MATCH_IOU over all objects, which depth order and the layering
        diagnostics score."""
        inputs = self.inputs
        matcher = self._matcher("amodal", np.array([self.depth_match_iou]))
        matched_gt = matcher.match(all_objects(inputs).gt_ignore[None])[0, 0]  # (D,)
        # A crowd region is matched by many detections and belongs to no pair: leave it out
        # (index -1, unmatched, reads the appended entry).
        one_to_one = (matched_gt >= 0) & ~np.append(inputs.gt_crowd, False)[matched_gt]
        gt_detection = np.full(len(inputs.gt_crowd), -1, dtype=np.int64)
        gt_detection[matched_gt[one_to_one]] = np.flatnonzero(one_to_one)
        return gt_detection

    def evaluate(self) -> EvaluationResult:
        inputs = self.inputs
        metrics, curves = {}, {}
        for family, split in AMODAL_FAMILIES.items():
            curves[family] = self.precision_recall("amodal", occlusion_subsets(inputs, self.buckets, split))
            metrics[family] = {name: self._summary(curves[family], s) for s, name in enumerate(curves[family].subsets)}
        curves["visible"] = self.precision_recall("visible", [all_objects(inputs)])
        metrics["visible"] = self._summary(curves["visible"], 0)
        curves["invisible"] = self.precision_recall("invisible", [invisible_subset(inputs, self.gt_hidden,
                                                                                    self.dt_hidden)])
        metrics["invisible"] = self._summary(curves["invisible"], 0)
        occluded = [vrsp_occluded_subset(inputs, self.occluded_thresh, self.dt_hidden),
                    gt_occluded_subset(inputs, self.occluded_thresh)]
        curves["occluded"] = self.precision_recall("amodal", occluded)
        metrics["occluded"] = {"vrsp_AP": average_precision(curves["occluded"], 0),
                               "gt_subset_AP": average_precision(curves["occluded"], 1)}
        gt_detection = self.matched_detections()
        pairs = ordered_pairs(inputs, self.progress)
        metrics["depth_order"] = depth_order_accuracy(inputs, pairs, gt_detection)
        metrics["hidden_pixels"] = hidden_pixel_scores(self.gt_hidden, self.dt_hidden, gt_detection)
        metrics["overlap_visible"] = overlap_visible_shares(pairs, self.gt_hidden, self.dt_hidden, gt_detection)
        if inputs.use_cats and len(inputs.category_ids) > 1:
            all_bucket = curves["amodal"].subsets.index(ALL_BUCKET)
            class_ap = class_average_precision(curves["amodal"], all_bucket)
            metrics["per_class"] = dict(zip(inputs.category_names, class_ap))
        return EvaluationResult(metrics, curves, self.iou_thresholds, self.recall_thresholds)

    def _summary(self, result: PrecisionRecall, subset: int) -> dict:
        return summarize(result, subset, self.iou_thresholds, self.max_detections)

    def _matcher(self, masks: str, thresholds: np.ndarray) -> GreedyMatcher:
        if masks not in self._ious:
            self._ious[masks] = (group_hidden_ious(self.inputs, self.gt_hidden, self.dt_hidden, self.progress)
                                 if masks == "invisible" else group_ious(self.inputs, masks, self.progress))
        return GreedyMatcher(self._ious[masks], self.inputs.groups, self.inputs.gt_crowd, thresholds,
                             len(self.inputs.dt_score))
