"""COCOA, the amodalAPI JSON (e.g. ``COCO_amodal_train2014.json``) -> AnnotationSet.

The file has one annotation record per (image, annotator), each with a list of ``regions``. A
region's amodal mask is ONE flat polygon ``[x1, y1, x2, y2, ...]`` in ``segmentation``;
``visible_mask`` / ``invisible_mask`` RLEs exist only on occluded regions; ``order`` is its depth
(1 = front, values may skip: 1, 3, 4); ``isStuff`` is 0/1; ``name`` is free text. The record may
carry ``depth_constraint``, a string such as ``"1-2,1-3,2-3"``: region a is in front of region b,
1-based indices into ``regions``. COCOA is class-agnostic: every region is category 1.
"""
from __future__ import annotations

from typing import Optional

from ...structures.masks import describe_value
from ..data_types import DataType, ReaderOption, SplitLayout, register_data_type
from ..records import AnnotationSet, DropLog, ImageRecord, ObjectAnnotation
from .coco_style import assign_depth_ranks, build_masked_object, read_images, read_objects
from .common import bool_field, load_annotation_file, number_field, str_field

OBJECT_CATEGORY_ID = 1
OBJECT_CATEGORIES = [{"id": OBJECT_CATEGORY_ID, "name": "object"}]  # the class-agnostic datasets' one class
CONSTRAINT_SEPARATOR = ","  # between the pairs of a depth_constraint string
PAIR_SEPARATOR = "-"  # between the front and the back region of one pair


def read_cocoa(
    path: str, strict: bool = False, log: DropLog | None = None, annotator: int = 0, image_root: Optional[str] = None
) -> AnnotationSet:
    """Read ``path`` using, for every image, its ``annotator``-th record in file order.

    An image with records but none for that annotator is dropped and counted; an image nobody
    annotated is kept with no objects. ``image_root``: see ``coco_style.read_images``.
    """
    if annotator < 0:
        raise ValueError(f"annotator must be a record index >= 0, got {annotator}")
    data = load_annotation_file(path, ("images", "annotations"))  # COCOA has no categories
    log = log or DropLog(path, strict)

    def read_region(record: ImageRecord, region: dict, where: str) -> Optional[ObjectAnnotation]:
        number_field(region, "order")  # a malformed order drops the region before it is built
        return build_masked_object(
            log, where, record.height, record.width, OBJECT_CATEGORY_ID, region,
            is_stuff=bool_field(region, "isStuff"), name=str_field(region, "name", ""),
        )

    def fill_record(record: ImageRecord, image: dict, records_of_image: list, where: str) -> bool:
        if not records_of_image:
            return True
        if annotator >= len(records_of_image):
            log.drop("image", "annotations", f"{len(records_of_image)} annotator record(s), "
                     f"annotator {annotator} requested", where)
            return False
        chosen = records_of_image[annotator]
        record_where = f"{where} annotator {annotator}"
        regions = chosen.get("regions")
        if not isinstance(regions, list):
            log.drop("image", "regions", "missing" if regions is None else
                     f"expected a list of regions, got {describe_value(regions)}", record_where)
            return False
        kept = read_objects(log, record, regions, lambda index, _: f"{record_where} region {index + 1}", read_region)
        record.objects = [obj for _, _, obj in kept]
        object_of_region = {index: position for position, (index, _, _) in enumerate(kept)}
        assign_depth_ranks(record.objects, [number_field(region, "order") for _, region, _ in kept])
        constraint = chosen.get("depth_constraint") or ""
        if not isinstance(constraint, str):
            log.drop("depth constraint", "depth_constraint", f"expected a string such as '1-2,2-3', got "
                     f"{describe_value(constraint)}", record_where)
            constraint = ""
        record.depth_constraints = parse_depth_constraint(constraint, len(regions), object_of_region, log,
                                                          record_where)
        return True

    records = read_images(path, data, log, fill_record, image_root)
    return AnnotationSet(categories=[dict(c) for c in OBJECT_CATEGORIES], records=records)


def parse_depth_constraint(
    text: str, num_regions: int, object_of_region: dict[int, int], log: DropLog, where: str
) -> list[tuple[int, int]]:
    """``"1-2,1-3"`` -> (front, back) object indices; a pair naming a dropped region is dropped and counted."""
    pairs = []
    for token in (t.strip() for t in str(text).split(CONSTRAINT_SEPARATOR)):
        if not token:
            continue
        log.read("depth constraints")
        try:
            front, back = (int(number) - 1 for number in token.split(PAIR_SEPARATOR))
        except ValueError:
            log.drop("depth constraint", "depth_constraint", f"cannot parse {token!r}", where)
            continue
        if not (0 <= front < num_regions and 0 <= back < num_regions) or front == back:
            log.drop("depth constraint", "depth_constraint", f"{token!r} does not name two of the "
                     f"{num_regions} regions", where)
        elif front not in object_of_region or back not in object_of_region:
            log.drop("depth constraint", "depth_constraint", f"{token!r} names a dropped region", where)
        else:
            pairs.append((object_of_region[front], object_of_region[back]))
            log.kept("depth constraints")
    return pairs


register_data_type(DataType(
    "COCOA", read_cocoa,
    splits={"train": SplitLayout(("annotations/COCO_amodal_train2014.json",), "train2014"),
            "val": SplitLayout(("annotations/COCO_amodal_val2014.json",), "val2014")},
    options=(ReaderOption("annotator", "COCOA_ANNOTATOR", "--annotator", int,
                          "which annotator record of each image to use (0 = first)"),),
))
