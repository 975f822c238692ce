"""The layering metrics of issue 12: invisible-mask AP, hidden-pixel recall and precision, and the
share of a matched pair's overlap each detection calls visible.

Invisible-mask AP is checked against pycocotools' COCOeval run on explicitly built hidden masks
(amodal minus visible) with the hidden pixel count as the area and [1, inf) as the range, which
is how COCOeval ignores unoccluded ground truth and detections that predict no hidden part. The
pixel metrics are checked against a direct numpy computation on decoded masks, and on hand-built
rectangles with known answers.
"""
import dataclasses

import numpy as np
import pytest

from sln_amodal.data.records import AnnotationSet, ImageRecord, ObjectAnnotation
from sln_amodal.evaluation import format_report
from sln_amodal.structures.masks import decode_rle, encode_mask, mask_to_bbox, rle_area
from cocoeval_scenes import (
    UNKNOWN_IMAGE_ID,
    assert_identical,
    cocoeval_arrays,
    make_evaluator,
    random_scene,
    result_entry,
)
from hand_built_cases import HEIGHT, WIDTH, box, det, evaluate, gt, scene

CATEGORY_IDS = (1, 3)
EVERY_AREA = (1, 1e10)  # COCOeval's range for "has a hidden part": at least one pixel
UNDEFINED = -1.0


def _rectangle(rng):
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    y, x = rng.integers(0, HEIGHT - 6), rng.integers(0, WIDTH - 6)
    mask[y:y + rng.integers(6, 20), x:x + rng.integers(6, 26)] = True
    return mask


def _shifted(rng, mask):
    """The mask moved by up to two pixels each way (what leaves the image is lost)."""
    dy, dx = rng.integers(-2, 3, 2)
    moved = np.zeros_like(mask)
    ys, xs = np.nonzero(mask)
    keep = (ys + dy >= 0) & (ys + dy < HEIGHT) & (xs + dx >= 0) & (xs + dx < WIDTH)
    moved[ys[keep] + dy, xs[keep] + dx] = True
    return moved


def _predicted_visible(rng, amodal, gt_visible):
    """One of: right, all visible (no hidden part), spilling outside the amodal mask, random."""
    kind = rng.integers(4)
    noise = rng.random((HEIGHT, WIDTH)) < 0.2
    return [amodal & gt_visible, amodal, (amodal & gt_visible) | noise, amodal & ~noise][kind]


def layered_scene(seed, num_images=20):
    """Rectangles painted front to back (visible = amodal minus what is in front), ranked in half of
    the images; noisy detections with every kind of predicted visible mask, false positives, crowd
    regions, tied scores, and one detection of an image the ground truth lacks."""
    rng = np.random.default_rng(seed)
    records, results = [], []
    for image_id in range(1, num_images + 1):
        ranked = bool(rng.random() < 0.5)
        in_front = np.zeros((HEIGHT, WIDTH), dtype=bool)
        objects = []
        for rank in range(1, rng.integers(0, 7) + 1):
            amodal = _rectangle(rng)
            visible = amodal & ~in_front
            in_front |= amodal
            category_id = int(rng.choice(CATEGORY_IDS))
            objects.append(ObjectAnnotation(
                category_id, encode_mask(amodal), encode_mask(visible), tuple(mask_to_bbox(amodal)),
                1.0 - visible.sum() / amodal.sum(), depth_rank=rank if ranked else None,
                iscrowd=bool(rng.random() < 0.08)))
            for _ in range(rng.integers(0, 3)):
                det_amodal = _shifted(rng, amodal)
                results.append(result_entry(image_id, category_id, rng, det_amodal,
                                       _predicted_visible(rng, det_amodal, visible)))
        for _ in range(rng.integers(0, 3)):  # false positives
            det_amodal = _rectangle(rng)
            results.append(result_entry(image_id, int(rng.choice(CATEGORY_IDS)), rng, det_amodal,
                                   _predicted_visible(rng, det_amodal, _rectangle(rng))))
        records.append(ImageRecord(f"{image_id}.jpg", HEIGHT, WIDTH, image_id, objects))
    results.append(result_entry(UNKNOWN_IMAGE_ID, CATEGORY_IDS[0], rng, _rectangle(rng), _rectangle(rng)))
    categories = [{"id": c, "name": f"class {c}"} for c in CATEGORY_IDS]
    return AnnotationSet(categories, records), results


def _hidden(amodal_rle, visible_rle):
    return decode_rle(amodal_rle) & ~decode_rle(visible_rle)


def hidden_masks_scene(annotations, results):
    """The scene with every amodal mask replaced by its hidden part, explicitly built."""
    records = [dataclasses.replace(record, objects=[
        dataclasses.replace(obj, amodal=encode_mask(_hidden(obj.amodal, obj.visible))) for obj in record.objects])
        for record in annotations.records]
    hidden_results = [dict(d, segmentation=encode_mask(_hidden(d["segmentation"], d["visible_segmentation"])))
                      for d in results]
    return AnnotationSet(annotations.categories, records), hidden_results


@pytest.mark.parametrize("make_scene, seed, use_cats, max_detections", [
    (random_scene, 0, True, (1, 10, 100)),
    (random_scene, 2, False, (1, 3, 5)),
    (layered_scene, 0, True, (1, 10, 100)),
    (layered_scene, 1, False, (1, 2, 3)),
])
def test_invisible_ap_equals_cocoeval_on_hidden_masks(make_scene, seed, use_cats, max_detections):
    annotations, results = make_scene(seed)
    evaluator = make_evaluator(annotations, results, USE_CATS=use_cats, MAX_DETECTIONS=max_detections)
    ours = evaluator.evaluate().curves["invisible"]
    hidden_annotations, hidden_results = hidden_masks_scene(annotations, results)
    precision, recall = cocoeval_arrays(hidden_annotations, hidden_results, lambda ann: ann["area"], [EVERY_AREA],
                                        dt_area=lambda d: rle_area(d["segmentation"]), use_cats=use_cats,
                                        max_detections=max_detections)
    assert_identical(ours, precision, recall)
    assert (precision[0, :, :, 0, -1] > 0).any()  # some hidden part was found


def reference_matched_objects(evaluator):
    """(ground truth, detection) index pairs of the matching the layering metrics use."""
    gt_detection = evaluator.matched_detections()
    matched = np.flatnonzero(gt_detection >= 0)
    return list(zip(matched, gt_detection[matched]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hidden_pixels_equal_numpy(seed):
    annotations, results = layered_scene(seed)
    evaluator = make_evaluator(annotations, results)
    inputs = evaluator.inputs
    gt_hidden = predicted = correct = 0
    for g, d in reference_matched_objects(evaluator):
        truth, claimed = _hidden(inputs.gt_amodal[g], inputs.gt_visible[g]), _hidden(inputs.dt_amodal[d],
                                                                                     inputs.dt_visible[d])
        gt_hidden += truth.sum()
        predicted += (claimed & decode_rle(inputs.gt_amodal[g])).sum()
        correct += (claimed & truth).sum()
    hidden = evaluator.evaluate().metrics["hidden_pixels"]
    assert hidden == {"recall": correct / gt_hidden, "precision": correct / predicted, "gt_hidden": gt_hidden,
                      "predicted_hidden": predicted, "correct_hidden": correct,
                      "matched_objects": len(reference_matched_objects(evaluator))}
    assert 0 < hidden["recall"] < 1 and 0 < hidden["precision"] < 1  # the scene exercises both errors


def reference_ordered_pairs(inputs):
    """(front, back) ground-truth pairs, straight from the definition: overlapping, not crowd, front by
    depth rank when both are ranked, else by more visible pixels in the overlap (ties unordered)."""
    pairs = []
    for image in range(len(inputs.records)):
        members = [g for g in np.flatnonzero(inputs.gt_image == image) if not inputs.gt_crowd[g]]
        for n, a in enumerate(members):
            for b in members[n + 1:]:
                overlap = decode_rle(inputs.gt_amodal[a]) & decode_rle(inputs.gt_amodal[b])
                if not overlap.any():
                    continue
                rank_a, rank_b = inputs.gt_depth_rank[a], inputs.gt_depth_rank[b]
                if rank_a > 0 and rank_b > 0 and rank_a != rank_b:
                    pairs.append((a, b) if rank_a < rank_b else (b, a))
                    continue
                shown_a = (decode_rle(inputs.gt_visible[a]) & overlap).sum()
                shown_b = (decode_rle(inputs.gt_visible[b]) & overlap).sum()
                if shown_a != shown_b:
                    pairs.append((a, b) if shown_a > shown_b else (b, a))
    return pairs


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_overlap_visible_equals_numpy(seed):
    annotations, results = layered_scene(seed)
    evaluator = make_evaluator(annotations, results)
    inputs = evaluator.inputs
    gt_detection = evaluator.matched_detections()
    pairs = reference_ordered_pairs(inputs)
    overlap_pixels, shown = 0, {"front": 0, "back": 0}
    matched_pairs = 0
    for front, back in pairs:
        if gt_detection[front] < 0 or gt_detection[back] < 0:
            continue
        matched_pairs += 1
        overlap = decode_rle(inputs.gt_amodal[front]) & decode_rle(inputs.gt_amodal[back])
        overlap_pixels += overlap.sum()
        for side, g in (("front", front), ("back", back)):
            d = gt_detection[g]
            shown[side] += (decode_rle(inputs.dt_visible[d]) & decode_rle(inputs.dt_amodal[d]) & overlap).sum()
    metrics = evaluator.evaluate().metrics
    assert metrics["depth_order"]["pairs"] == len(pairs)
    assert metrics["depth_order"]["matched_pairs"] == matched_pairs > 0
    assert metrics["overlap_visible"] == {"front": shown["front"] / overlap_pixels,
                                          "back": shown["back"] / overlap_pixels,
                                          "pairs": matched_pairs, "overlap_pixels": overlap_pixels}


FRONT, BACK = box(0, 0, 10, 10), box(0, 5, 10, 15)  # overlap: columns 5..9, 50 pixels
SMALL_FRONT, SMALL_BACK = box(20, 20, 24, 30), box(20, 25, 24, 35)  # overlap: 4 x 5 = 20 pixels


def test_overlap_visible_shares_on_rectangles():
    annotations = scene({
        1: [gt(FRONT, depth_rank=1), gt(BACK, BACK & ~FRONT, depth_rank=2)],
        2: [gt(SMALL_FRONT), gt(SMALL_BACK, SMALL_BACK & ~SMALL_FRONT)],  # order from the visible masks
        3: [gt(FRONT, depth_rank=1), gt(BACK, BACK & ~FRONT, depth_rank=2)],  # back object missed
        4: [gt(FRONT), gt(BACK)],  # both fully visible: unordered, not a pair
    })
    results = [
        det(1, FRONT, FRONT & ~box(0, 8, 10, 10), score=0.9),  # hides 20 of the 50 overlap pixels: 0.6 shown
        det(1, BACK, (BACK & ~FRONT) | box(0, 5, 10, 6), score=0.8),  # shows one column, 10 pixels: 0.2
        det(2, SMALL_FRONT, SMALL_FRONT, score=0.9),  # right: all 20 shown
        det(2, SMALL_BACK, SMALL_BACK & ~SMALL_FRONT, score=0.8),  # right: none shown
        det(3, FRONT, FRONT),
        det(4, FRONT, FRONT), det(4, BACK, BACK),
    ]
    metrics = evaluate(annotations, results)
    assert metrics["depth_order"] == {"accuracy": 1.0, "pairs": 3, "matched_pairs": 2}
    assert metrics["overlap_visible"] == pytest.approx({"front": (30 + 20) / 70, "back": (10 + 0) / 70,
                                                        "pairs": 2, "overlap_pixels": 70})
    perfect = evaluate(annotations, results[2:4])
    assert perfect["overlap_visible"] == {"front": 1.0, "back": 0.0, "pairs": 1, "overlap_pixels": 20}


def test_hidden_pixels_on_rectangles():
    amodal, visible = box(0, 0, 10, 10), box(0, 0, 10, 6)  # 40 hidden pixels: columns 6..9
    annotations = scene({1: [gt(amodal, visible)]})
    # The detection is one column wider (IoU 10/11) and hides columns 5..10: 40 right, 10 wrong inside
    # the object (column 5), and 10 outside it (column 10), which precision leaves out.
    wider = box(0, 0, 10, 11)
    metrics = evaluate(annotations, [det(1, wider, box(0, 0, 10, 5))])
    assert metrics["hidden_pixels"] == {"recall": 1.0, "precision": 0.8, "gt_hidden": 40, "predicted_hidden": 50,
                                        "correct_hidden": 40, "matched_objects": 1}
    # Hiding only column 9 finds a quarter of the hidden part, with no wrong pixel.
    metrics = evaluate(annotations, [det(1, amodal, box(0, 0, 10, 9))])
    assert metrics["hidden_pixels"] == pytest.approx({"recall": 0.25, "precision": 1.0, "gt_hidden": 40,
                                                      "predicted_hidden": 10, "correct_hidden": 10,
                                                      "matched_objects": 1})


def test_visible_mask_covering_the_amodal_mask_predicts_nothing_hidden():
    """No predicted hidden pixel: precision undefined, recall 0; the detection makes no invisible-mask
    claim (ignored, not a false positive), so the occluded object is simply missed."""
    amodal, visible = box(0, 0, 10, 10), box(0, 0, 10, 6)
    annotations = scene({1: [gt(amodal, visible)]})
    metrics = evaluate(annotations, [det(1, amodal, amodal)])
    assert metrics["hidden_pixels"] == {"recall": 0.0, "precision": UNDEFINED, "gt_hidden": 40,
                                        "predicted_hidden": 0, "correct_hidden": 0, "matched_objects": 1}
    assert metrics["invisible"]["AP"] == 0.0 and metrics["invisible"]["AR100"] == 0.0
    assert metrics["amodal"]["all"]["AP"] == pytest.approx(1.0)


def test_without_occluded_ground_truth_invisible_ap_and_hidden_recall_are_undefined():
    annotations = scene({1: [gt(box(0, 0, 10, 10))], 2: [gt(box(12, 12, 24, 24))]})
    # One detection calls a column hidden (a false claim), one calls nothing hidden.
    metrics = evaluate(annotations, [det(1, box(0, 0, 10, 10), box(0, 0, 10, 9)), det(2, box(12, 12, 24, 24))])
    assert all(value == UNDEFINED for value in metrics["invisible"].values())
    assert metrics["hidden_pixels"] == {"recall": UNDEFINED, "precision": 0.0, "gt_hidden": 0,
                                        "predicted_hidden": 10, "correct_hidden": 0, "matched_objects": 2}


def test_without_a_matched_pair_the_overlap_shares_are_undefined():
    annotations = scene({1: [gt(FRONT, depth_rank=1), gt(BACK, BACK & ~FRONT, depth_rank=2)]})
    for results in ([], [det(1, FRONT)], [det(1, box(20, 20, 30, 30)), det(1, BACK, BACK & ~FRONT)]):
        metrics = evaluate(annotations, results)
        assert metrics["overlap_visible"] == {"front": UNDEFINED, "back": UNDEFINED, "pairs": 0, "overlap_pixels": 0}
        assert metrics["depth_order"] == {"accuracy": UNDEFINED, "pairs": 1, "matched_pairs": 0}
    empty = evaluate(scene({1: []}), [])
    assert empty["hidden_pixels"]["matched_objects"] == 0 and empty["overlap_visible"]["pairs"] == 0


def test_report_prints_the_layering_metrics():
    annotations = scene({1: [gt(FRONT, depth_rank=1), gt(BACK, BACK & ~FRONT, depth_rank=2)]})
    metrics = evaluate(annotations, [det(1, FRONT, score=0.9), det(1, BACK, BACK & ~FRONT, score=0.8)])
    report = format_report(metrics)
    assert "Invisible masks (hidden parts, amodal minus visible; occluded ground truth only)" in report
    assert ("Hidden pixels of the 2 matched objects: recall 1.000 of 50 ground-truth hidden, precision 1.000 of 50 "
            "predicted hidden inside the ground-truth amodal masks") in report
    assert ("Overlap of the 1 matched pairs (50 pixels) called visible: front 1.000 (ideal 1), back 0.000 (ideal 0)"
            in report)
    nothing = format_report(evaluate(annotations, []))
    assert "recall n/a of 0 ground-truth hidden" in nothing and "front n/a (ideal 1), back n/a" in nothing
