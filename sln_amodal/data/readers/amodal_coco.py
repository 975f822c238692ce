"""The project's amodal COCO JSON (SPEC section 5): reader and writer.

A COCO instances file whose annotations also carry ``visible_segmentation``, ``visible_area``,
``occlude_rate``, ``depth_rank`` (1 = front-most, null if unknown) and ``is_stuff``; images may
carry ``depth_constraints`` as ``[front_ann_id, back_ann_id]`` pairs. pycocotools' ``COCO()``
loads it as an ordinary instances file (amodal masks in ``segmentation``).
"""
from __future__ import annotations

import json
import os

from ...structures.masks import rle_area
from ..records import AnnotationSet, DropLog, ImageRecord
from .coco_style import known_category, read_images
from .common import COCO_TOP_LEVEL_KEYS, build_object, load_annotation_file, require


def read_amodal_coco(path: str, strict: bool = False, log: DropLog | None = None) -> AnnotationSet:
    data = load_annotation_file(path, COCO_TOP_LEVEL_KEYS)
    log = log or DropLog(path, strict)
    category_ids = {int(c["id"]) for c in data["categories"]}
    constraints_of_image = {image.get("id"): image.get("depth_constraints", []) for image in data["images"]}

    def fill_record(record: ImageRecord, annotations: list, where: str) -> bool:
        index_of_ann = {}
        for ann in annotations:
            ann_where = f"annotation id {ann.get('id')}"
            category_id = known_category(ann, category_ids, log, path, ann_where)
            if category_id is None:
                continue
            obj = build_object(
                log, ann_where, record.height, record.width, category_id,
                require(ann, "segmentation", path, ann_where), ann.get("visible_segmentation"),
                depth_rank=ann.get("depth_rank"), is_stuff=ann.get("is_stuff", False),
                iscrowd=ann.get("iscrowd", False), ann_id=ann.get("id"), name=ann.get("name", ""),
                source_bbox=ann.get("bbox"),
            )
            if obj is not None:
                index_of_ann[ann.get("id")] = len(record.objects)
                record.objects.append(obj)
        for pair in constraints_of_image[record.image_id]:
            front, back = (index_of_ann.get(a) for a in pair)
            if front is None or back is None:
                log.drop("depth constraint", "depth_constraints", f"{pair} names a missing annotation", where)
            else:
                record.depth_constraints.append((front, back))
        return True

    records = read_images(path, data, log, fill_record)
    return AnnotationSet(categories=[dict(c) for c in data["categories"]], records=records)


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
    """Write atomically (temporary file, then rename) so a crash never leaves half a file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(amodal_coco_dict(annotations), f)
    os.replace(tmp, path)
