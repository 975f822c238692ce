"""D2S amodal (D2SA, e.g. ``D2S_amodal_training_rot0.json``) -> AnnotationSet.

Flat COCO annotations, one per object: amodal ``segmentation`` (polygons or RLE), ``visible_mask``
(RLE or polygons), an optional ``invisible_mask``, ``occlude_rate``, the depth ``occl_depth``
(smaller = nearer; the upstream SLN converter orders an image's objects front-first by sorting on
it) or, in its absence, ``amodal_region.order`` (1 = front), and 60 categories. ``iscrowd`` may be
a JSON boolean. Images without annotations are kept.
"""
from __future__ import annotations

from typing import Optional

from ..records import AnnotationSet, DropLog, ImageRecord
from .coco_style import assign_depth_ranks, build_masked_object, known_category, read_images
from .common import COCO_TOP_LEVEL_KEYS, load_annotation_file


def read_d2sa(
    path: str, strict: bool = False, log: DropLog | None = None, image_root: Optional[str] = None
) -> AnnotationSet:
    data = load_annotation_file(path, COCO_TOP_LEVEL_KEYS)
    log = log or DropLog(path, strict)
    category_ids = {int(c["id"]) for c in data["categories"]}

    def fill_record(record: ImageRecord, annotations: list, where: str) -> bool:
        depths = []
        for ann in annotations:
            ann_where = f"{where} annotation id {ann.get('id')}"
            category_id = known_category(ann, category_ids, log, path, ann_where)
            if category_id is None:
                continue
            obj = build_masked_object(
                log, path, ann_where, record.height, record.width, category_id, ann,
                iscrowd=bool(ann.get("iscrowd", False)), ann_id=ann.get("id"), source_bbox=ann.get("bbox"),
            )
            if obj is not None:
                record.objects.append(obj)
                depths.append(_depth(ann))
        assign_depth_ranks(record.objects, depths)
        return True

    records = read_images(path, data, log, fill_record, image_root)
    return AnnotationSet(categories=[dict(c) for c in data["categories"]], records=records)


def _depth(ann: dict) -> Optional[float]:
    if ann.get("occl_depth") is not None:
        return ann["occl_depth"]
    return (ann.get("amodal_region") or {}).get("order")
