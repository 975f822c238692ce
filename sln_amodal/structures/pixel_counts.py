"""Counting and converting bool masks fast on CPU: exact pixel counts and float copies through
uint8 views (a plain ``sum`` or ``float()`` of a bool tensor first makes a wide copy of it).
"""
from __future__ import annotations

import torch

UINT8_COUNT_LIMIT = torch.iinfo(torch.uint8).max  # a uint8 sum of bools is exact up to this many terms


def count_true(masks: torch.Tensor, dim: int) -> torch.Tensor:
    """Exact number of True entries of a bool tensor along ``dim`` (int64), e.g. masks covering a
    pixel or the pixels of each mask.

    Sums uint8 views in blocks of 255 entries: several times faster on CPU than torch's sum of
    bools, which also makes a full int64 copy first (8 bytes per pixel of every mask).
    """
    values = masks.view(torch.uint8)
    dim = dim % values.dim()
    length = values.shape[dim]
    whole = length - length % UINT8_COUNT_LIMIT
    blocks = values.narrow(dim, 0, whole).unflatten(dim, (whole // UINT8_COUNT_LIMIT, UINT8_COUNT_LIMIT))
    counts = blocks.sum(dim=dim + 1, dtype=torch.uint8).sum(dim=dim)  # an int64 sum of the block counts
    return counts + values.narrow(dim, whole, length - whole).sum(dim=dim, dtype=torch.uint8)


def as_float(values: torch.Tensor) -> torch.Tensor:
    """float32 copy; bools go through a uint8 view, several times faster on CPU than a direct cast."""
    return (values.view(torch.uint8) if values.dtype == torch.bool else values).float()
