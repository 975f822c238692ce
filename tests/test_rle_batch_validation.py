"""The batch RLE validator (``segmentations_to_rles``, ``count_strings_run_lengths``) against one RLE
at a time (``segmentation_to_rle``, ``rle_run_lengths``): the same accept/reject outcomes, messages,
accepted RLEs and run lengths on a few thousand random valid, mutated and broken inputs, all checked
in one batch (so that no string's decoding leaks into its neighbours'). pycocotools only encodes
here (never decodes a bad string), so no subprocess is needed.
"""
import numpy as np

from sln_amodal.structures import masks
from random_segmentations import RLE_ALPHABET, random_segmentation

NUM_CASES = 3000


def mutated_count_string(rng: np.random.Generator, height: int, width: int):
    """A valid count string with inserted, long, deleted or foreign characters (sometimes as bytes)."""
    counts = masks.encode_mask(rng.random((height, width)) < rng.random())["counts"]
    kind, position = int(rng.integers(4)), int(rng.integers(len(counts) + 1))
    if kind == 0:
        inserted = "".join(rng.choice(list(RLE_ALPHABET), int(rng.integers(1, 9))))
        counts = counts[:position] + inserted + counts[position:]
    elif kind == 1:  # a value of 2..9 characters
        counts = counts[:position] + "o" * int(rng.integers(1, 9)) + "0" + counts[position:]
    elif kind == 2:
        counts = counts + "".join(rng.choice(list(RLE_ALPHABET + "é!"), 3))
    else:
        counts = counts[:position] + counts[position + 1:]
    return {"size": [height, width], "counts": counts if rng.random() < 0.8 else counts.encode("latin-1")}


def outcome(function, *args):
    try:
        result = function(*args)
    except masks.SegmentationError as err:
        return "refused", str(err)
    return "accepted", result.tolist() if isinstance(result, np.ndarray) else result


def test_batch_validation_matches_one_at_a_time():
    rng = np.random.default_rng(3)
    segmentations, sizes = [], []
    for _ in range(NUM_CASES):
        height, width = (int(v) for v in rng.integers(1, 48, 2))
        make = mutated_count_string if rng.random() < 0.3 else random_segmentation
        segmentations.append(make(rng, height, width))
        sizes.append((height, width))
    batch = masks.segmentations_to_rles(segmentations, sizes)
    tally = {"accepted": 0, "refused": 0}
    for segmentation, (height, width), result in zip(segmentations, sizes, batch):
        batched = ("refused", str(result)) if isinstance(result, masks.SegmentationError) else ("accepted", result)
        assert batched == outcome(masks.segmentation_to_rle, segmentation, height, width), segmentation
        tally[batched[0]] += 1
    assert min(tally.values()) > NUM_CASES // 10  # both outcomes exercised

    strings = [s["counts"] for s in segmentations if isinstance(s, dict) and isinstance(s.get("counts"), str)]
    decoded = masks.count_strings_run_lengths(strings)
    for index, counts in enumerate(strings):
        batched = (("refused", decoded.errors[index]) if decoded.errors[index]
                   else ("accepted", decoded.runs_of(index).tolist()))
        assert batched == outcome(masks.rle_run_lengths, counts), counts
    accepted = sum(error is None for error in decoded.errors)
    assert accepted > 500 and len(decoded.errors) - accepted > 200
