"""Fuzzing the one entry point of masks read from files, ``structures.masks.segmentation_to_rle``.

A few thousand random RLEs (count lists and strings of every kind, sizes right and wrong) and
polygons (random lengths, values, types) must each end, within a time bound, in an RLE that
pycocotools decodes to the image's size or in a ``SegmentationError``; for every accepted count
string, valid or mutated, the validator's run lengths must be those of the mask pycocotools decodes.
pycocotools' C code crashes or loops forever on bad counts, so the fuzzing runs in a subprocess
(this file run as a script): a segfault or a hang fails the test instead of killing pytest.
"""
import json
import subprocess
import sys
import time

import numpy as np

from random_segmentations import random_segmentation

SEED = 0
NUM_CASES = 3000
MAX_SIDE = 48
MAX_SECONDS_PER_CASE = 0.5
SUBPROCESS_TIMEOUT_S = 120


def fuzz() -> dict:
    """Every case through segmentation_to_rle, accepted RLEs decoded and measured; the tally."""
    from pycocotools import mask as mask_utils

    from sln_amodal.structures.masks import (
        SegmentationError,
        decode_rle,
        encode_mask,
        rle_area,
        rle_intersection,
        rle_run_lengths,
        segmentation_to_rle,
    )

    rng = np.random.default_rng(SEED)
    tally = {"accepted": 0, "rejected": 0, "strings_checked": 0, "mutated_checked": 0, "slowest_s": 0.0}
    for _ in range(NUM_CASES):
        height, width = (int(v) for v in rng.integers(1, MAX_SIDE, 2))
        segmentation = random_segmentation(rng, height, width)
        started = time.perf_counter()
        try:
            rle = segmentation_to_rle(segmentation, height, width)
        except SegmentationError:
            tally["rejected"] += 1
        else:
            mask = decode_rle(rle)
            assert mask.shape == (height, width), (segmentation, rle)
            assert rle_area(rle) == mask.sum() == rle_area(rle_intersection(rle, rle))
            tally["accepted"] += 1
            if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
                # The validator's run lengths are those pycocotools decodes the string to (pixel by
                # pixel, column-major), and the accepted RLE is that same mask.
                counts = segmentation["counts"]
                original = mask_utils.decode({"size": [height, width], "counts": counts.encode()}).astype(bool)
                runs = rle_run_lengths(counts)
                pixels = np.repeat(np.arange(len(runs)) % 2 == 1, runs)
                assert (pixels == original.ravel(order="F")).all(), counts
                assert (original == mask).all(), counts
                tally["strings_checked"] += 1
                tally["mutated_checked"] += counts != encode_mask(original)["counts"]
        tally["slowest_s"] = max(tally["slowest_s"], time.perf_counter() - started)
    return tally


def test_random_masks_end_in_a_valid_rle_or_a_clear_error():
    completed = subprocess.run([sys.executable, __file__], capture_output=True, text=True,
                               timeout=SUBPROCESS_TIMEOUT_S)
    assert completed.returncode == 0, f"exit {completed.returncode}\n{completed.stderr[-3000:]}"
    tally = json.loads(completed.stdout.strip().splitlines()[-1])
    assert tally["accepted"] + tally["rejected"] == NUM_CASES
    assert tally["accepted"] > NUM_CASES // 5 and tally["rejected"] > NUM_CASES // 2  # both outcomes exercised
    assert tally["strings_checked"] > 100  # accepted count strings, decoded by both
    assert tally["mutated_checked"] > 10  # among them, strings no encoder writes (mutated, random)
    assert tally["slowest_s"] < MAX_SECONDS_PER_CASE


if __name__ == "__main__":
    print(json.dumps(fuzz()))
