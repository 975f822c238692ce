"""Depth-order accuracy over overlapping ground-truth pairs whose objects were both detected.

For every pair of non-crowd ground truths in an image whose amodal masks overlap, the true
relation comes from ``depth_rank`` (both known and different), else from the image's
``depth_constraints``, else from the visible masks: the object with more visible pixels in the
overlap of the two amodal masks is in front (a tie leaves the pair unordered and uncounted).
A pair counts as matched when both ground truths were matched (the greedy amodal matching at
``DEPTH_MATCH_IOU``); the predicted relation applies the same visible-pixel rule to the two
detections' masks, and a tie there is a wrong answer.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..structures.masks import rle_areas, rle_intersection, rle_intersection_areas
from .inputs import EvalInputs


def depth_order_accuracy(inputs: EvalInputs, gt_detection: np.ndarray, progress: bool = False) -> dict:
    """``gt_detection``: (G,) index of the detection matched to each ground truth, or -1.

    Returns {"accuracy" (-1 when no pair was matched), "pairs", "matched_pairs"}.
    """
    pairs = matched_pairs = correct = 0
    image_starts = np.searchsorted(inputs.gt_image, np.arange(len(inputs.records) + 1))
    for i in tqdm(range(len(inputs.records)), desc="depth order", unit="image", disable=not progress):
        members = np.arange(image_starts[i], image_starts[i + 1])
        members = members[~inputs.gt_crowd[members]]
        if len(members) < 2:
            continue
        relation = _ground_truth_relation(inputs, i, members)  # (n, n) +1: row in front of column
        first, second = np.nonzero(np.triu(relation != 0, k=1))
        pairs += len(first)
        for slot_a, slot_b in zip(first, second):
            det_a, det_b = gt_detection[members[slot_a]], gt_detection[members[slot_b]]
            if det_a < 0 or det_b < 0:
                continue
            matched_pairs += 1
            correct += int(_predicted_relation(inputs, det_a, det_b) == relation[slot_a, slot_b])
    return {
        "accuracy": correct / matched_pairs if matched_pairs else -1.0,
        "pairs": pairs,
        "matched_pairs": matched_pairs,
    }


def _ground_truth_relation(inputs: EvalInputs, image: int, members: np.ndarray) -> np.ndarray:
    """(n, n) sign matrix: +1 where row object is in front of column object, 0 = unordered/apart."""
    amodal = [inputs.gt_amodal[g] for g in members]
    visible = [inputs.gt_visible[g] for g in members]
    overlaps = np.asarray(mask_utils.iou(amodal, amodal, np.zeros(len(members), dtype=np.uint8))) > 0
    # Crowd-style IoU divides the intersection by the first mask's area: scale it back to pixels
    # (an empty visible mask, fully hidden object, has no such share and nothing visible).
    visible_share = np.asarray(mask_utils.iou(visible, amodal, np.ones(len(members), dtype=np.uint8)))
    visible_area = rle_areas(visible)[:, None]
    visible_in_other = np.rint(np.where(visible_area > 0, visible_share, 0.0) * visible_area)  # [i, j] = |V_i & A_j|
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
