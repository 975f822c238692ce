"""Micro-benchmark: per-RLE cost of ``segmentation_to_rle`` (the validation every mask read from a file
goes through) on compressed RLEs that pycocotools.mask.encode makes of random blobs (unions of ellipses).

    OMP_NUM_THREADS=1 python scripts/bench_rle_validation.py

Prints one line per image size: the number of RLEs, their mean string length and the best of five
timings, in microseconds per RLE, one by one and in batches of ``BATCH_SIZES``.
"""
from __future__ import annotations

import os
import sys
import timeit

import numpy as np
from pycocotools import mask as mask_utils

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sln_amodal.structures.masks import segmentation_to_rle, segmentations_to_rles  # noqa: E402

CASES = ((480, 640, 500), (64, 64, 2000))  # height, width, number of RLEs
BATCH_SIZES = (1, 1000, 100000)  # segmentations_to_rles calls of this many RLEs (the pool repeated)


def blobs(count: int, height: int, width: int, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    rles = []
    for _ in range(count):
        mask = np.zeros((height, width), dtype=bool)
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            ry, rx = rng.uniform(0.05, 0.3) * height, rng.uniform(0.05, 0.3) * width
            mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rles.append({"size": [height, width], "counts": rle["counts"].decode("ascii")})
    return rles


def main() -> None:
    for height, width, count in CASES:
        rles = blobs(count, height, width)
        chars = np.mean([len(rle["counts"]) for rle in rles])
        best = min(timeit.repeat(lambda: [segmentation_to_rle(rle, height, width) for rle in rles], number=1, repeat=5))
        print(f"{height}x{width}: {count} RLEs, {chars:.0f} characters on average: {best / count * 1e6:.2f} us per RLE")
        for batch_size in BATCH_SIZES:
            batch, sizes = (rles * (batch_size // count + 1))[:batch_size], [(height, width)] * batch_size
            calls = max(1, 1000 // batch_size)
            best = min(timeit.repeat(lambda: segmentations_to_rles(batch, sizes), number=calls, repeat=3))
            print(f"  batches of {batch_size}: {best / calls / batch_size * 1e6:.2f} us per RLE")


if __name__ == "__main__":
    main()
