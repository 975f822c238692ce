"""Depth-order accuracy over overlapping ground-truth pairs whose objects were both detected.

For every pair of non-crowd ground truths in an image whose amodal masks overlap, the true
relation comes from ``depth_rank`` (both known and different), else from the image's
``depth_constraints``, else from the visible masks: the object with more visible pixels in the
overlap of the two amodal masks is in front (a tie leaves the pair unordered and uncounted).
These ordered pairs are found once (``ordered_pairs``) and also serve the overlap-visibility
metric. A pair counts as matched when both ground truths were matched (the greedy amodal
matching at ``DEPTH_MATCH_IOU``); the predicted relation applies the same visible-pixel rule to
the two detections' masks, and a tie there is a wrong answer.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..structures.masks import rle_intersection, rle_intersection_areas, rle_pairwise_intersection_areas
from .inputs import EvalInputs


@dataclass
class OrderedPairs:
    """Overlapping non-crowd ground-truth pairs whose depth relation is known, front object first."""

    front: np.ndarray  # (P,) ground-truth index
    back: np.ndarray  # (P,) ground-truth index

    def __len__(self) -> int:
        return len(self.front)

    def matched(self, gt_detection: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The pairs whose two objects were both matched: (pair indices, front detections, back detections)."""
        det_front, det_back = gt_detection[self.front], gt_detection[self.back]
        both = np.flatnonzero((det_front >= 0) & (det_back >= 0))
        return both, det_front[both], det_back[both]


def ordered_pairs(inputs: EvalInputs, progress: bool = False) -> OrderedPairs:
    front, back = [], []
    image_starts = np.searchsorted(inputs.gt_image, np.arange(len(inputs.records) + 1))
    for i in tqdm(range(len(inputs.records)), desc="ordered ground-truth pairs", unit="image", disable=not progress):
        members = np.arange(image_starts[i], image_starts[i + 1])
        members = members[~inputs.gt_crowd[members]]
        if len(members) < 2:
            continue
        relation = _ground_truth_relation(inputs, i, members)  # (n, n) +1: row in front of column
        row_first, column_first = np.nonzero(relation > 0)
        front.append(members[row_first])
        back.append(members[column_first])
    none = np.zeros(0, dtype=np.int64)  # so that an image set without pairs still concatenates
    return OrderedPairs(np.concatenate([none, *front]), np.concatenate([none, *back]))


def depth_order_accuracy(inputs: EvalInputs, pairs: OrderedPairs, gt_detection: np.ndarray) -> dict:
    """``gt_detection``: (G,) index of the detection matched to each ground truth, or -1.

    Returns {"accuracy" (-1 when no pair was matched), "pairs", "matched_pairs"}.
    """
    _, det_front, det_back = pairs.matched(gt_detection)
    correct = sum(_predicted_relation(inputs, front, back) == 1 for front, back in zip(det_front, det_back))
    return {
        "accuracy": correct / len(det_front) if len(det_front) else -1.0,
        "pairs": len(pairs),
        "matched_pairs": len(det_front),
    }


def _ground_truth_relation(inputs: EvalInputs, image: int, members: np.ndarray) -> np.ndarray:
    """(n, n) sign matrix: +1 where row object is in front of column object, 0 = unordered/apart."""
    amodal = [inputs.gt_amodal[g] for g in members]
    visible = [inputs.gt_visible[g] for g in members]
    overlaps = np.asarray(mask_utils.iou(amodal, amodal, np.zeros(len(members), dtype=np.uint8))) > 0
    visible_in_other = rle_pairwise_intersection_areas(visible, amodal)  # [i, j] = |V_i & A_j|
    by_masks = np.sign(visible_in_other - visible_in_other.T)

    rank = inputs.gt_depth_rank[members]
    ranked = (rank[:, None] > 0) & (rank[None, :] > 0)
    by_rank = np.where(ranked, np.sign(rank[None, :] - rank[:, None]), 0)

    slot_of_object = {obj: n for n, obj in enumerate(inputs.gt_object[members])}
    constrained = np.zeros((len(members),) * 2, dtype=np.int64)
    for front, back in inputs.records[image].depth_constraints:
        if front in slot_of_object and back in slot_of_object:
            constrained[slot_of_object[front], slot_of_object[back]] = 1
    by_constraint = constrained - constrained.T  # contradicting constraints cancel

    relation = np.where(by_rank != 0, by_rank, np.where(by_constraint != 0, by_constraint, by_masks))
    return np.where(overlaps, relation, 0).astype(np.int64)


def _predicted_relation(inputs: EvalInputs, det_a: int, det_b: int) -> int:
    """+1 if detection a shows more visible pixels than b where their amodal masks overlap."""
    overlap = rle_intersection(inputs.dt_amodal[det_a], inputs.dt_amodal[det_b])
    visible_a, visible_b = rle_intersection_areas([inputs.dt_visible[det_a], inputs.dt_visible[det_b]], [overlap] * 2)
    return int(np.sign(visible_a - visible_b))
