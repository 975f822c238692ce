"""Ground truth, detections and scenes built by hand on a small image, and the evaluator's metrics for
them; shared by the tests of cases with known answers.
"""
from sln_amodal.config import get_default_config
from sln_amodal.data.records import AnnotationSet, DropLog, ImageRecord, ObjectAnnotation
from sln_amodal.evaluation import AmodalEvaluator, detections_from_results
from sln_amodal.structures.masks import encode_mask, mask_to_bbox
from testing import box_mask

HEIGHT, WIDTH = 32, 48


def box(y0, x0, y1, x1):
    return box_mask(y0, x0, y1, x1, HEIGHT, WIDTH)


def gt(amodal, visible=None, occlude_rate=None, depth_rank=None, category_id=1, is_stuff=False):
    visible = amodal if visible is None else visible
    return ObjectAnnotation(
        category_id=category_id, amodal=encode_mask(amodal), visible=encode_mask(visible),
        bbox=tuple(mask_to_bbox(amodal)),
        occlude_rate=1.0 - visible.sum() / amodal.sum() if occlude_rate is None else occlude_rate,
        depth_rank=depth_rank, is_stuff=is_stuff,
    )


def det(image_id, amodal, visible=None, score=1.0, category_id=1):
    visible = amodal if visible is None else visible
    return {"image_id": image_id, "category_id": category_id, "score": score,
            "segmentation": encode_mask(amodal), "visible_segmentation": encode_mask(visible)}


def scene(images, categories=({"id": 1, "name": "object"},)):
    """``images``: {image_id: objects or (objects, depth_constraints)}."""
    records = []
    for image_id, content in images.items():
        objects, constraints = content if isinstance(content, tuple) else (content, [])
        records.append(ImageRecord(f"{image_id}.jpg", HEIGHT, WIDTH, image_id, objects, constraints))
    return AnnotationSet(list(categories), records)


def evaluate(annotations, results, log=None):
    detections = detections_from_results(results, annotations, log or DropLog("results.json"))
    return AmodalEvaluator(annotations, detections, get_default_config().EVAL).evaluate().metrics
