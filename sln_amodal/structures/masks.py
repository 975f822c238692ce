"""Mask helpers shared by readers, converters, targets and evaluation.

Masks travel between modules as COCO run-length encodings (``{"size": [h, w], "counts": str}``,
compressed, counts as ``str`` so they serialise to JSON) and become arrays only where pixels are
needed. Arrays are ``uint8``/``bool`` H x W in row-major order.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils

MIN_POLYGON_NUMBERS = 6  # a polygon needs three (x, y) points
# pycocotools 2.0.11 area() overflows a uint8 count past 255 masks, so areas go in batches this big.
PYCOCOTOOLS_AREA_BATCH = 255


class SegmentationError(ValueError):
    """A segmentation that cannot be turned into a mask (wrong type, too short, wrong size)."""


def encode_mask(mask: np.ndarray) -> dict:
    """H x W bool/uint8 array -> compressed RLE with ``str`` counts."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def encode_masks(masks: np.ndarray) -> list[dict]:
    """N x H x W array -> list of compressed RLEs (one pycocotools call for the whole stack)."""
    if len(masks) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8, copy=False)))
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def decode_rle(rle: dict) -> np.ndarray:
    """Compressed or uncompressed RLE -> H x W bool array."""
    if isinstance(rle.get("counts"), list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    return mask_utils.decode(rle).astype(bool)


def decode_rles(rles: Sequence[dict], height: int, width: int) -> np.ndarray:
    """List of RLEs -> N x H x W bool array (an empty list gives 0 x H x W)."""
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    return np.stack([decode_rle(r) for r in rles])


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """A COCO ``segmentation`` (polygon list, flat polygon, RLE with list or string counts) -> RLE.

    Raises ``SegmentationError`` for anything degenerate, so callers can drop and count it.
    """
    if isinstance(segmentation, dict):
        size = segmentation.get("size")
        if size is None or "counts" not in segmentation:
            raise SegmentationError("RLE needs 'size' and 'counts'")
        if [int(s) for s in size] != [height, width]:
            raise SegmentationError(f"RLE size {list(size)} differs from image size {[height, width]}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
        rle = dict(rle)
        if isinstance(rle["counts"], bytes):
            rle["counts"] = rle["counts"].decode("ascii")
        return rle
    if not isinstance(segmentation, list) or not segmentation:
        raise SegmentationError(f"expected a polygon list or an RLE dict, got {type(segmentation).__name__}")
    polygons = [segmentation] if not isinstance(segmentation[0], (list, tuple)) else segmentation
    polygons = [[float(v) for v in p] for p in polygons if len(p) >= MIN_POLYGON_NUMBERS and len(p) % 2 == 0]
    if not polygons:
        raise SegmentationError(f"no polygon with at least {MIN_POLYGON_NUMBERS} numbers")
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_area(rle: dict) -> int:
    return int(mask_utils.area(_as_bytes(rle)))


def rle_areas(rles: Sequence[dict]) -> np.ndarray:
    """Pixel counts of many RLEs as an int64 array (batched pycocotools calls)."""
    objs = [_as_bytes(r) for r in rles]
    batch = PYCOCOTOOLS_AREA_BATCH
    batches = [mask_utils.area(objs[i:i + batch]) for i in range(0, len(objs), batch)]
    return np.concatenate(batches).astype(np.int64) if batches else np.zeros(0, dtype=np.int64)


def rle_intersection_areas(first: Sequence[dict], second: Sequence[dict]) -> np.ndarray:
    """|first[i] AND second[i]| in pixels for each i, without decoding any mask."""
    return rle_areas([mask_utils.merge([_as_bytes(a), _as_bytes(b)], intersect=True) for a, b in zip(first, second)])


def rle_pairwise_intersection_areas(first: Sequence[dict], second: Sequence[dict],
                                    first_areas: np.ndarray | None = None) -> np.ndarray:
    """|first[i] AND second[j]| in pixels for every i and j, (len(first), len(second)) int64, in one C call.

    pycocotools' crowd-style IoU is the intersection over the first mask's area, so scaling it back
    by that area gives the pixel count (exact: both are integers far below 2^52; an empty first mask
    has IoU 0 and area 0). ``first_areas``: the pixel counts of ``first``, where the caller has them.
    """
    if not first or not second:
        return np.zeros((len(first), len(second)), dtype=np.int64)
    first = [_as_bytes(r) for r in first]
    share = np.asarray(mask_utils.iou(first, [_as_bytes(r) for r in second], np.ones(len(second), dtype=np.uint8)))
    areas = rle_areas(first) if first_areas is None else first_areas
    return np.rint(share * areas[:, None]).astype(np.int64)


def rle_to_bbox(rle: dict) -> list[float]:
    """Tight box of the mask as COCO ``[x, y, w, h]`` (zeros for an empty mask)."""
    return [float(v) for v in mask_utils.toBbox(_as_bytes(rle))]


def rle_intersection(a: dict, b: dict) -> dict:
    rle = mask_utils.merge([_as_bytes(a), _as_bytes(b)], intersect=True)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def mask_to_bbox(mask: np.ndarray) -> list[float]:
    """Tight ``[x, y, w, h]`` box of an H x W mask, in pixel-edge coordinates."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [0.0, 0.0, 0.0, 0.0]
    return [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]


def _as_bytes(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(rle, *rle["size"])
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
