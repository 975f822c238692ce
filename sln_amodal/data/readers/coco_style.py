"""What the readers of COCO-style source files (COCOA, D2SA, KINS) share.

Such a file lists ``images`` and, separately, ``annotations`` that name their image by
``image_id``. ``read_images`` walks the images, hands each one its annotations, and counts what it
drops (malformed entries, duplicated image ids, missing image files, annotations naming no image);
``read_objects`` turns one image's annotations into objects the same way.
"""
from __future__ import annotations

import collections
import os
from typing import Any, Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ...structures.masks import describe_value
from ..records import DropLog, ImageRecord, ObjectAnnotation
from .common import FieldError, build_object, entry_where, int_field, positive_int_field, str_field

# Fills ``record`` from the annotations of its image; returns False after logging why it dropped
# the whole image. Called with (record, image entry, annotations, where).
FillRecord = Callable[[ImageRecord, dict, list, str], bool]
# Reads one annotation of the record's image into an object: called with (record, annotation, where).
ReadObject = Callable[[ImageRecord, dict, str], Optional[ObjectAnnotation]]


def read_images(
    path: str, data: dict, log: DropLog, fill_record: FillRecord, image_root: Optional[str] = None
) -> list[ImageRecord]:
    """One ImageRecord per entry of ``data["images"]`` that is kept, in file order.

    Dropped and counted: a malformed image entry, every image whose id another image shares too
    (its annotations could belong to either), an image whose file is missing under ``image_root``
    (when given; its annotations are not read) and annotations that name no kept image. An image
    without annotations is kept with no objects.
    """
    by_image = collections.defaultdict(list)  # image id -> (position in the file, annotation)
    for index, ann in enumerate(data["annotations"]):
        where = entry_where(ann, index, "annotation")
        try:
            if not isinstance(ann, dict):
                raise FieldError("<entry>", f"expected an object, got {describe_value(ann)}")
            by_image[int_field(ann, "image_id")].append((index, ann))
        except FieldError as err:
            log.drop("annotation", err.field, err.reason, where)

    images = []
    for index, image in enumerate(data["images"]):
        where = entry_where(image, index, "image")
        log.read("images")
        try:
            if not isinstance(image, dict):
                raise FieldError("<entry>", f"expected an object, got {describe_value(image)}")
            record = ImageRecord(file_name=str_field(image, "file_name"), height=positive_int_field(image, "height"),
                                 width=positive_int_field(image, "width"), image_id=int_field(image, "id"))
        except FieldError as err:
            log.drop("image", err.field, err.reason, where)
            continue
        images.append((record, image, where))
    copies = collections.Counter(record.image_id for record, _, _ in images)

    records = []
    for record, image, where in tqdm(images, desc=f"reading {os.path.basename(path)}", unit="image", disable=None):
        if copies[record.image_id] > 1:
            by_image.pop(record.image_id, None)
            log.drop("image", "id", f"{copies[record.image_id]} images share id {record.image_id}, so their "
                     "annotations cannot be told apart", where)
            continue
        annotations = [ann for _, ann in by_image.pop(record.image_id, [])]
        if image_root is not None and not os.path.isfile(os.path.join(image_root, record.file_name)):
            log.drop("image", "file_name", f"no file {record.file_name!r} in {image_root}", where)
            continue
        if fill_record(record, image, annotations, where):
            log.kept("images")
            records.append(record)
    for image_id, annotations in by_image.items():
        for index, ann in annotations:
            log.drop("annotation", "image_id", f"no image with id {image_id}", entry_where(ann, index, "annotation"))
    return records


def read_objects(log: DropLog, record: ImageRecord, entries: list, where_of: Callable[[int, Any], str],
                 read_object: ReadObject) -> list[tuple[int, dict, ObjectAnnotation]]:
    """(position, entry, object) for each entry that ``read_object(record, entry, where_of(position, entry))`` keeps.

    ``read_object`` reads the fields first (a malformed one raises FieldError: the entry is counted
    as read and dropped here), then builds the object with ``build_object``, which counts.
    """
    kept = []
    for index, entry in enumerate(entries):
        where = where_of(index, entry)
        try:
            if not isinstance(entry, dict):
                raise FieldError("<entry>", f"expected an object, got {describe_value(entry)}")
            obj = read_object(record, entry, where)
        except FieldError as err:
            log.read("objects")
            log.drop("object", err.field, err.reason, where)
            continue
        if obj is not None:
            kept.append((index, entry, obj))
    return kept


def annotation_where(image_where: str) -> Callable[[int, Any], str]:
    """``where_of`` for ``read_objects`` over one image's annotations: "image id 3 annotation id 7"."""
    return lambda index, ann: f"{image_where} {entry_where(ann, index, 'annotation')}"


def category_field(entry: dict, category_ids: set[int]) -> int:
    """The entry's ``category_id``, one of ``category_ids``; FieldError otherwise."""
    category_id = int_field(entry, "category_id")
    if category_id not in category_ids:
        raise FieldError("category_id", f"unknown category {category_id}")
    return category_id


def build_masked_object(
    log: DropLog, where: str, height: int, width: int, category_id: int, entry: dict, **fields
) -> Optional[ObjectAnnotation]:
    """``build_object`` for an entry laid out the COCOA / D2SA way.

    ``segmentation`` is the amodal mask; ``visible_mask`` is present only when the object is
    occluded, so its absence means fully visible. ``invisible_mask`` is the amodal mask minus the
    visible one and adds nothing, but on its own (no ``visible_mask``) the visible part would be
    unknown, so such an entry is dropped rather than taken as fully visible.
    """
    if entry.get("visible_mask") is None and entry.get("invisible_mask") is not None:
        log.read("objects")
        log.drop("object", "visible_mask", "invisible_mask given without visible_mask", where)
        return None
    return build_object(log, where, height, width, category_id, entry.get("segmentation"), entry.get("visible_mask"),
                        **fields)


def dense_ranks(depths: Sequence[Optional[float]]) -> list[Optional[int]]:
    """Depth values (smaller = nearer; gaps and ties allowed) -> ranks 1..n with the gaps removed.

    Equal depths share a rank; None (unknown) stays None.
    """
    known = [i for i, depth in enumerate(depths) if depth is not None]
    ranks: list[Optional[int]] = [None] * len(depths)
    if known:
        _, inverse = np.unique(np.asarray([depths[i] for i in known], dtype=np.float64), return_inverse=True)
        for index, rank in zip(known, inverse.tolist()):
            ranks[index] = rank + 1
    return ranks


def assign_depth_ranks(objects: list[ObjectAnnotation], depths: Sequence[Optional[float]]) -> None:
    """Set each kept object's ``depth_rank`` from its source depth value (see ``dense_ranks``)."""
    for obj, rank in zip(objects, dense_ranks(depths)):
        obj.depth_rank = rank
