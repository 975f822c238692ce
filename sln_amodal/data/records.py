"""The internal per-image record every reader produces and every consumer reads (SPEC section 5).

Masks are COCO RLEs at the image's own resolution (see ``structures.masks``), so a whole dataset
fits in memory; pixels are decoded only where they are needed.
"""
from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from typing import Iterable, Optional

logger = logging.getLogger(__name__)


@dataclass
class ObjectAnnotation:
    category_id: int  # the dataset's own category id (see AnnotationSet.categories)
    amodal: dict  # RLE of the whole object, hidden parts included
    visible: dict  # RLE of the visible part; a subset of ``amodal``
    bbox: tuple[float, float, float, float]  # amodal box, COCO [x, y, w, h]
    occlude_rate: float  # 1 - |visible| / |amodal|
    depth_rank: Optional[int] = None  # 1 = front-most in the image; None when unknown
    is_stuff: bool = False
    iscrowd: bool = False
    ann_id: Optional[int] = None  # id in the source annotation file, kept for traceability
    name: str = ""  # free-text name (COCOA)


@dataclass
class ImageRecord:
    file_name: str  # relative to the dataset's image folder
    height: int
    width: int
    image_id: int
    objects: list[ObjectAnnotation] = field(default_factory=list)
    # Pairwise depth constraints as (front, back) indices into ``objects``.
    depth_constraints: list[tuple[int, int]] = field(default_factory=list)


@dataclass
class AnnotationSet:
    """A dataset split: its categories (COCO ``categories`` entries) and image records."""

    categories: list[dict]
    records: list[ImageRecord]

    def contiguous_ids(self) -> dict[int, int]:
        """Dataset category id -> contiguous label 1..C (0 is background), in id order."""
        return {category_id: label for label, category_id in enumerate(category_ids_of(self.categories), start=1)}


def category_ids_of(categories: Iterable[dict]) -> list[int]:
    """Dataset category ids in label order: label i (1..C) is ``category_ids[i - 1]`` (ids sorted)."""
    return sorted(int(c["id"]) for c in categories)


def class_names_of(categories: Iterable[dict]) -> list[str]:
    """Category names in label order (the id where a category has no name): ``names[i - 1]`` names label i."""
    by_id = {int(c["id"]): str(c.get("name", c["id"])) for c in categories}
    return [by_id[category_id] for category_id in category_ids_of(categories)]


class AnnotationError(ValueError):
    """Bad input that names the file and the field."""

    def __init__(self, file: str, field: str, message: str):
        super().__init__(f"{file}: {field}: {message}")
        self.file, self.field = file, field


class DropLog:
    """Counts what a reader read, kept and dropped (by reason); in strict mode a drop raises."""

    def __init__(self, source: str, strict: bool = False):
        self.source = source
        self.strict = strict
        self.counts: collections.Counter = collections.Counter()
        self.dropped: collections.Counter = collections.Counter()

    def read(self, what: str, n: int = 1) -> None:
        self.counts[f"{what} read"] += n

    def kept(self, what: str, n: int = 1) -> None:
        self.counts[f"{what} kept"] += n

    def drop(self, what: str, field: str, reason: str, where: str = "") -> None:
        """Record one dropped ``what`` (image/object); raises AnnotationError when strict."""
        location = f"{self.source}{' ' + where if where else ''}"
        if self.strict:
            raise AnnotationError(location, field, reason)
        self.dropped[f"{what}: {field}: {reason}"] += 1
        logger.debug("dropped %s at %s: %s: %s", what, location, field, reason)

    def summary(self) -> str:
        lines = [f"{self.source}:"]
        lines += [f"  {key}: {n}" for key, n in sorted(self.counts.items())]
        if self.dropped:
            lines.append(f"  dropped: {sum(self.dropped.values())}")
            lines += [f"    {reason}: {n}" for reason, n in self.dropped.most_common()]
        else:
            lines.append("  dropped: 0")
        return "\n".join(lines)
