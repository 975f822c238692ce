"""Hand-made cases with known answers: bucket edges, missing and stray detections, perfect
detections, visible versus amodal masks, VRSP-Net's occluded rule, depth order."""
import json

import numpy as np
import pytest

from sln_amodal.config import get_default_config
from sln_amodal.data.records import AnnotationError, DropLog
from sln_amodal.evaluation import AmodalEvaluator, detections_from_results, load_results, occlusion_subsets
from sln_amodal.evaluation.detections import UNKNOWN_IMAGE_COUNT
from sln_amodal.structures.masks import encode_mask, rle_areas, rle_intersection_areas
from hand_built_cases import HEIGHT, WIDTH, box, det, evaluate, gt, scene

RECALL_POINTS = get_default_config().EVAL.RECALL_POINTS
HALF_RECALL_AP = 51 / RECALL_POINTS  # precision 1 at recall 0, .01, ..., .50 and 0 beyond


A, B, C = box(0, 0, 10, 10), box(12, 12, 24, 24), box(0, 30, 8, 46)


def test_bucket_edges_are_inclusive_on_both_sides():
    annotations = scene({1: [gt(A, occlude_rate=0.0), gt(B, occlude_rate=1e-5), gt(C, occlude_rate=0.25)]})
    detections = detections_from_results([det(1, A), det(1, B), det(1, C)], annotations, DropLog("r"))
    evaluator = AmodalEvaluator(annotations, detections, get_default_config().EVAL)
    ignored = {s.name: s.gt_ignore.tolist() for s in occlusion_subsets(evaluator.inputs, evaluator.buckets, "both")}
    assert ignored == {"all": [False, False, False], "none": [False, False, True],
                       "partial": [True, False, False], "heavy": [True, True, False]}


def test_detections_of_ignored_ground_truth_are_ignored_but_strays_are_not():
    annotations = scene({1: [gt(A, occlude_rate=0.0), gt(B, occlude_rate=1e-5), gt(C, occlude_rate=0.25)]})
    metrics = evaluate(annotations, [det(1, A, score=0.9), det(1, C, score=0.7)])  # B is missed
    assert metrics["amodal"]["none"]["AP"] == pytest.approx(HALF_RECALL_AP)  # A found, B missed
    assert metrics["amodal"]["partial"]["AP"] == pytest.approx(HALF_RECALL_AP)  # C found (after A, ignored)
    assert metrics["amodal"]["heavy"]["AP"] == pytest.approx(1.0)  # only C counts; A's detection is ignored
    stray = evaluate(annotations, [det(1, box(25, 0, 32, 8), score=0.95), det(1, C, score=0.7)])
    assert stray["amodal"]["heavy"]["AP"] == pytest.approx(0.5)  # an unmatched detection always counts


def test_image_without_detections_and_detection_on_unknown_image():
    annotations = scene({1: [gt(A)], 2: [gt(B)]})
    log = DropLog("results.json")
    metrics = evaluate(annotations, [det(1, A), det(77, B)], log)
    assert log.counts[UNKNOWN_IMAGE_COUNT] == 1
    assert metrics["amodal"]["all"]["AP"] == pytest.approx(HALF_RECALL_AP)
    assert metrics["amodal"]["all"]["AR100"] == 0.5


def test_perfect_detections_score_one_everywhere_defined():
    occluder = box(0, 5, 10, 10)
    annotations = scene(
        {1: [gt(A, A & ~occluder, depth_rank=2), gt(occluder, depth_rank=1, category_id=2)], 2: [gt(B, category_id=2)]},
        categories=({"id": 1, "name": "cup"}, {"id": 2, "name": "box"}),
    )
    results = [det(1, A, A & ~occluder, category_id=1), det(1, occluder, category_id=2), det(2, B, category_id=2)]
    metrics = evaluate(annotations, results)
    # Precision is tp / (tp + fp + eps) as in COCOeval, so a perfect AP is 1 - 2e-16.
    assert metrics["amodal"]["all"] == pytest.approx({"AP": 1, "AP50": 1, "AP75": 1, "AR1": 1, "AR10": 1, "AR100": 1})
    assert metrics["amodal"]["heavy"]["AP"] == pytest.approx(1.0)  # A is half hidden
    assert metrics["amodal"]["partial"]["AP"] == -1.0  # nothing occluded up to 25%
    assert metrics["amodal_things"] == metrics["amodal"]
    assert all(value == -1.0 for bucket in metrics["amodal_stuff"].values() for value in bucket.values())
    assert metrics["visible"]["AP"] == pytest.approx(1.0)
    assert metrics["occluded"] == pytest.approx({"vrsp_AP": 1.0, "gt_subset_AP": 1.0})
    assert metrics["depth_order"] == {"accuracy": 1.0, "pairs": 1, "matched_pairs": 1}
    assert metrics["invisible"]["AP"] == pytest.approx(1.0)  # A's hidden half, the only occluded object
    assert metrics["hidden_pixels"] == {"recall": 1.0, "precision": 1.0, "gt_hidden": 50, "predicted_hidden": 50,
                                        "correct_hidden": 50, "matched_objects": 3}
    assert metrics["overlap_visible"] == {"front": 1.0, "back": 0.0, "pairs": 1, "overlap_pixels": 50}
    assert metrics["per_class"] == pytest.approx({"cup": 1.0, "box": 1.0})


def test_visible_ap_scores_visible_masks():
    amodal, visible = box(0, 0, 20, 20), box(0, 0, 20, 6)  # amodal and visible IoU 0.3
    annotations = scene({1: [gt(amodal, visible)]})
    right_visible = evaluate(annotations, [det(1, amodal, visible)])
    assert right_visible["amodal"]["all"]["AP"] == pytest.approx(1.0)
    assert right_visible["visible"]["AP"] == pytest.approx(1.0)
    # Reporting the amodal mask as visible is right for amodal AP only.
    amodal_as_visible = evaluate(annotations, [det(1, amodal, amodal)])
    assert amodal_as_visible["amodal"]["all"]["AP"] == pytest.approx(1.0)
    assert amodal_as_visible["visible"]["AP"] == 0.0


def test_vrsp_occluded_leaves_out_unmatched_detections_that_look_unoccluded():
    hidden = box(0, 0, 10, 5)
    annotations = scene({1: [gt(A, A & ~hidden)]})  # 50% occluded
    stray = box(20, 20, 30, 30)
    looks_visible = evaluate(annotations, [det(1, stray, score=0.9), det(1, A, A & ~hidden, score=0.5)])
    assert looks_visible["occluded"] == pytest.approx({"vrsp_AP": 1.0, "gt_subset_AP": 0.5})
    looks_occluded = evaluate(annotations, [det(1, stray, stray & ~box(20, 20, 30, 25), score=0.9),
                                            det(1, A, A & ~hidden, score=0.5)])
    assert looks_occluded["occluded"] == pytest.approx({"vrsp_AP": 0.5, "gt_subset_AP": 0.5})


def test_depth_order_three_of_four_matched_pairs_right():
    front, back = box(0, 0, 12, 12), box(6, 6, 20, 20)
    back_visible = back & ~front
    pair = [gt(front, depth_rank=1), gt(back, back_visible, depth_rank=2)]
    unranked = [gt(front), gt(back, back_visible)]
    annotations = scene({
        1: pair,  # truth from depth_rank
        2: ([gt(back, back_visible), gt(front)], [(1, 0)]),  # truth from a constraint: object 1 is in front
        3: unranked,  # truth from the visible masks
        4: pair,  # predicted the wrong way round
        5: pair,  # the back object is not detected: not a matched pair
        6: [gt(box(0, 0, 5, 5)), gt(box(20, 20, 30, 30))],  # apart: not a pair
    })
    results = [d for image_id in (1, 2, 3)
               for d in (det(image_id, front, score=0.9), det(image_id, back, back_visible, score=0.8))]
    results += [det(4, front, front & ~back, score=0.9), det(4, back, back, score=0.8), det(5, front)]
    metrics = evaluate(annotations, results)
    assert metrics["depth_order"] == {"accuracy": 0.75, "pairs": 5, "matched_pairs": 4}


def test_bad_detections_are_dropped_and_counted_or_raise_in_strict_mode(tmp_path):
    annotations = scene({1: [gt(A)]})
    no_visible = {k: v for k, v in det(1, A).items() if k != "visible_segmentation"}
    wrong_size = dict(det(1, A), segmentation=encode_mask(np.ones((4, 4), dtype=bool)))
    results = [det(1, A), no_visible, wrong_size, dict(det(1, A), category_id=3), dict(det(1, A), score=None)]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    log = DropLog(str(path))
    detections = load_results(str(path), annotations, log=log)
    assert len(detections) == 1
    assert sum(log.dropped.values()) == 4
    assert any("visible_segmentation: missing" in reason for reason in log.dropped)
    with pytest.raises(AnnotationError, match=r"results\.json detection 1: visible_segmentation: missing"):
        load_results(str(path), annotations, strict=True)
    path.write_text(json.dumps({"annotations": results}))
    with pytest.raises(AnnotationError, match="JSON list"):
        load_results(str(path), annotations)


def test_many_areas_and_intersections_at_once():
    """The batched helpers the evaluator uses; pycocotools' own area() fails past 255 masks."""
    masks = np.random.default_rng(0).random((300, HEIGHT, WIDTH)) < 0.5
    rles = [encode_mask(m) for m in masks]
    np.testing.assert_array_equal(rle_areas(rles), masks.sum(axis=(1, 2)))
    overlaps = (masks[:-1] & masks[1:]).sum(axis=(1, 2))
    np.testing.assert_array_equal(rle_intersection_areas(rles[:-1], rles[1:]), overlaps)
