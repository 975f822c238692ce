"""KINS (amodal KITTI) -> AnnotationSet, in either of its two schemas, detected per file.

- ``instances_{train,val}.json``: ``segmentation`` (amodal polygons), ``inmodal_seg`` (visible
  polygons), ``bbox`` (amodal box), ``inmodal_bbox``.
- KINS 2020 ``update_{train,test}_2020.json``: ``a_segm`` / ``i_segm`` (amodal / visible
  polygons), ``a_bbox`` / ``i_bbox``, and ``oco_id`` (occlusion cluster) with ``ico_id`` (order
  inside the cluster, lower = nearer), which become pairwise depth constraints.

The category ids 1, 2, 4, 5, 6, 7, 8 are kept as they are (``AnnotationSet.contiguous_ids`` maps
them to 1..7); a category the file lists outside them (3) is left out.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from ..data_types import DataType, SplitLayout, register_data_type
from ...structures.masks import describe_value
from ..records import AnnotationError, AnnotationSet, DropLog, ImageRecord, ObjectAnnotation
from .coco_style import annotation_where, category_field, read_images, read_objects
from .common import (
    COCO_TOP_LEVEL_KEYS,
    FieldError,
    bool_field,
    box_field,
    build_object,
    int_field,
    load_annotation_file,
    number_field,
    read_categories,
)

KINS_CATEGORY_IDS = (1, 2, 4, 5, 6, 7, 8)  # cyclist, pedestrian, car, tram, truck, van, misc


@dataclass(frozen=True)
class KinsSchema:
    name: str
    amodal: str  # key of the amodal polygons
    visible: str  # key of the visible polygons
    box: str  # key of the amodal box, COCO [x, y, w, h]


KINS_2020 = KinsSchema("KINS 2020", amodal="a_segm", visible="i_segm", box="a_bbox")
KINS_INSTANCES = KinsSchema("KINS instances", amodal="segmentation", visible="inmodal_seg", box="bbox")
CLUSTER_KEY, ORDER_IN_CLUSTER_KEY = "oco_id", "ico_id"


def detect_schema(data: dict, path: str) -> KinsSchema:
    """The schema of the first annotation (a file without annotations reads the same either way)."""
    if not data["annotations"]:
        return KINS_INSTANCES
    first = data["annotations"][0]
    if not isinstance(first, dict):
        raise AnnotationError(path, "annotations", f"the first annotation is not an object: {describe_value(first)}")
    for schema in (KINS_2020, KINS_INSTANCES):
        if schema.amodal in first:
            return schema
    raise AnnotationError(path, "annotations", f"the first annotation has neither {KINS_2020.amodal!r} "
                          f"({KINS_2020.name}) nor {KINS_INSTANCES.amodal!r} ({KINS_INSTANCES.name})")


def read_kins(
    path: str, strict: bool = False, log: DropLog | None = None, image_root: Optional[str] = None
) -> AnnotationSet:
    data = load_annotation_file(path, COCO_TOP_LEVEL_KEYS)
    log = log or DropLog(path, strict)
    schema = detect_schema(data, path)
    categories = [c for c in read_categories(data, path) if c["id"] in KINS_CATEGORY_IDS]
    category_ids = {c["id"] for c in categories}

    depths: dict[int, tuple[Optional[int], Optional[float]]] = {}  # id() of an annotation read -> (cluster, order)

    def read_object(record: ImageRecord, ann: dict, where: str) -> Optional[ObjectAnnotation]:
        category_id = category_field(ann, category_ids)
        if ann.get(schema.visible) is None:
            raise FieldError(schema.visible, "missing")
        depths[id(ann)] = _cluster_and_order(ann)  # malformed ones drop the annotation before it is built
        return build_object(
            log, where, record.height, record.width, category_id, ann.get(schema.amodal), ann[schema.visible],
            iscrowd=bool_field(ann, "iscrowd"), ann_id=int_field(ann, "id", None),
            source_bbox=box_field(ann, schema.box),
        )

    def fill_record(record: ImageRecord, image: dict, annotations: list, where: str) -> bool:
        kept = read_objects(log, record, annotations, annotation_where(where), read_object)
        record.objects = [obj for _, _, obj in kept]
        clusters, orders = zip(*(depths[id(ann)] for _, ann, _ in kept)) if kept else ((), ())
        record.depth_constraints = cluster_depth_constraints(list(clusters), list(orders))
        log.kept("depth constraints", len(record.depth_constraints))
        return True

    records = read_images(path, data, log, fill_record, image_root)
    return AnnotationSet(categories=categories, records=records)


def _cluster_and_order(ann: dict) -> tuple[Optional[int], Optional[float]]:
    return int_field(ann, CLUSTER_KEY, None), number_field(ann, ORDER_IN_CLUSTER_KEY)


def cluster_depth_constraints(clusters: list, orders: list) -> list[tuple[int, int]]:
    """(front, back) pairs of objects in the same cluster, the lower order in front.

    Objects without a cluster or an order take part in no pair; equal orders leave a pair unordered.
    """
    known = np.array([c is not None and o is not None for c, o in zip(clusters, orders)], dtype=bool)
    if known.sum() < 2:
        return []
    index = np.flatnonzero(known)
    cluster = np.array([clusters[i] for i in index])
    order = np.array([orders[i] for i in index], dtype=np.float64)
    in_front = (cluster[:, None] == cluster[None, :]) & (order[:, None] < order[None, :])  # K x K
    return [(int(index[a]), int(index[b])) for a, b in np.argwhere(in_front)]


register_data_type(DataType(
    "KINS", read_kins,
    splits={"train": SplitLayout(("instances_train.json", "update_train_2020.json"), "training/image_2"),
            "val": SplitLayout(("instances_val.json", "update_test_2020.json"), "testing/image_2")},
))
