"""Turning one source annotation into an ``ObjectAnnotation``: the checks every reader shares.

Two kinds of bad input are told apart. A file that cannot be read as a whole (not JSON, a top-level
key missing or of the wrong type, a malformed category list) raises ``AnnotationError`` naming the
file and the field. A malformed entry inside it (an image, an annotation, one of its fields) raises
``FieldError`` from the field helpers below; the readers turn that into a dropped, counted entry
(``DropLog.drop``), which is an ``AnnotationError`` in strict mode.
"""
from __future__ import annotations

import json
from typing import Any, Optional

from ...numbers import is_finite_number, whole_number
from ...structures.masks import (
    SegmentationError,
    describe_value,
    rle_area,
    rle_intersection,
    rle_to_bbox,
    segmentation_to_rle,
)
from ..records import AnnotationError, DropLog, ObjectAnnotation

COCO_TOP_LEVEL_KEYS = ("images", "annotations", "categories")
BOX_NUMBERS = 4  # a COCO box is [x, y, width, height]
REQUIRED = object()  # default of the field helpers: the field must be present


class FieldError(ValueError):
    """One entry's field that is missing or malformed; the entry is dropped (an error in strict mode)."""

    def __init__(self, field: str, reason: str):
        super().__init__(f"{field}: {reason}")
        self.field, self.reason = field, reason


def load_json(path: str) -> Any:
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise AnnotationError(path, "<file>", f"cannot read JSON: {err}") from err


def load_annotation_file(path: str, top_level_keys: tuple[str, ...]) -> dict:
    """The JSON object of ``path``, checked to hold every one of ``top_level_keys``, each a list."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise AnnotationError(path, "<file>", f"expected a JSON object, got {type(data).__name__}")
    for key in top_level_keys:
        value = require(data, key, path, "top level")
        if not isinstance(value, list):
            raise AnnotationError(f"{path} top level", key, f"expected a list, got {type(value).__name__}")
    return data


def require(entry: dict, key: str, source: str, where: str) -> Any:
    """``entry[key]`` or an AnnotationError naming the file, the entry and the missing field."""
    if key not in entry:
        raise AnnotationError(f"{source} {where}", key, "missing")
    return entry[key]


def read_categories(data: dict, path: str) -> list[dict]:
    """The file's ``categories``, each a dict with an integer ``id`` (ids unique); AnnotationError otherwise."""
    categories, seen = [], set()
    for index, category in enumerate(data["categories"]):
        where = f"{path} categories[{index}]"
        if not isinstance(category, dict):
            raise AnnotationError(where, "<entry>", f"expected an object, got {describe_value(category)}")
        try:
            category_id = int_field(category, "id")
        except FieldError as err:
            raise AnnotationError(where, err.field, err.reason) from err
        if category_id in seen:
            raise AnnotationError(where, "id", f"category id {category_id} is listed twice")
        seen.add(category_id)
        categories.append({**category, "id": category_id})
    return categories


# ------------------------------------------------------------------------------------ field helpers
def as_int(value: Any, field: str) -> int:
    """An integer field: a JSON integer, an integral number (3.0) or a string of one ("3"), so an id
    reads the same whichever way a tool wrote it; FieldError otherwise."""
    number = whole_number(value)
    if number is not None:
        return number
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise FieldError(field, f"expected an integer, got {describe_value(value)}")


def int_field(entry: dict, key: str, default: Any = REQUIRED) -> Optional[int]:
    """``entry[key]`` as an integer (see ``as_int``); ``default`` when absent or null, if given."""
    value = entry.get(key)
    if value is None:
        if default is REQUIRED:
            raise FieldError(key, "missing")
        return default
    return as_int(value, key)


def positive_int_field(entry: dict, key: str) -> int:
    value = int_field(entry, key)
    if value < 1:
        raise FieldError(key, f"expected a positive integer, got {value}")
    return value


def bool_field(entry: dict, key: str, default: bool = False) -> bool:
    """A flag: JSON true/false or 0/1 (absent or null: ``default``)."""
    value = entry.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
        return bool(value)
    raise FieldError(key, f"expected true/false or 0/1, got {describe_value(value)}")


def number_field(entry: dict, key: str) -> Optional[float]:
    """A finite number, or None when absent or null."""
    value = entry.get(key)
    if value is None:
        return None
    if not is_finite_number(value):
        raise FieldError(key, f"expected a finite number, got {describe_value(value)}")
    return float(value)


def str_field(entry: dict, key: str, default: Any = REQUIRED) -> str:
    value = entry.get(key)
    if value is None and default is not REQUIRED:
        return default
    if not isinstance(value, str) or not value and default is REQUIRED:
        raise FieldError(key, "missing" if value is None
                         else f"expected a non-empty string, got {describe_value(value)}")
    return value


def box_field(entry: dict, key: str) -> Optional[list[float]]:
    """A COCO box ``[x, y, w, h]`` of finite numbers, or None when absent or null."""
    value = entry.get(key)
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != BOX_NUMBERS
            or not all(is_finite_number(v) for v in value)):
        raise FieldError(
            key, f"expected {BOX_NUMBERS} finite numbers [x, y, width, height], got {describe_value(value)}")
    return list(value)


def entry_where(entry: Any, index: int, kind: str) -> str:
    """"annotation id 7" when the entry has a usable id, else "annotation 3" (its position in the file)."""
    entry_id = entry.get("id") if isinstance(entry, dict) else None
    if isinstance(entry_id, (int, str)) and not isinstance(entry_id, bool):
        return f"{kind} id {entry_id!r}" if isinstance(entry_id, str) else f"{kind} id {entry_id}"
    return f"{kind} {index}"


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
    if amodal_segmentation is None:
        log.drop("object", "amodal segmentation", "missing", where)
        return None
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
    x, y, w, h = (float(v) for v in bbox)
    return w > 0 and h > 0 and x < width and y < height and x + w > 0 and y + h > 0
