"""Turning one source annotation into an ``ObjectAnnotation``: the checks every reader shares."""
from __future__ import annotations

import json
from typing import Any, Optional

from ...structures.masks import SegmentationError, rle_area, rle_intersection, rle_to_bbox, segmentation_to_rle
from ..records import AnnotationError, DropLog, ObjectAnnotation


COCO_TOP_LEVEL_KEYS = ("images", "annotations", "categories")


def load_json(path: str) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise AnnotationError(path, "<file>", f"cannot read JSON: {err}") from err


def load_annotation_file(path: str, top_level_keys: tuple[str, ...]) -> dict:
    """The JSON object of ``path``, checked to hold every one of ``top_level_keys``."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(path, "<file>", f"expected a JSON object, got {type(data).__name__}")
    for key in top_level_keys:
        require(data, key, path, "top level")
    return data


def require(entry: dict, key: str, source: str, where: str) -> Any:
    """``entry[key]`` or an AnnotationError naming the file, the entry and the missing field."""
    if key not in entry:
        raise AnnotationError(f"{source} {where}", key, "missing")
    return entry[key]


def build_object(
    log: DropLog,
    where: str,
    height: int,
    width: int,
    category_id: int,
    amodal_segmentation,
    visible_segmentation=None,
    *,
    depth_rank: Optional[int] = None,
    is_stuff: bool = False,
    iscrowd: bool = False,
    ann_id: Optional[int] = None,
    name: str = "",
    source_bbox: Optional[list] = None,
) -> Optional[ObjectAnnotation]:
    """Validate and build one object, or drop it (counted in ``log``) and return None.

    ``visible_segmentation`` None means the object is fully visible. The visible mask is clipped
    to the amodal mask, the box and occlusion rate are recomputed from the masks (so they always
    agree with the pixels), and ``source_bbox``, when given, must overlap the image.
    """
    log.read("objects")
    try:
        amodal = segmentation_to_rle(amodal_segmentation, height, width)
    except SegmentationError as err:
        log.drop("object", "amodal segmentation", str(err), where)
        return None
    amodal_area = rle_area(amodal)
    if amodal_area == 0:
        log.drop("object", "amodal segmentation", "empty mask", where)
        return None
    if source_bbox is not None and not _box_overlaps_image(source_bbox, height, width):
        log.drop("object", "bbox", f"box {list(source_bbox)} lies outside the {width}x{height} image", where)
        return None
    if visible_segmentation is None:
        visible = amodal
    else:
        try:
            visible = rle_intersection(segmentation_to_rle(visible_segmentation, height, width), amodal)
        except SegmentationError as err:
            log.drop("object", "visible segmentation", str(err), where)
            return None
    visible_area = rle_area(visible)
    log.kept("objects")
    return ObjectAnnotation(
        category_id=int(category_id),
        amodal=amodal,
        visible=visible,
        bbox=tuple(rle_to_bbox(amodal)),
        occlude_rate=1.0 - visible_area / amodal_area,
        depth_rank=None if depth_rank is None else int(depth_rank),
        is_stuff=bool(is_stuff),
        iscrowd=bool(iscrowd),
        ann_id=ann_id,
        name=name,
    )


def _box_overlaps_image(bbox, height: int, width: int) -> bool:
    if len(bbox) != 4:
        return False
    x, y, w, h = (float(v) for v in bbox)
    return w > 0 and h > 0 and x < width and y < height and x + w > 0 and y + h > 0
