"""What counts as a number in the files this project reads: the one definition every reader, mask
check and results check uses, so a value reads the same wherever it appears.

JSON has one number type, and tools write whole numbers either way (``64`` or ``64.0``), so a whole
number is accepted in both forms (pycocotools, too, takes ``[64.0, 64]`` as an RLE size). Booleans
are never numbers here, although Python's ``bool`` is an ``int``.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

REAL_TYPES = (int, float, np.integer, np.floating)
UINT8_MAX = int(np.iinfo(np.uint8).max)  # the full scale of 8-bit images
# Hues this fraction of the circle apart never repeat and stay far apart for small counts: object
# colours in pictures, object fills in the synthetic data.
GOLDEN_RATIO_CONJUGATE = (math.sqrt(5) - 1) / 2


def is_number(value: Any) -> bool:
    """An int or float (numpy's too), not a bool; possibly NaN or infinite."""
    return isinstance(value, REAL_TYPES) and not isinstance(value, (bool, np.bool_))


def is_finite_number(value: Any) -> bool:
    """A number (see ``is_number``) that is neither NaN nor infinite."""
    return is_number(value) and math.isfinite(value)


def whole_number(value: Any) -> Optional[int]:
    """``value`` as an int when it is a whole number: an int, or a finite float without a fractional
    part (``3.0``); None for anything else (``3.5``, ``"3"``, ``True``, NaN)."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None
