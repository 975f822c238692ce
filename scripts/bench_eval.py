"""Benchmark: this evaluator against pycocotools' COCOeval on the same synthetic input.

Synthetic scenes (480 x 640, several categories, a few ground truths per image, some crowd
regions, occlusion rates spread over the buckets) with noisy detections (rectangles made RLE by
pycocotools' polygon rasteriser). Both evaluators score amodal masks in the four occlusion buckets
(COCOeval through its area ranges, the occlusion rate in the ground truth's area, the detections'
area NaN so no unmatched detection is area-ignored); the script asserts that their precision and
recall arrays are identical and times evaluate() + accumulate() against the same work here.

    python scripts/bench_eval.py [--images 5000] [--detections 100] [--no-full] [--no-end-to-end]

End to end, both sides also start from files: the ground truth written as an amodal COCO file and
the results as a results JSON. Ours reads them as ``amodal_train.py evaluate --results`` does and
computes every metric the command prints; pycocotools loads them (``COCO``, ``loadRes``) and runs
evaluate + accumulate + summarize on the amodal masks.

The last line printed is one JSON object with ``ours_s``, ``pycocotools_s`` and ``speedup`` (the
cores), and ``end_to_end_speedup`` with the times it divides.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
import time

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from tqdm import tqdm


from sln_amodal.config import get_default_config
from sln_amodal.data.readers.amodal_coco import amodal_coco_dict, read_amodal_coco, write_amodal_coco
from sln_amodal.data.records import AnnotationSet, DropLog, ImageRecord, ObjectAnnotation
from sln_amodal.evaluation import (
    AmodalEvaluator,
    detections_from_results,
    format_report,
    load_results,
    occlusion_subsets,
)
from sln_amodal.structures.masks import rle_areas

HEIGHT, WIDTH = 480, 640
NUM_CATEGORIES = 5
GT_PER_IMAGE = (3, 9)  # [low, high) ground truths per image
COPIES_PER_GT = (1, 5)  # [low, high) noisy detections of each ground truth, the rest are false positives
CROWD_FRACTION = 0.05
UNOCCLUDED_FRACTION = 0.3  # ground truth with occlusion rate exactly 0
BOX_SIDE = (20, 240)  # pixels
JITTER = 0.08  # detection box noise, as a fraction of the box side
SCORE_LEVELS = 100  # scores are multiples of 1 / SCORE_LEVELS, so ties happen
TRUE_SCORES, FALSE_SCORES = (0.3, 1.0), (0.0, 0.7)  # copies of ground truth tend to score higher


def _boxes(rng, n):
    """(n, 4) x0, y0, x1, y1 inside the image."""
    size = rng.uniform(*BOX_SIDE, (n, 2))
    corner = rng.uniform(0, 1, (n, 2)) * (np.array([WIDTH, HEIGHT]) - size)
    return np.concatenate([corner, corner + size], axis=1)


def _jitter(rng, boxes):
    side = np.repeat(boxes[:, 2:] - boxes[:, :2], 2, axis=0).reshape(-1, 4)
    noisy = boxes + rng.normal(0, JITTER, boxes.shape) * side
    return np.clip(noisy, 0, [WIDTH, HEIGHT, WIDTH, HEIGHT])


def _visible_part(rng, boxes, unoccluded):
    """Each box with a random share of its width cut off the right side (none where unoccluded)."""
    cut = np.where(unoccluded, 0.0, rng.uniform(0, 0.9, len(boxes)))
    visible = boxes.copy()
    visible[:, 2] -= cut * (boxes[:, 2] - boxes[:, 0])
    return visible


def _rles(boxes):
    polygons = [[x0, y0, x1, y0, x1, y1, x0, y1] for x0, y0, x1, y1 in boxes.tolist()]
    rles = mask_utils.frPyObjects(polygons, HEIGHT, WIDTH)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def synthetic_dataset(num_images: int, detections_per_image: int, seed: int) -> tuple[AnnotationSet, list]:
    rng = np.random.default_rng(seed)
    records, results = [], []
    for image_id in tqdm(range(1, num_images + 1), desc="synthetic scenes", unit="image"):
        num_gt = rng.integers(*GT_PER_IMAGE)
        gt_boxes = _boxes(rng, num_gt)
        gt_visible = _visible_part(rng, gt_boxes, rng.random(num_gt) < UNOCCLUDED_FRACTION)
        gt_category = rng.integers(1, NUM_CATEGORIES + 1, num_gt)
        copies = np.minimum(np.cumsum(rng.integers(*COPIES_PER_GT, num_gt)), detections_per_image)
        source = np.searchsorted(copies, np.arange(copies[-1]), side="right")  # ground truth of each copy
        dt_boxes = np.concatenate([_jitter(rng, gt_boxes[source]), _boxes(rng, detections_per_image - len(source))])
        dt_visible = _visible_part(rng, dt_boxes, rng.random(len(dt_boxes)) < UNOCCLUDED_FRACTION)
        dt_category = np.concatenate([gt_category[source],
                                      rng.integers(1, NUM_CATEGORIES + 1, detections_per_image - len(source))])
        scores = np.concatenate([rng.uniform(*TRUE_SCORES, len(source)),
                                 rng.uniform(*FALSE_SCORES, detections_per_image - len(source))])
        scores = np.ceil(scores * SCORE_LEVELS) / SCORE_LEVELS

        amodal, visible = _rles(np.concatenate([gt_boxes, dt_boxes])), _rles(np.concatenate([gt_visible, dt_visible]))
        areas = rle_areas(amodal[:num_gt] + visible[:num_gt])
        objects = [
            ObjectAnnotation(int(c), a, v, tuple(mask_utils.toBbox(a).tolist()), 1.0 - visible_area / amodal_area,
                             iscrowd=bool(rng.random() < CROWD_FRACTION))
            for c, a, v, amodal_area, visible_area in zip(gt_category, amodal, visible, areas[:num_gt], areas[num_gt:])
        ]
        records.append(ImageRecord(f"{image_id:06d}.jpg", HEIGHT, WIDTH, image_id, objects))
        results += [{"image_id": image_id, "category_id": int(c), "score": float(s), "segmentation": a,
                     "visible_segmentation": v}
                    for c, s, a, v in zip(dt_category, scores, amodal[num_gt:], visible[num_gt:])]
    categories = [{"id": c, "name": f"class {c}"} for c in range(1, NUM_CATEGORIES + 1)]
    return AnnotationSet(categories, records), results


def run_pycocotools(annotations: AnnotationSet, results: list, buckets: dict):
    """COCOeval's precision and recall arrays, its loading time and its evaluate() + accumulate() time."""
    dataset = amodal_coco_dict(annotations)
    for ann in dataset["annotations"]:
        ann["area"] = ann["occlude_rate"]
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        for det in coco_dt.anns.values():
            det["area"] = float("nan")  # fails both range tests: never ignored when unmatched
        load_s = time.perf_counter() - start
        coco_eval = COCOeval(coco_gt, coco_dt, "segm")
        coco_eval.params.areaRng = [list(r) for r in buckets.values()]
        coco_eval.params.areaRngLbl = list(buckets)
        start = time.perf_counter()
        coco_eval.evaluate()
        coco_eval.accumulate()
        eval_s = time.perf_counter() - start
    return coco_eval.eval["precision"], coco_eval.eval["recall"], load_s, eval_s


def write_files(annotations: AnnotationSet, results: list, folder: str) -> tuple[str, str]:
    """The ground truth as an amodal COCO file and the results as a results JSON, in ``folder``."""
    gt_path, results_path = os.path.join(folder, "ground_truth.json"), os.path.join(folder, "results.json")
    write_amodal_coco(annotations, gt_path)
    with open(results_path, "w") as f:
        json.dump(results, f)
    return gt_path, results_path


def end_to_end(gt_path: str, results_path: str, eval_cfg) -> dict:
    """Seconds from the two files to the printed metrics, ours and pycocotools'."""
    start = time.perf_counter()
    ground_truth = read_amodal_coco(gt_path)
    detections = load_results(results_path, ground_truth)
    format_report(AmodalEvaluator(ground_truth, detections, eval_cfg).evaluate().metrics)
    ours_s = time.perf_counter() - start
    with contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        coco_gt = COCO(gt_path)
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(results_path), "segm")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
        coco_s = time.perf_counter() - start
    return {"end_to_end_ours_s": round(ours_s, 3), "end_to_end_pycocotools_s": round(coco_s, 3),
            "end_to_end_speedup": round(coco_s / ours_s, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--detections", type=int, default=100, help="detections per image")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-full", dest="full", action="store_false",
                        help="skip timing the complete evaluation (all metric families, depth order)")
    parser.add_argument("--no-end-to-end", dest="end_to_end", action="store_false",
                        help="skip timing both sides from the files to the metrics")
    args = parser.parse_args()
    eval_cfg = get_default_config().EVAL
    annotations, results = synthetic_dataset(args.images, args.detections, args.seed)
    scratch = tempfile.TemporaryDirectory()
    files = write_files(annotations, results, scratch.name)  # before loadRes below adds fields to the results

    start = time.perf_counter()
    detections = detections_from_results(results, annotations, DropLog("synthetic results"))
    ours_load_s = time.perf_counter() - start
    start = time.perf_counter()
    evaluator = AmodalEvaluator(annotations, detections, eval_cfg)
    ours = evaluator.precision_recall("amodal", occlusion_subsets(evaluator.inputs, evaluator.buckets, "both"))
    ours_s = time.perf_counter() - start

    precision, recall, coco_load_s, coco_s = run_pycocotools(annotations, results, evaluator.buckets)
    assert np.array_equal(ours.precision, precision), "precision differs from COCOeval"
    assert np.array_equal(ours.recall, recall), "recall differs from COCOeval"

    report = {"images": args.images, "detections": len(results), "ours_s": round(ours_s, 3),
              "pycocotools_s": round(coco_s, 3), "speedup": round(coco_s / ours_s, 2),
              "ours_load_s": round(ours_load_s, 3), "pycocotools_load_s": round(coco_load_s, 3)}
    if args.full:
        start = time.perf_counter()
        AmodalEvaluator(annotations, detections, eval_cfg).evaluate()
        report["ours_full_s"] = round(time.perf_counter() - start, 3)
    if args.end_to_end:
        report.update(end_to_end(*files, eval_cfg))
    scratch.cleanup()
    print("precision and recall identical to COCOeval in all occlusion buckets")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
