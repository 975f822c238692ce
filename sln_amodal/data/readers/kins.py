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

from ..records import AnnotationError, AnnotationSet, DropLog, ImageRecord
from .coco_style import known_category, read_images
from .common import COCO_TOP_LEVEL_KEYS, build_object, load_annotation_file, require

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
    categories = [dict(c) for c in data["categories"] if int(c["id"]) in KINS_CATEGORY_IDS]
    category_ids = {c["id"] for c in categories}

    def fill_record(record: ImageRecord, annotations: list, where: str) -> bool:
        clusters, orders = [], []
        for ann in annotations:
            ann_where = f"{where} annotation id {ann.get('id')}"
            category_id = known_category(ann, category_ids, log, path, ann_where)
            if category_id is None:
                continue
            obj = build_object(
                log, ann_where, record.height, record.width, category_id,
                require(ann, schema.amodal, path, ann_where), require(ann, schema.visible, path, ann_where),
                iscrowd=bool(ann.get("iscrowd", False)), ann_id=ann.get("id"), source_bbox=ann.get(schema.box),
            )
            if obj is not None:
                record.objects.append(obj)
                clusters.append(ann.get(CLUSTER_KEY))
                orders.append(ann.get(ORDER_IN_CLUSTER_KEY))
        record.depth_constraints = cluster_depth_constraints(clusters, orders)
        log.kept("depth constraints", len(record.depth_constraints))
        return True

    records = read_images(path, data, log, fill_record, image_root)
    return AnnotationSet(categories=categories, records=records)


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
