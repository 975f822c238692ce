"""What the readers of COCO-style source files (COCOA, D2SA, KINS) share.

Such a file lists ``images`` and, separately, ``annotations`` that name their image by
``image_id``. ``read_images`` walks the images, hands each one its annotations, and counts what it
drops: images whose file is missing and annotations that name no listed image.
"""
from __future__ import annotations

import collections
import os
from typing import Callable, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..records import DropLog, ImageRecord, ObjectAnnotation
from .common import build_object, require

# Fills ``record`` from the annotations of its image; returns False after logging why it dropped
# the whole image. Called with (record, annotations, where).
FillRecord = Callable[[ImageRecord, list, str], bool]


def read_images(
    path: str, data: dict, log: DropLog, fill_record: FillRecord, image_root: Optional[str] = None
) -> list[ImageRecord]:
    """One ImageRecord per entry of ``data["images"]`` that is kept, in file order.

    With ``image_root`` given, an image whose file is not there is dropped and counted (its
    annotations are not read). An image without annotations is kept with no objects.
    """
    by_image = collections.defaultdict(list)
    for ann in data["annotations"]:
        by_image[ann.get("image_id")].append(ann)

    records = []
    for image in tqdm(data["images"], desc=f"reading {os.path.basename(path)}", unit="image", disable=None):
        where = f"image id {image.get('id')}"
        image_id = int(require(image, "id", path, where))
        record = ImageRecord(
            file_name=str(require(image, "file_name", path, where)),
            height=int(require(image, "height", path, where)),
            width=int(require(image, "width", path, where)),
            image_id=image_id,
        )
        annotations = by_image.pop(image_id, [])
        log.read("images")
        if image_root is not None and not os.path.isfile(os.path.join(image_root, record.file_name)):
            log.drop("image", "file_name", f"no file {record.file_name!r} in {image_root}", where)
            continue
        if fill_record(record, annotations, where):
            log.kept("images")
            records.append(record)
    for image_id, annotations in by_image.items():
        for ann in annotations:
            log.drop("annotation", "image_id", f"no image with id {image_id}", f"annotation id {ann.get('id')}")
    return records


def known_category(ann: dict, category_ids: set[int], log: DropLog, path: str, where: str) -> Optional[int]:
    """The annotation's ``category_id``, or None after counting the object as read and dropped."""
    category_id = int(require(ann, "category_id", path, where))
    if category_id in category_ids:
        return category_id
    log.read("objects")
    log.drop("object", "category_id", f"unknown category {category_id}", where)
    return None


def build_masked_object(
    log: DropLog, path: str, where: str, height: int, width: int, category_id: int, entry: dict, **fields
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
    return build_object(
        log, where, height, width, category_id,
        require(entry, "segmentation", path, where), entry.get("visible_mask"), **fields,
    )


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
