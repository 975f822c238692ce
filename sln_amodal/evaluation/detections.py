"""Detections read from a results JSON (SPEC section 7) and checked against the ground truth.

A results file is a COCO results list; every entry carries ``image_id``, ``category_id``,
``score``, ``segmentation`` (amodal RLE) and ``visible_segmentation`` (RLE); ``bbox`` and
``depth_rank`` may be present and are not needed for scoring. An entry that cannot be scored is
dropped and counted (or raises in strict mode); an entry for an image the ground truth does not
have is ignored with a counted warning, in every mode, as COCO-style evaluation of a subset needs,
unless no entry at all names an image of the ground truth (a warning, an error in strict mode).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..data.readers.common import FieldError, as_int, load_json
from ..data.records import AnnotationError, AnnotationSet, DropLog
from ..numbers import is_finite_number
from ..structures.masks import SegmentationError, describe_value, segmentations_to_rles

logger = logging.getLogger(__name__)

REQUIRED_FIELDS = ("image_id", "category_id", "score", "segmentation", "visible_segmentation")
UNKNOWN_IMAGE_COUNT = "detections ignored: image not in the ground truth"


@dataclass
class Detections:
    """Scorable detections in results-file order."""

    image_ids: np.ndarray  # (N,) int64
    category_ids: np.ndarray  # (N,) int64, dataset category ids
    scores: np.ndarray  # (N,) float64
    amodal: list[dict]  # N RLEs at their image's size
    visible: list[dict]

    def __len__(self) -> int:
        return len(self.scores)


def load_results(path: str, ground_truth: AnnotationSet, strict: bool = False,
                 log: DropLog | None = None) -> Detections:
    """Read and check a results JSON file; ``log`` (or a new one) counts what was dropped."""
    results = load_json(path)
    if not isinstance(results, list):
        raise AnnotationError(path, "<top level>", f"a results file holds a JSON list, got {type(results).__name__}")
    return detections_from_results(results, ground_truth, log or DropLog(path, strict))


def detections_from_results(results: list, ground_truth: AnnotationSet, log: DropLog) -> Detections:
    """The scorable entries of ``results``; see the module docstring for what is dropped or ignored.

    Ids are read as the ground truth's are (``readers.common.as_int``: 3, 3.0 and "3" are one id).
    Detections that exist but all name images the ground truth lacks (ids offset, another split)
    would score as a 100% miss: that is a loud warning, and an error in strict mode.
    """
    sizes = {record.image_id: (record.height, record.width) for record in ground_truth.records}
    category_ids = {int(c["id"]) for c in ground_truth.categories}
    image_ids, det_category_ids, scores, amodal, visible = [], [], [], [], []
    unknown_images = 0
    # First the checks that need no mask, then every mask at once (segmentations_to_rles), then the
    # drops in file order, so that counts, and the error strict mode raises, are as entry by entry.
    outcomes = []  # per entry: (where, dropped field, reason) or (where, None, (image_id, category_id, size))
    for index, det in enumerate(results):
        outcomes.append((f"detection {index}", *_mask_free_outcome(det, sizes, category_ids)))
    candidates = [index for index, (_, field, detail) in enumerate(outcomes)
                  if field is None and detail[2] is not None]
    masks = segmentations_to_rles(
        [results[index][name] for name in ("segmentation", "visible_segmentation") for index in candidates],
        [outcomes[index][2][2] for index in candidates] * 2)
    rles = {index: (masks[position], masks[position + len(candidates)]) for position, index in enumerate(candidates)}
    for index, (where, field, detail) in enumerate(outcomes):
        log.read("detections")
        if field is not None:
            log.drop("detection", field, detail, where)
            continue
        image_id, category_id, size = detail
        if size is None:
            unknown_images += 1
            continue
        amodal_rle, visible_rle = rles[index]
        if isinstance(amodal_rle, SegmentationError):
            log.drop("detection", "segmentation", str(amodal_rle), where)
            continue
        if isinstance(visible_rle, SegmentationError):
            log.drop("detection", "visible_segmentation", str(visible_rle), where)
            continue
        log.kept("detections")
        image_ids.append(image_id)
        det_category_ids.append(category_id)
        scores.append(results[index]["score"])
        amodal.append(amodal_rle)
        visible.append(visible_rle)
    if unknown_images:
        log.counts[UNKNOWN_IMAGE_COUNT] += unknown_images
        logger.warning("%s: %d detections name images that are not in the ground truth; they are ignored",
                       log.source, unknown_images)
    if unknown_images and not image_ids:
        message = (f"none of the {unknown_images} detections names an image of the ground truth (its image ids "
                   f"run {min(sizes, default=None)}..{max(sizes, default=None)}): every object would count as "
                   "missed. Check that the results belong to this split and use its image ids")
        if log.strict:
            raise AnnotationError(log.source, "image_id", message)
        logger.warning("%s: %s", log.source, message)
    return Detections(
        image_ids=np.asarray(image_ids, dtype=np.int64),
        category_ids=np.asarray(det_category_ids, dtype=np.int64),
        scores=np.asarray(scores, dtype=np.float64),
        amodal=amodal,
        visible=visible,
    )


def _mask_free_outcome(det, sizes: dict, category_ids: set) -> tuple:
    """A results entry checked but for its masks: (None, (image_id, category_id, image size or None
    for an image the ground truth lacks)), or (field, reason) of the first problem."""
    if not isinstance(det, dict):
        return "<entry>", f"expected an object, got {describe_value(det)}"
    missing = next((name for name in REQUIRED_FIELDS if name not in det), None)
    if missing is not None:
        return missing, "missing"
    try:
        image_id, category_id = as_int(det["image_id"], "image_id"), as_int(det["category_id"], "category_id")
    except FieldError as err:
        return err.field, err.reason
    size = sizes.get(image_id)
    if size is None:
        return None, (image_id, category_id, None)
    if category_id not in category_ids:
        return "category_id", f"unknown category {det['category_id']!r}"
    score = det["score"]
    if not is_finite_number(score):
        return "score", f"expected a finite number, got {describe_value(score)}"
    return None, (image_id, category_id, size)
