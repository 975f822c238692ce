"""Mask helpers shared by readers, converters, targets, evaluation and inference outputs.

Masks travel between modules as COCO run-length encodings (``{"size": [h, w], "counts": str}``,
compressed, counts as ``str`` so they serialise to JSON) and become arrays only where pixels are
needed. Arrays are ``uint8``/``bool`` H x W in row-major order.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from ..numbers import is_number, whole_number

MIN_POLYGON_NUMBERS = 6  # a polygon needs three (x, y) points
# pycocotools 2.0.11 area() overflows a uint8 count past 255 masks, so areas go in batches this big.
PYCOCOTOOLS_AREA_BATCH = 255
# Polygon points may lie outside the image (amodal masks of truncated objects), but at most this many
# image sizes away from it.
POLYGON_MARGIN_IMAGES = 1
# pycocotools' compressed counts: characters '0' + 0..63; per character 5 value bits, a sign bit
# (on the last character of a value) and a "more characters follow" bit.
RLE_CHAR_OFFSET = ord("0")
RLE_CHAR_MAX = 63
RLE_BITS_PER_CHAR = 5
RLE_VALUE_BITS = 0x1F
RLE_SIGN_BIT = 0x10
RLE_MORE_BIT = 0x20
# The C decoder shifts in 32-bit ints, so values of more characters (beyond +-2^29) decode wrongly.
RLE_MAX_CHARS_PER_VALUE = 6
MAX_VALUE_CHARS = 60  # of a bad value quoted in an error message
# A resized mask keeps the pixels its bilinear interpolation covers at least this much.
RESIZED_MASK_THRESH = 0.5


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
    """List of RLEs -> N x H x W uint8 array of 0/1 (an empty list gives 0 x H x W).

    The array is a view of column-major storage, the order RLEs run in: each mask's columns are
    contiguous (``arr.transpose(0, 2, 1)`` is C-contiguous). Decoding straight into it saves a
    transposing copy; ``np.ascontiguousarray`` makes one when C order is needed.
    """
    if not rles:
        return np.zeros((0, height, width), dtype=np.uint8)
    compressed = [mask_utils.frPyObjects(r, *r["size"]) if isinstance(r.get("counts"), list) else r for r in rles]
    return mask_utils.decode(compressed).transpose(2, 0, 1)  # (H, W, N) Fortran order -> (N, H, W)


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """A COCO ``segmentation`` (polygon list, flat polygon, RLE with list or string counts) -> RLE.

    The one entry point for masks read from files: it checks everything pycocotools' C code would
    otherwise trust (run lengths that cover exactly ``height * width`` pixels, well-formed count
    strings, finite polygon coordinates near the image), since bad counts make it loop forever or
    crash. Raises ``SegmentationError`` for anything malformed or degenerate, so callers can drop and
    count it.
    """
    if isinstance(segmentation, dict):
        return _checked_rle(segmentation, height, width)
    if not isinstance(segmentation, list) or not segmentation:
        raise SegmentationError(f"expected a polygon list or an RLE dict, got {describe_value(segmentation)}")
    polygons = [segmentation] if not isinstance(segmentation[0], (list, tuple)) else segmentation
    polygons = [_checked_polygon(p, height, width) for p in polygons]
    # pycocotools reads a first polygon of 4 numbers as a box, and shorter ones have no area.
    polygons = [p for p in polygons if len(p) >= MIN_POLYGON_NUMBERS]
    if not polygons:
        raise SegmentationError(f"no polygon with at least {MIN_POLYGON_NUMBERS} numbers")
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def rle_run_lengths(counts: str) -> np.ndarray:
    """The run lengths a compressed COCO count string encodes, decoded as pycocotools' ``rleFrString``
    does (LEB128-like 5-bit groups, runs after the third stored as differences to the run two back).

    Raises ``SegmentationError`` for characters outside the alphabet, a truncated last value, or a
    value too long for the C decoder's ``int`` arithmetic; runs may still be negative (the caller checks).

    Every mask read from a file comes through here, so it is built for speed: the alphabet is checked
    and the longest value found by ``bytes.translate`` and substring search, and the decoding is about
    a dozen whole-array numpy operations whatever the string's length (a value rarely has more than
    two characters, so the loop over the places ends soon).
    """
    try:
        raw = counts.encode("ascii")
    except UnicodeEncodeError:
        raise SegmentationError("RLE counts string holds non-ASCII characters") from None
    if not raw:
        return np.zeros(0, dtype=np.int64)
    if raw.translate(None, _RLE_ALPHABET):
        bad = next(char for char in counts if char.encode("ascii") not in _RLE_ALPHABET)
        raise SegmentationError(f"RLE counts string holds {bad!r}, outside the characters "
                                f"{chr(RLE_CHAR_OFFSET)!r}..{chr(RLE_CHAR_OFFSET + RLE_CHAR_MAX)!r}")
    if raw[-1] >= _RLE_FIRST_MORE_CHAR:
        raise SegmentationError("RLE counts string ends inside a value")
    codes = np.frombuffer(raw, dtype=np.uint8)
    values = _RLE_DIGITS.take(codes)
    marks = raw.translate(_RLE_MORE_MARKS)  # b"M" for each character saying "more follow", b"." for the others
    if b"M" in marks:
        if b"M" * RLE_MAX_CHARS_PER_VALUE in marks:
            raise SegmentationError(
                f"RLE counts string holds a value of more than {RLE_MAX_CHARS_PER_VALUE} characters")
        # A character's place in its value: the number of "more" characters right before it, the
        # k-th of them counted where the k characters before all say "more".
        more = codes >= _RLE_FIRST_MORE_CHAR
        place = np.zeros(codes.size, dtype=np.int64)
        chain = more[:-1]
        place[1:] += chain
        run = b"MM"
        while run in marks:
            chain = chain[1:] & more[:-len(run)]
            place[len(run):] += chain
            run += b"M"
        # Each value is the sum of its characters' digits at their places: differences of a running
        # sum, taken at each value's last character.
        totals = np.add.accumulate(values << (RLE_BITS_PER_CHAR * place))[~more]
        values = totals.copy()
        values[1:] -= totals[:-1]
    # runs[i] = values[i] + runs[i - 2] from i = 3 on: a running sum over each parity from index 1/2,
    # one call over the pairs (runs 1 and 2, 3 and 4, ...), a last unpaired run added by hand.
    later = values[1:]
    paired = later.size & ~1
    if paired:
        pairs = later[:paired].reshape(-1, 2)
        np.add.accumulate(pairs, axis=0, out=pairs)
    if later.size & 1 and later.size > 2:
        later[-1] += later[-3]
    return values


_RLE_ALPHABET = bytes(range(RLE_CHAR_OFFSET, RLE_CHAR_OFFSET + RLE_CHAR_MAX + 1))
_RLE_FIRST_MORE_CHAR = RLE_CHAR_OFFSET + RLE_MORE_BIT  # characters from here on say "more follow"
_RLE_MORE_MARKS = bytes(ord("M") if code >= _RLE_FIRST_MORE_CHAR else ord(".") for code in range(256))


def _rle_digit_table() -> np.ndarray:
    """Byte -> its 5-bit digit, for a value's last character sign-extended (the sign bit is its top
    bit, so subtracting 32 there subtracts 2^(5 x characters) from the value)."""
    table = np.zeros(256, dtype=np.int64)
    for code in range(RLE_CHAR_MAX + 1):
        digit = code & RLE_VALUE_BITS
        last = not code & RLE_MORE_BIT
        table[RLE_CHAR_OFFSET + code] = digit - (1 << RLE_BITS_PER_CHAR) if last and code & RLE_SIGN_BIT else digit
    return table


_RLE_DIGITS = _rle_digit_table()


def _checked_rle(segmentation: dict, height: int, width: int) -> dict:
    if "size" not in segmentation or "counts" not in segmentation:
        raise SegmentationError("RLE needs 'size' and 'counts'")
    size = segmentation["size"]
    sides = [whole_number(side) for side in size] if isinstance(size, (list, tuple)) and len(size) == 2 else [None]
    if None in sides:
        raise SegmentationError(f"RLE size must be [height, width] as two integers, got {describe_value(size)}")
    if sides != [height, width]:
        raise SegmentationError(f"RLE size {list(size)} differs from image size {[height, width]}")
    counts = segmentation["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("latin-1")  # every byte maps to one character; non-ASCII ones are refused below
    if isinstance(counts, str):
        runs = rle_run_lengths(counts)
    elif isinstance(counts, list):
        runs = [whole_number(count) for count in counts]
        if None in runs:
            bad = counts[runs.index(None)]
            raise SegmentationError(f"RLE counts must be integers, got {describe_value(bad)}")
        runs = np.asarray(runs, dtype=np.int64)
    else:
        raise SegmentationError(f"RLE counts must be a string or a list of integers, got {describe_value(counts)}")
    # The smallest run after the first: below 0 is an error, 0 needs the rewrite below.
    smallest_later = int(np.minimum.reduce(runs[1:])) if runs.size > 1 else 1
    if runs.size and min(int(runs[0]), smallest_later) < 0:
        raise SegmentationError(f"RLE counts hold a negative run ({int(runs.min())})")
    total = int(np.add.reduce(runs))
    if total != height * width:
        raise SegmentationError(f"RLE counts cover {total} pixels, the {width}x{height} image has {height * width}")
    # pycocotools' merge miscounts runs of length zero after the first (its encoder never writes
    # them), so such counts are rewritten without them; other count strings pass as they are.
    if isinstance(counts, str) and smallest_later > 0:
        return {"size": [height, width], "counts": counts}
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": _without_empty_runs(runs)}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _without_empty_runs(runs: np.ndarray) -> list[int]:
    """The same mask's run lengths with every zero-length run after the first joined into its neighbours."""
    merged = [int(runs[0])] if runs.size else []
    index = 1
    while index < runs.size:
        if runs[index] == 0:  # the runs on either side hold the same value: one run
            if index + 1 < runs.size:
                merged[-1] += int(runs[index + 1])
            index += 2
        else:
            merged.append(int(runs[index]))
            index += 1
    return merged


def _checked_polygon(polygon, height: int, width: int) -> list[float]:
    if not isinstance(polygon, (list, tuple)):
        raise SegmentationError(f"a polygon must be a list of numbers, got {describe_value(polygon)}")
    if len(polygon) % 2:
        raise SegmentationError(f"a polygon must hold (x, y) pairs, got {len(polygon)} numbers")
    if not all(is_number(v) for v in polygon):
        bad = next(v for v in polygon if not is_number(v))
        raise SegmentationError(f"polygon coordinates must be numbers, got {describe_value(bad)}")
    values = np.asarray(polygon, dtype=np.float64)
    # pycocotools rasterises every edge step by step, so far-away points cost time and memory.
    margin = POLYGON_MARGIN_IMAGES * max(height, width)
    inside = np.isfinite(values) & (values >= -margin) & (values <= margin + max(height, width))
    if not inside.all():
        raise SegmentationError(f"polygon coordinate {float(values[~inside][0])!r} is not a finite number within "
                                f"{margin} pixels of the {width}x{height} image")
    return values.tolist()


def describe_value(value) -> str:
    """A bad value for an error message: its type and a shortened repr (so "1" and 1 read differently)."""
    text = repr(value)
    return f"{type(value).__name__} {text[:MAX_VALUE_CHARS]}{'...' if len(text) > MAX_VALUE_CHARS else ''}"


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


def resize_mask(mask: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """An h x w mask at size (H, W) -> H x W bool (the mask itself when already that size).

    Bilinear interpolation kept where at least ``RESIZED_MASK_THRESH``, so edges stay smooth instead
    of turning into nearest-neighbour blocks; upscaling matches ``F.interpolate(mode="bilinear",
    align_corners=False)`` on the whole mask, shrinking is antialiased. Only the output pixels the
    mask's bounding box reaches are computed, so time and temporary memory follow the object's size
    rather than the image's.
    """
    height, width = int(size[0]), int(size[1])
    if mask.shape == (height, width):
        return mask.astype(bool, copy=False)
    resized = np.zeros((height, width), dtype=bool)
    rows, columns = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return resized
    scale_y, scale_x = height / mask.shape[0], width / mask.shape[1]
    top, bottom = _reached_span(rows[0], rows[-1], scale_y, height)
    left, right = _reached_span(columns[0], columns[-1], scale_x, width)
    # PIL's box resamples just that region in the whole image's geometry (its filter still reads
    # the source pixels around the box); float32 ("F") keeps the interpolation unrounded.
    region = Image.fromarray(mask.astype(np.float32)).resize(
        (right - left, bottom - top), Image.Resampling.BILINEAR,
        box=(left / scale_x, top / scale_y, right / scale_x, bottom / scale_y),
    )
    resized[top:bottom, left:right] = np.asarray(region) >= RESIZED_MASK_THRESH
    return resized


def _reached_span(first: int, last: int, scale: float, extent: int) -> tuple[int, int]:
    """The output pixels [start, stop) along one axis whose bilinear filter reaches source pixels
    first..last, when resizing by ``scale`` into ``extent`` pixels (a superset by up to a pixel)."""
    reach = max(1.0, 1.0 / scale)  # the filter's half-width in source pixels, wider when shrinking
    start = math.floor((first + 0.5 - reach) * scale)
    stop = math.ceil((last + 0.5 + reach) * scale)
    return max(start, 0), min(stop, extent)


def _as_bytes(rle: dict) -> dict:
    counts = rle["counts"]
    if isinstance(counts, list):
        return mask_utils.frPyObjects(rle, *rle["size"])
    return {"size": rle["size"], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
