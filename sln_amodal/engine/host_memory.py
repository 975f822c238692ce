"""Host memory for CPU work: freed tensor memory stays in the process for the next step.

PyTorch's CPU tensors come from the C allocator. glibc serves blocks of 128 KiB and more with fresh
``mmap`` pages and hands them back to the OS when they are freed, so every training step faults
in and zeroes its activations anew: about 10,000 page faults per quickstart step (2 CPU cores,
issue 12 note of 2026-12-07), where a GPU's caching allocator reuses its blocks. With the trim
and mmap thresholds raised, freed blocks are reused (the process keeps its peak memory, as a
caching allocator does). The values a computation gives are unchanged.

A no-op where the C library is not glibc (macOS, Windows, musl).
"""
from __future__ import annotations

import ctypes
import functools
import logging

logger = logging.getLogger(__name__)

# mallopt(3) parameters and the values set
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
KEEP_FREED_BYTES = 2**31 - 1  # mallopt takes a C int: the heap is trimmed only above 2 GiB free
LARGEST_HEAP_BLOCK = 32 * 2**20  # glibc's ceiling for M_MMAP_THRESHOLD on 64-bit systems


@functools.cache
def keep_freed_host_memory() -> bool:
    """Have glibc keep freed memory for reuse (once per process); True when the settings took."""
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
    except (OSError, TypeError):  # TypeError: Windows has no such handle
        return False
    if not hasattr(libc, "gnu_get_libc_version") or not hasattr(libc, "mallopt"):
        return False
    applied = bool(libc.mallopt(M_MMAP_THRESHOLD, LARGEST_HEAP_BLOCK)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, KEEP_FREED_BYTES))
    if not applied:
        logger.warning("glibc refused the mallopt settings; freed host memory goes back to the OS")
    return applied
