"""The evaluator against pycocotools' COCOeval on randomised scenes: identical arrays, not close ones.

Every subset is reproduced in COCOeval through its area field, as amodalAPI and VRSP-Net do:
the ground truth's ``area`` carries the quantity a subset filters on and ``params.areaRng`` the
range. COCOeval also ignores an *unmatched detection* whose area is outside the range; our
occlusion buckets never do (a detection has no ground-truth occlusion rate), so there the
detections' area is NaN, which fails both of COCOeval's range tests and is never ignored.
"""

import numpy as np
import pytest

from sln_amodal.config import get_default_config
from sln_amodal.data.records import AnnotationSet, DropLog, ImageRecord
from sln_amodal.evaluation import (
    AmodalEvaluator,
    all_objects,
    detections_from_results,
    gt_occluded_subset,
    occlusion_subsets,
    vrsp_occluded_subset,
)
from sln_amodal.structures.masks import decode_rle
from cocoeval_scenes import (
    CATEGORY_IDS,
    HEIGHT,
    WIDTH,
    ground_truth_object,
    result_entry,
    assert_identical,
    cocoeval_arrays,
    make_evaluator,
    random_scene,
)

OUTSIDE = 2.0  # an area no range in [0, 1] contains: the ground truth is ignored


@pytest.mark.parametrize("seed, use_cats, max_detections", [
    (0, True, (1, 10, 100)),
    (1, True, (1, 2, 3)),  # the limits cut detections of busy images
    (2, False, (1, 10, 100)),
    (3, False, (1, 3, 5)),
])
def test_occlusion_buckets_equal_cocoeval(seed, use_cats, max_detections):
    annotations, results = random_scene(seed)
    evaluator = make_evaluator(annotations, results, USE_CATS=use_cats, MAX_DETECTIONS=max_detections)
    buckets = evaluator.buckets
    ours = evaluator.precision_recall("amodal", occlusion_subsets(evaluator.inputs, buckets, "both"))
    assert ours.subsets == ["all", "none", "partial", "heavy"]
    precision, recall = cocoeval_arrays(annotations, results, lambda ann: ann["occlude_rate"], buckets.values(),
                                        use_cats=use_cats, max_detections=max_detections)
    assert_identical(ours, precision, recall)
    assert (precision[0, :, :, 0, -1] > 0).any()  # a meaningful scene, not all misses


@pytest.mark.parametrize("split", ["things", "stuff"])
def test_things_and_stuff_equal_cocoeval(split):
    annotations, results = random_scene(4)
    evaluator = make_evaluator(annotations, results)
    ours = evaluator.precision_recall("amodal", occlusion_subsets(evaluator.inputs, evaluator.buckets, split))
    wanted = split == "stuff"
    precision, recall = cocoeval_arrays(
        annotations, results, lambda ann: ann["occlude_rate"] if bool(ann["is_stuff"]) == wanted else OUTSIDE,
        evaluator.buckets.values())
    assert_identical(ours, precision, recall)


def test_visible_masks_equal_cocoeval():
    annotations, results = random_scene(5)
    evaluator = make_evaluator(annotations, results)
    ours = evaluator.precision_recall("visible", [all_objects(evaluator.inputs)])
    precision, recall = cocoeval_arrays(annotations, results, lambda ann: 0.5, [(0.0, 1.0)], visible=True)
    assert_identical(ours, precision, recall)


def test_occluded_subsets_equal_cocoeval():
    annotations, results = random_scene(6)
    evaluator = make_evaluator(annotations, results)
    thresh = evaluator.occluded_thresh
    ours = evaluator.precision_recall("amodal", [vrsp_occluded_subset(evaluator.inputs, thresh, evaluator.dt_hidden),
                                                 gt_occluded_subset(evaluator.inputs, thresh)])

    def predicted_visible_fraction(det):  # VRSP-Net: sum(amodal * visible) / sum(amodal)
        amodal, visible = decode_rle(det["segmentation"]), decode_rle(det["visible_segmentation"])
        return (amodal & visible).sum() / amodal.sum() if amodal.any() else float("nan")

    vrsp_precision, vrsp_recall = cocoeval_arrays(annotations, results, lambda ann: 1.0 - ann["occlude_rate"],
                                                  [(0.0, 1.0 - thresh)], dt_area=predicted_visible_fraction)
    subset_precision, subset_recall = cocoeval_arrays(
        annotations, results, lambda ann: 1.0 if ann["occlude_rate"] > thresh else OUTSIDE, [(0.0, 1.0)])
    assert_identical(ours, np.concatenate([vrsp_precision, subset_precision], axis=3),
                     np.concatenate([vrsp_recall, subset_recall], axis=2))
    # The two definitions differ on this scene: unmatched detections are filtered only by VRSP-Net.
    assert not np.array_equal(vrsp_precision, subset_precision)


def test_equal_ious_go_to_the_later_ground_truth_as_in_cocoeval():
    """A detection covering two ground truths equally (IoU exactly 0.5 each) takes the later one,
    which leaves the earlier one to a second detection: two true positives at IoU 0.5."""
    left, right, both = (np.zeros((HEIGHT, WIDTH), dtype=bool) for _ in range(3))
    left[:10, :10] = right[:10, 10:20] = both[:10, :20] = True
    rng = np.random.default_rng(0)
    objects = [ground_truth_object(rng, mask, mask, CATEGORY_IDS[0]) for mask in (left, right)]
    annotations = AnnotationSet([{"id": CATEGORY_IDS[0], "name": "box"}],
                                [ImageRecord("a.jpg", HEIGHT, WIDTH, 1, objects)])
    results = [dict(result_entry(1, CATEGORY_IDS[0], rng, both, both), score=0.9),
               dict(result_entry(1, CATEGORY_IDS[0], rng, left, left), score=0.8)]
    evaluator = AmodalEvaluator(annotations, detections_from_results(results, annotations, DropLog("r")),
                                get_default_config().EVAL)
    ours = evaluator.precision_recall("amodal", [all_objects(evaluator.inputs)])
    precision, recall = cocoeval_arrays(annotations, results, lambda ann: 0.5, [(0.0, 1.0)])
    assert_identical(ours, precision, recall)
    assert np.all(ours.precision[0, :, 0, 0, -1] == 1.0) and ours.recall[0, 0, 0, -1] == 1.0
