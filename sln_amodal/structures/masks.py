"""Mask helpers shared by readers, converters, targets, evaluation and inference outputs.

Masks travel between modules as COCO run-length encodings (``{"size": [h, w], "counts": str}``,
compressed, counts as ``str`` so they serialise to JSON) and become arrays only where pixels are
needed. Arrays are ``uint8``/``bool`` H x W in row-major order.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
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
# Count strings decoded together, at most this many characters at a time (unless one is longer).
RLE_BATCH_CHARS = 1 << 22
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
        result = segmentations_to_rles([segmentation], [(height, width)])[0]
        if isinstance(result, SegmentationError):
            raise result
        return result
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
    One string through ``count_strings_run_lengths``, the one decoder.
    """
    decoded = count_strings_run_lengths([counts])
    if decoded.errors[0] is not None:
        raise SegmentationError(decoded.errors[0])
    return decoded.runs


@dataclass
class RunLengthBatch:
    """The run lengths of N count strings (or count lists), concatenated: string ``i``'s runs are
    ``runs[starts[i]:starts[i + 1]]``; ``errors[i]`` is why string ``i`` is refused, None if it is not
    (its runs are then meaningful, otherwise they are not)."""

    runs: np.ndarray  # (total runs,) int64
    starts: np.ndarray  # (N + 1,) int64
    errors: list  # N of str or None

    def runs_of(self, index: int) -> np.ndarray:
        return self.runs[self.starts[index]:self.starts[index + 1]]


def count_strings_run_lengths(strings: Sequence[str]) -> RunLengthBatch:
    """``rle_run_lengths`` of many strings in one vectorised pass: the same runs, and per string the
    message ``rle_run_lengths`` would raise (the first problem in the order: non-ASCII characters,
    a character outside the alphabet (the first one quoted), a truncated last value, a value of more
    than ``RLE_MAX_CHARS_PER_VALUE`` characters).

    All strings become one byte buffer; a value ends at each character without the "more" bit (and,
    so that no value spans two strings, at each string's last character); each value is the sum of
    its characters' sign-extended digits shifted to their places, and the runs after each string's
    third are running sums over the string's two interleaved parities. The work is a few dozen numpy
    calls over the buffer, however many strings it holds; memory is a few dozen bytes per character.
    """
    errors = [None] * len(strings)
    try:
        raw = "".join(strings).encode("ascii")
    except UnicodeEncodeError:  # rare: find the strings at fault, decode the others
        for index, counts in enumerate(strings):
            if not counts.isascii():
                errors[index] = "RLE counts string holds non-ASCII characters"
        strings = [counts if error is None else "" for counts, error in zip(strings, errors)]
        raw = "".join(strings).encode("ascii")
    lengths = np.fromiter(map(len, strings), dtype=np.int64, count=len(strings))
    char_starts = np.zeros(len(strings) + 1, dtype=np.int64)
    np.cumsum(lengths, out=char_starts[1:])
    codes = np.frombuffer(raw, dtype=np.uint8)
    nonempty = np.flatnonzero(lengths)
    last_chars = char_starts[1:][nonempty] - 1

    value_end = codes < _RLE_FIRST_MORE_CHAR
    value_end[last_chars] = True  # no value spans two strings (the truncated one is refused)
    value_ends = np.flatnonzero(value_end)
    value_starts = np.zeros(value_ends.size, dtype=np.int64)
    value_starts[1:] = value_ends[:-1] + 1
    value_chars = value_ends - value_starts + 1
    run_starts = np.searchsorted(value_ends, char_starts)  # string i's values: run_starts[i]:run_starts[i + 1]

    # Per-string problems, each string reporting only its first (in the order of the docstring).
    first_outside = {}
    if raw.translate(None, _RLE_ALPHABET):
        outside = np.flatnonzero((codes < RLE_CHAR_OFFSET) | (codes > RLE_CHAR_OFFSET + RLE_CHAR_MAX))
        bad_strings, first_bad = np.unique(np.searchsorted(char_starts, outside, side="right") - 1, return_index=True)
        first_outside = dict(zip(bad_strings.tolist(), outside[first_bad].tolist()))
    truncated = np.zeros(len(strings), dtype=bool)
    truncated[nonempty[codes[last_chars] >= _RLE_FIRST_MORE_CHAR]] = True
    too_long = np.zeros(len(strings), dtype=bool)
    long_values = np.flatnonzero(value_chars > RLE_MAX_CHARS_PER_VALUE)
    too_long[np.searchsorted(run_starts, long_values, side="right") - 1] = True
    for index in np.flatnonzero(truncated | too_long).tolist() + list(first_outside):
        if errors[index] is None:
            errors[index] = _count_string_error(index, first_outside, truncated, raw)

    # Values: the digits (the last character's sign-extended) at their places, place by place over
    # the values that long (those of refused strings stop at the longest place allowed).
    digits = _RLE_DIGITS.take(codes)
    values = digits[value_starts]
    for place in range(1, RLE_MAX_CHARS_PER_VALUE):
        longer = np.flatnonzero(value_chars > place)
        if not longer.size:
            break
        values[longer] += digits[value_starts[longer] + place] << (RLE_BITS_PER_CHAR * place)
    value_counts = np.diff(run_starts)
    return RunLengthBatch(_undo_run_deltas(values, run_starts, value_counts), run_starts, errors)


def _count_string_error(index: int, first_outside: dict, truncated: np.ndarray, raw: bytes) -> str:
    """The first problem of refused string ``index`` (see ``count_strings_run_lengths``)."""
    if index in first_outside:
        bad = chr(raw[first_outside[index]])
        return (f"RLE counts string holds {bad!r}, outside the characters "
                f"{chr(RLE_CHAR_OFFSET)!r}..{chr(RLE_CHAR_OFFSET + RLE_CHAR_MAX)!r}")
    if truncated[index]:
        return "RLE counts string ends inside a value"
    return f"RLE counts string holds a value of more than {RLE_MAX_CHARS_PER_VALUE} characters"


def _undo_run_deltas(values: np.ndarray, run_starts: np.ndarray, value_counts: np.ndarray) -> np.ndarray:
    """Run lengths from decoded values: in each string, ``runs[j] = values[j] + runs[j - 2]`` for j >= 3.

    So ``runs[j]`` (j >= 1) is the sum of the string's values at j, j - 2, ... down to 1 or 2: a
    running sum over each parity of the whole buffer (a string's same-parity runs share the buffer's
    parity) minus that sum just before the string, the string's own first value left out of it.
    Sums wrap around in int64 for huge inputs, which leaves the differences exact.
    """
    firsts = run_starts[:-1][value_counts > 0]
    later = values.copy()
    later[firsts] = 0
    for parity in (0, 1):
        np.cumsum(later[parity::2], out=later[parity::2])
    # Before the string: for the first run's parity, the sum at the first run (its value left out);
    # for the other, the sum at the position before the string (0 at the buffer's start).
    before_same = later[firsts]
    before_other = np.zeros(firsts.size, dtype=np.int64)
    before_other[firsts > 0] = later[firsts[firsts > 0] - 1]
    counts = value_counts[value_counts > 0]
    index_in_string = np.arange(values.size, dtype=np.int64) - np.repeat(firsts, counts)
    odd = (index_in_string & 1).astype(bool)
    runs = later - np.where(odd, np.repeat(before_other, counts), np.repeat(before_same, counts))
    runs[firsts] = values[firsts]
    return runs


def check_run_lengths(batch: RunLengthBatch, heights: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Refuse, in ``batch.errors``, the RLEs with a negative run or runs that do not cover exactly
    ``heights[i] * widths[i]`` pixels (the message quotes the smallest run, or the total); those
    already refused keep their message. Returns, per RLE, whether a run after its first is empty
    (pycocotools' merge miscounts those, so such RLEs must be re-encoded without them)."""
    count = len(batch.errors)
    runs = batch.runs
    value_counts = np.diff(batch.starts)
    nonempty = value_counts > 0
    firsts = batch.starts[:-1][nonempty]
    totals = np.zeros(count, dtype=np.int64)
    smallest = np.zeros(count, dtype=np.int64)
    if runs.size:
        totals[nonempty] = np.add.reduceat(runs, firsts)
        smallest[nonempty] = np.minimum.reduceat(runs, firsts)
    empty_later = np.zeros(count, dtype=bool)
    later_zero = runs == 0
    later_zero[firsts] = False
    empty_later[np.searchsorted(batch.starts, np.flatnonzero(later_zero), side="right") - 1] = True
    pixels = heights.astype(np.int64) * widths
    for index in np.flatnonzero((smallest < 0) | (totals != pixels)).tolist():
        if batch.errors[index] is not None:
            continue
        if smallest[index] < 0:
            batch.errors[index] = f"RLE counts hold a negative run ({int(smallest[index])})"
        else:
            batch.errors[index] = (f"RLE counts cover {int(totals[index])} pixels, the {int(widths[index])}x"
                                   f"{int(heights[index])} image has {int(pixels[index])}")
    return empty_later


_RLE_ALPHABET = bytes(range(RLE_CHAR_OFFSET, RLE_CHAR_OFFSET + RLE_CHAR_MAX + 1))
_RLE_FIRST_MORE_CHAR = RLE_CHAR_OFFSET + RLE_MORE_BIT  # characters from here on say "more follow"


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


def segmentations_to_rles(segmentations: Sequence, sizes: Sequence[tuple[int, int]]) -> list:
    """``segmentation_to_rle`` of many segmentations at once: per segmentation (of image size
    ``sizes[i]`` = (height, width)), the RLE it returns or the ``SegmentationError`` it raises,
    with the same message.

    RLE dicts are checked together, their count strings decoded by ``count_strings_run_lengths`` in
    batches of about ``RLE_BATCH_CHARS`` characters (which bounds the memory), so a results file of
    a million masks costs a few dozen numpy calls per batch rather than per mask; polygons go one
    by one.
    """
    results: list = [None] * len(segmentations)
    strings, lists = [], []  # (index, counts) of RLE dicts whose size and counts type are right
    for index, (segmentation, (height, width)) in enumerate(zip(segmentations, sizes)):
        try:
            if isinstance(segmentation, dict):
                counts = _rle_counts(segmentation, height, width)
                (strings if isinstance(counts, str) else lists).append((index, counts))
            else:
                results[index] = segmentation_to_rle(segmentation, height, width)
        except SegmentationError as err:
            results[index] = err
    if lists:
        _check_rles(results, lists, _count_lists_run_lengths([counts for _, counts in lists]), sizes)
    begin = 0
    while begin < len(strings):
        end, chars = begin, 0
        while end < len(strings) and (end == begin or chars + len(strings[end][1]) <= RLE_BATCH_CHARS):
            chars += len(strings[end][1])
            end += 1
        batch = strings[begin:end]
        _check_rles(results, batch, count_strings_run_lengths([counts for _, counts in batch]), sizes)
        begin = end
    return results


def _check_rles(results: list, entries: list, decoded: RunLengthBatch, sizes: Sequence[tuple[int, int]]) -> None:
    """Put into ``results`` the checked RLE (or the error) of each (index, counts) of ``entries``,
    whose run lengths ``decoded`` holds."""
    heights = np.fromiter((sizes[index][0] for index, _ in entries), dtype=np.int64, count=len(entries))
    widths = np.fromiter((sizes[index][1] for index, _ in entries), dtype=np.int64, count=len(entries))
    empty_later = check_run_lengths(decoded, heights, widths)
    rewrite = empty_later.tolist()
    for position, (index, counts) in enumerate(entries):
        height, width = sizes[index]
        if decoded.errors[position] is not None:
            results[index] = SegmentationError(decoded.errors[position])
        # pycocotools' merge miscounts runs of length zero after the first (its encoder never
        # writes them), so such counts are rewritten without them, and count lists are encoded;
        # other count strings pass as they are.
        elif isinstance(counts, str) and not rewrite[position]:
            results[index] = {"size": [height, width], "counts": counts}
        else:
            runs = _without_empty_runs(decoded.runs_of(position))
            rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
            results[index] = {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _rle_counts(segmentation: dict, height: int, width: int):
    """An RLE dict's counts (a ``str``, bytes read as latin-1, or a list), once its size is checked
    to be ``[height, width]``; raises ``SegmentationError`` otherwise, or for counts of another type."""
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
        counts = counts.decode("latin-1")  # every byte maps to one character; non-ASCII ones are refused later
    if not isinstance(counts, (str, list)):
        raise SegmentationError(f"RLE counts must be a string or a list of integers, got {describe_value(counts)}")
    return counts


def _count_lists_run_lengths(count_lists: Sequence[list]) -> RunLengthBatch:
    """Count lists as a ``RunLengthBatch``: a list holding anything but whole numbers is refused."""
    errors, arrays = [], []
    for counts in count_lists:
        runs = [whole_number(count) for count in counts]
        if None in runs:
            errors.append(f"RLE counts must be integers, got {describe_value(counts[runs.index(None)])}")
            runs = []
        else:
            errors.append(None)
        arrays.append(np.asarray(runs, dtype=np.int64))
    starts = np.zeros(len(arrays) + 1, dtype=np.int64)
    np.cumsum([array.size for array in arrays], out=starts[1:])
    return RunLengthBatch(np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64), starts, errors)


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
