"""Randomised scenes (noisy detections of random ellipses) and pycocotools' COCOeval run on them with
chosen area fields; shared by the tests that hold the evaluator to COCOeval.
"""
import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from sln_amodal.config import get_default_config
from sln_amodal.data.readers.amodal_coco import amodal_coco_dict
from sln_amodal.data.records import AnnotationSet, DropLog, ImageRecord, ObjectAnnotation
from sln_amodal.evaluation import AmodalEvaluator, detections_from_results
from sln_amodal.evaluation.detections import UNKNOWN_IMAGE_COUNT
from sln_amodal.structures.masks import encode_mask, mask_to_bbox

HEIGHT, WIDTH = 40, 56


CATEGORY_IDS = (2, 5, 9)  # not contiguous, as in KINS


UNKNOWN_IMAGE_ID = 99999


def _ellipse(rng, center=None, radii=None):
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    cy, cx = center if center is not None else (rng.uniform(0, HEIGHT), rng.uniform(0, WIDTH))
    ry, rx = radii if radii is not None else (rng.uniform(3, 14), rng.uniform(3, 18))
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1, (cy, cx), (ry, rx)


def _occluder(rng):
    mask = np.zeros((HEIGHT, WIDTH), dtype=bool)
    y, x = rng.integers(0, HEIGHT), rng.integers(0, WIDTH)
    mask[y:y + rng.integers(4, 25), x:x + rng.integers(4, 30)] = True
    return mask


def ground_truth_object(rng, amodal, visible, category_id, crowd=False):
    amodal_area = amodal.sum()
    return ObjectAnnotation(
        category_id=category_id, amodal=encode_mask(amodal), visible=encode_mask(visible),
        bbox=tuple(mask_to_bbox(amodal)), occlude_rate=1.0 - visible.sum() / amodal_area,
        is_stuff=bool(rng.random() < 0.3), iscrowd=crowd,
    )


def random_scene(seed, num_images=24):
    """Noisy detections of random ellipses: tied scores, crowd regions, duplicated ground truth
    (tied IoUs), images without detections, wrong-category and unknown-image detections."""
    rng = np.random.default_rng(seed)
    records, results = [], []
    image_ids = rng.permutation(np.arange(num_images) * 3 + 10)  # records out of id order
    for image_id in image_ids:
        objects = []
        for _ in range(rng.integers(0, 7)):
            amodal, center, radii = _ellipse(rng)  # its center pixel is always inside
            visible = amodal & ~_occluder(rng) if rng.random() < 0.7 else amodal
            category_id = int(rng.choice(CATEGORY_IDS))
            objects.append(ground_truth_object(rng, amodal, visible, category_id, crowd=bool(rng.random() < 0.1)))
            if rng.random() < 0.1:
                objects.append(copy.deepcopy(objects[-1]))  # identical twin: equal IoUs
            for _ in range(rng.integers(0, 3)):
                jitter = rng.normal(0, 2, 2)
                det_amodal, _, _ = _ellipse(rng, np.add(center, jitter), np.multiply(radii, rng.uniform(0.8, 1.2, 2)))
                det_visible = det_amodal & (visible | (rng.random((HEIGHT, WIDTH)) < 0.05))
                wrong_category = rng.random() < 0.1
                det_category = int(rng.choice(CATEGORY_IDS)) if wrong_category else category_id
                results.append(result_entry(int(image_id), det_category, rng, det_amodal, det_visible))
        for _ in range(rng.integers(0, 4)):  # false positives
            det_amodal, _, _ = _ellipse(rng)
            results.append(result_entry(int(image_id), int(rng.choice(CATEGORY_IDS)), rng, det_amodal,
                                        det_amodal & ~_occluder(rng)))
        records.append(ImageRecord(f"{image_id}.jpg", HEIGHT, WIDTH, int(image_id), objects))
    without_detections = set(image_ids[:3].tolist())
    results = [r for r in results if r["image_id"] not in without_detections]
    elsewhere, _, _ = _ellipse(rng)
    results.append(result_entry(UNKNOWN_IMAGE_ID, CATEGORY_IDS[0], rng, elsewhere, elsewhere))
    rng.shuffle(results)
    categories = [{"id": c, "name": f"class {c}"} for c in CATEGORY_IDS]
    return AnnotationSet(categories, records), results


def result_entry(image_id, category_id, rng, amodal, visible):
    return {"image_id": image_id, "category_id": category_id, "score": float(rng.integers(1, 8)) / 8,
            "segmentation": encode_mask(amodal), "visible_segmentation": encode_mask(visible)}


def cocoeval_arrays(annotations, results, gt_area, area_ranges, dt_area=lambda det: float("nan"),
                    visible=False, use_cats=True, max_detections=(1, 10, 100)):
    """COCOeval's precision (T, R, K, A, M) and recall (T, K, A, M) with the given area fields."""
    dataset = amodal_coco_dict(annotations)
    for ann in dataset["annotations"]:
        ann["area"] = gt_area(ann)
        if visible:
            ann["segmentation"] = ann["visible_segmentation"]
    known = {image["id"] for image in dataset["images"]}
    dets = [dict(d, segmentation=d["visible_segmentation"] if visible else d["segmentation"])
            for d in results if d["image_id"] in known]  # COCOeval refuses unknown images
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        for det in coco_dt.anns.values():
            det["area"] = dt_area(det)
        coco_eval = COCOeval(coco_gt, coco_dt, "segm")
        coco_eval.params.areaRng = [list(r) for r in area_ranges]
        coco_eval.params.areaRngLbl = [str(n) for n in range(len(area_ranges))]
        coco_eval.params.useCats = int(use_cats)
        coco_eval.params.maxDets = list(max_detections)
        coco_eval.evaluate()
        coco_eval.accumulate()
    return coco_eval.eval["precision"], coco_eval.eval["recall"]


def make_evaluator(annotations, results, **eval_overrides):
    cfg = get_default_config().EVAL
    cfg.update(eval_overrides)
    log = DropLog("results.json")
    evaluator = AmodalEvaluator(annotations, detections_from_results(results, annotations, log), cfg)
    assert log.counts[UNKNOWN_IMAGE_COUNT] == 1  # ignored and counted, not a crash
    return evaluator


def assert_identical(ours, precision, recall):
    assert ours.precision.shape == precision.shape
    assert np.abs(ours.precision - precision).max() == 0
    assert np.abs(ours.recall - recall).max() == 0
