"""Random segmentations of the kinds annotation files hold, valid and broken (RLEs of every kind,
sizes right and wrong, polygons of random lengths, values and types); shared by the mask fuzzing
and the batched RLE validation tests.
"""
import numpy as np


RLE_ALPHABET = "".join(chr(48 + i) for i in range(64))


def random_segmentation(rng: np.random.Generator, height: int, width: int):
    """One random input: valid or broken, RLE or polygon, of the kinds files really hold and worse."""
    kind = int(rng.integers(10))
    pixels = height * width
    if kind == 0:  # a valid mask, compressed
        from sln_amodal.structures.masks import encode_mask
        return encode_mask(rng.random((height, width)) < rng.random())
    if kind == 1:  # a valid mask, uncompressed counts, or compressed with the zero-length runs they may hold
        cuts = np.sort(rng.integers(0, pixels + 1, int(rng.integers(0, 8))))
        runs = np.diff(np.r_[0, cuts, pixels]).tolist()
        if rng.random() < 0.5:  # zero-length runs, which no encoder writes, and compressed
            from pycocotools import mask as mask_utils
            for _ in range(int(rng.integers(0, 3))):
                runs.insert(int(rng.integers(1, len(runs) + 1)), 0)
            runs = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)["counts"].decode()
        return {"size": [height, width], "counts": runs}
    if kind == 2:  # counts that do not add up, or negative ones
        return {"size": [height, width], "counts": rng.integers(-pixels, 2 * pixels, int(rng.integers(0, 6))).tolist()}
    if kind == 3:  # random strings over the count alphabet (and a little beyond)
        alphabet = RLE_ALPHABET + "!~ \x00é"
        length = int(rng.integers(0, 40))
        return {"size": [height, width], "counts": "".join(rng.choice(list(alphabet), length))}
    if kind == 4:  # a valid string, truncated or with one character changed
        from sln_amodal.structures.masks import encode_mask
        counts = encode_mask(rng.random((height, width)) < 0.5)["counts"]
        position = int(rng.integers(len(counts)))
        if rng.random() < 0.5:
            return {"size": [height, width], "counts": counts[:position]}
        return {"size": [height, width], "counts": counts[:position] + pick(rng, RLE_ALPHABET) + counts[position + 1:]}
    if kind == 5:  # wrong or malformed sizes
        size = pick(rng, [[height + 1, width], [width + 1, height], "64x64", [height], [float(height), width], None,
                          [-1, 1], [True, width]])
        return {"size": size, "counts": [pixels]} if size is not None else {"counts": [pixels]}
    if kind == 6:  # counts of the wrong type
        bad_counts = [123, None, 1.5, ["a"], [True, pixels], {"a": 1}, [1.0] * 3]
        return {"size": [height, width], "counts": pick(rng, bad_counts)}
    if kind == 7:  # polygons: random lengths and coordinates, in and far outside the image
        parts = [(rng.random(int(rng.integers(0, 14))) * pick(rng, [1, 3, 1e6]) * max(height, width)
                  - rng.random() * width).tolist() for _ in range(int(rng.integers(1, 4)))]
        return parts if rng.random() < 0.7 else parts[0]
    if kind == 8:  # polygons with values no file should hold
        polygon = (rng.random(8) * width).tolist()
        polygon[int(rng.integers(8))] = pick(rng, [float("nan"), float("inf"), "3", None, True, [1, 2]])
        return [polygon]
    return pick(rng, ["text", 5, None, [], {}, [[]], [["a", "b", "c", "d", "e", "f"]]])


def pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]
