"""Micro-benchmark: per-RLE cost of ``segmentation_to_rle`` (the validation every mask read from a file
goes through) on compressed RLEs that pycocotools.mask.encode makes of random blobs (unions of ellipses).

    OMP_NUM_THREADS=1 python scripts/bench_rle_validation.py

Prints one line per image size: the number of RLEs, their mean string length and the best of five
timings, in microseconds per RLE, one by one and all in one batch (``segmentations_to_rles``, the
path the results reader takes), beside the same RLEs' area computed by pycocotools (the cheapest
full pass its C code makes over a count string) as the reference measured in the same run; ends with
one JSON line of the figures and their ratios.
"""
from __future__ import annotations

import json
import timeit

import numpy as np
from pycocotools import mask as mask_utils


from sln_amodal.structures.masks import segmentation_to_rle, segmentations_to_rles

CASES = ((480, 640, 2000), (64, 64, 10000))  # height, width, number of RLEs


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


def best_us_per_rle(work, count: int) -> float:
    return min(timeit.repeat(work, number=1, repeat=5)) / count * 1e6


def main() -> None:
    figures = {}
    for height, width, count in CASES:
        rles = blobs(count, height, width)
        chars = np.mean([len(rle["counts"]) for rle in rles])
        ours = best_us_per_rle(lambda: [segmentation_to_rle(rle, height, width) for rle in rles], count)
        batched = best_us_per_rle(lambda: segmentations_to_rles(rles, [(height, width)] * count), count)
        reference = best_us_per_rle(lambda: [mask_utils.area(rle) for rle in rles], count)
        print(f"{height}x{width}: {count} RLEs, {chars:.0f} characters on average: {ours:.2f} us per RLE one by one, "
              f"{batched:.2f} us in one batch (pycocotools area: {reference:.2f} us, ratios {ours / reference:.1f} "
              f"and {batched / reference:.1f})")
        figures[f"{height}x{width}"] = {
            "rles": count, "chars": round(float(chars)), "us_per_rle": round(ours, 2),
            "us_per_rle_batched": round(batched, 2), "pycocotools_area_us": round(reference, 2),
            "ratio": round(ours / reference, 2), "ratio_batched": round(batched / reference, 2)}
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
