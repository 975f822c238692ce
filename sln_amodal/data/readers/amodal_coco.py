"""The project's amodal COCO JSON (SPEC section 5): reader and writer.

A COCO instances file whose annotations also carry ``visible_segmentation``, ``visible_area``,
``occlude_rate``, ``depth_rank`` (1 = front-most, null if unknown) and ``is_stuff``; images may
carry ``depth_constraints`` as ``[front_ann_id, back_ann_id]`` pairs. pycocotools' ``COCO()``
loads it as an ordinary instances file (amodal masks in ``segmentation``).
"""
from __future__ import annotations

import collections
import json

from ...fileio import atomic_write
from ...structures.masks import describe_value, rle_area
from ..records import AnnotationSet, DropLog, ImageRecord, ObjectAnnotation
from .coco_style import category_field, read_images, read_objects
from .common import (
    COCO_TOP_LEVEL_KEYS,
    FieldError,
    as_int,
    bool_field,
    box_field,
    build_object,
    entry_where,
    int_field,
    load_annotation_file,
    read_categories,
    str_field,
)


def read_amodal_coco(path: str, strict: bool = False, log: DropLog | None = None) -> AnnotationSet:
    """Read ``path``; malformed entries are dropped and counted in ``log`` (errors when ``strict``).

    Depth constraints name annotations by id, so a constraint naming an id that several annotations
    share is dropped (the objects themselves are kept).
    """
    data = load_annotation_file(path, COCO_TOP_LEVEL_KEYS)
    log = log or DropLog(path, strict)
    categories = read_categories(data, path)
    category_ids = {c["id"] for c in categories}
    id_copies = collections.Counter(_annotation_ids(data["annotations"]))

    def read_object(record: ImageRecord, ann: dict, where: str) -> ObjectAnnotation | None:
        category_id = category_field(ann, category_ids)
        fields = dict(depth_rank=int_field(ann, "depth_rank", None), is_stuff=bool_field(ann, "is_stuff"),
                      iscrowd=bool_field(ann, "iscrowd"), ann_id=int_field(ann, "id", None),
                      name=str_field(ann, "name", ""), source_bbox=box_field(ann, "bbox"))
        return build_object(log, where, record.height, record.width, category_id, ann.get("segmentation"),
                            ann.get("visible_segmentation"), **fields)

    def fill_record(record: ImageRecord, image: dict, annotations: list, where: str) -> bool:
        index_of_ann = {}
        for _, _, obj in read_objects(log, record, annotations, _annotation_where, read_object):
            if obj.ann_id is not None and id_copies[obj.ann_id] == 1:
                index_of_ann[obj.ann_id] = len(record.objects)
            record.objects.append(obj)
        constraints = image.get("depth_constraints") or []
        if not isinstance(constraints, list):
            log.drop("depth constraint", "depth_constraints", f"expected a list of [front, back] annotation id "
                     f"pairs, got {describe_value(constraints)}", where)
            return True
        for pair in constraints:
            log.read("depth constraints")
            front_back = _constraint_pair(pair)
            if front_back is None:
                log.drop("depth constraint", "depth_constraints", f"expected a [front, back] pair of annotation "
                         f"ids, got {describe_value(pair)}", where)
                continue
            shared = [ann_id for ann_id in front_back if id_copies[ann_id] > 1]
            front, back = (index_of_ann.get(ann_id) for ann_id in front_back)
            if shared:
                log.drop("depth constraint", "depth_constraints", f"{pair} names annotation id {shared[0]}, which "
                         f"{id_copies[shared[0]]} annotations share", where)
            elif front is None or back is None:
                log.drop("depth constraint", "depth_constraints", f"{pair} names a missing annotation", where)
            else:
                record.depth_constraints.append((front, back))
                log.kept("depth constraints")
        return True

    records = read_images(path, data, log, fill_record)
    return AnnotationSet(categories=categories, records=records)


def _annotation_where(index: int, ann) -> str:
    return entry_where(ann, index, "annotation")


def _annotation_ids(annotations: list) -> list[int]:
    """The integer ids of the annotations that have one (malformed entries are dropped later)."""
    ids = []
    for ann in annotations:
        try:
            if isinstance(ann, dict) and ann.get("id") is not None:
                ids.append(as_int(ann["id"], "id"))
        except FieldError:
            continue
    return ids


def _constraint_pair(pair) -> tuple[int, int] | None:
    """``[front_id, back_id]`` as two integer ids, or None when malformed."""
    if not isinstance(pair, list) or len(pair) != 2:
        return None
    try:
        return as_int(pair[0], "front"), as_int(pair[1], "back")
    except FieldError:
        return None


def amodal_coco_dict(annotations: AnnotationSet) -> dict:
    """The JSON-ready dict of an AnnotationSet; annotation ids are renumbered 1..N."""
    images, anns = [], []
    for record in annotations.records:
        first_id = len(anns) + 1
        for obj in record.objects:
            anns.append({
                "id": len(anns) + 1,
                "image_id": record.image_id,
                "category_id": obj.category_id,
                "segmentation": obj.amodal,
                "visible_segmentation": obj.visible,
                "bbox": list(obj.bbox),
                "area": rle_area(obj.amodal),
                "visible_area": rle_area(obj.visible),
                "occlude_rate": obj.occlude_rate,
                "depth_rank": obj.depth_rank,
                "is_stuff": int(obj.is_stuff),
                "iscrowd": int(obj.iscrowd),
                **({"name": obj.name} if obj.name else {}),
            })
        image = {"id": record.image_id, "file_name": record.file_name,
                 "height": record.height, "width": record.width}
        if record.depth_constraints:
            image["depth_constraints"] = [[first_id + f, first_id + b] for f, b in record.depth_constraints]
        images.append(image)
    return {"images": images, "annotations": anns, "categories": annotations.categories}


def write_amodal_coco(annotations: AnnotationSet, path: str) -> None:
    """Write atomically (``fileio.atomic_write``) so a crash never leaves half a file."""
    content = amodal_coco_dict(annotations)
    atomic_write(path, lambda f: json.dump(content, f))
