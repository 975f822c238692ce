"""D2S amodal (D2SA, e.g. ``D2S_amodal_training_rot0.json``) -> AnnotationSet.

Flat COCO annotations, one per object: amodal ``segmentation`` (polygons or RLE), ``visible_mask``
(RLE or polygons), an optional ``invisible_mask``, ``occlude_rate``, the depth ``occl_depth``
(smaller = nearer; the upstream SLN converter orders an image's objects front-first by sorting on
it) or, in its absence, ``amodal_region.order`` (1 = front), and 60 categories. ``iscrowd`` may be
a JSON boolean. Images without annotations are kept.
"""
from __future__ import annotations

from typing import Optional

from ..data_types import DataType, SplitLayout, register_data_type
from ...structures.masks import describe_value
from ..records import AnnotationSet, DropLog, ImageRecord, ObjectAnnotation
from .coco_style import (
    annotation_where,
    assign_depth_ranks,
    build_masked_object,
    category_field,
    read_images,
    read_objects,
)
from .common import (
    COCO_TOP_LEVEL_KEYS,
    FieldError,
    bool_field,
    box_field,
    int_field,
    load_annotation_file,
    number_field,
    read_categories,
)


def read_d2sa(
    path: str, strict: bool = False, log: DropLog | None = None, image_root: Optional[str] = None
) -> AnnotationSet:
    data = load_annotation_file(path, COCO_TOP_LEVEL_KEYS)
    log = log or DropLog(path, strict)
    categories = read_categories(data, path)
    category_ids = {c["id"] for c in categories}

    depths: dict[int, Optional[float]] = {}  # id() of an annotation read -> its depth, parsed once

    def read_object(record: ImageRecord, ann: dict, where: str) -> Optional[ObjectAnnotation]:
        category_id = category_field(ann, category_ids)
        depths[id(ann)] = _depth(ann)  # a malformed depth drops the annotation before it is built
        return build_masked_object(
            log, where, record.height, record.width, category_id, ann, iscrowd=bool_field(ann, "iscrowd"),
            ann_id=int_field(ann, "id", None), source_bbox=box_field(ann, "bbox"),
        )

    def fill_record(record: ImageRecord, image: dict, annotations: list, where: str) -> bool:
        kept = read_objects(log, record, annotations, annotation_where(where), read_object)
        record.objects = [obj for _, _, obj in kept]
        assign_depth_ranks(record.objects, [depths[id(ann)] for _, ann, _ in kept])
        return True

    records = read_images(path, data, log, fill_record, image_root)
    return AnnotationSet(categories=categories, records=records)


def _depth(ann: dict) -> Optional[float]:
    """``occl_depth``, else ``amodal_region.order``; None when neither is given."""
    if ann.get("occl_depth") is not None:
        return number_field(ann, "occl_depth")
    region = ann.get("amodal_region") or {}
    if not isinstance(region, dict):
        raise FieldError("amodal_region", f"expected an object, got {describe_value(region)}")
    return number_field(region, "order")


register_data_type(DataType(
    "D2SA", read_d2sa,
    splits={"train": SplitLayout(("annotations/D2S_amodal_training_rot0.json",), "images"),
            "val": SplitLayout(("annotations/D2S_amodal_validation.json",), "images")},
))
