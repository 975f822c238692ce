"""Benchmark the training data pipeline at paper resolution against the straightforward one.

A COCOA-like split is generated first: JPEG photos of 640 x 480 with 10 polygon objects each,
amodal masks as polygons, visible masks as RLEs and a depth rank per object. Both pipelines then
produce, per image, every target the SLN trains on at the training resize (short side 800, long
side at most 1333) with a random horizontal flip:

- ours: ``AmodalDataset`` over the project's reader (what a loader worker runs);
- reference: the pipeline of torchvision's detection references, pycocotools' ``annToMask`` for
  each object's amodal and visible mask, then the image resized bilinearly and the masks by
  nearest neighbour (as ``GeneralizedRCNNTransform`` does).

Each runs in this one process, which is what one loader worker does, so images/s here is per
worker; the projection to 8 workers assumes they scale linearly (one core each). The profile is
cProfile's cumulative time per image of our pipeline's steps.

    python scripts/bench_loader.py [--images 40] [--passes 3] [--out /tmp/bench_loader]

The last line printed is one JSON object with the figures.
"""
from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


from sln_amodal.data import dataset as dataset_module
from sln_amodal.data import transforms
from sln_amodal.data.dataset import AmodalDataset
from sln_amodal.data.readers.amodal_coco import read_amodal_coco
from sln_amodal.data.transforms import resized_size
from sln_amodal.structures import masks
from sln_amodal.structures.masks import encode_mask

from bench_maskrcnn import structured_image  # scripts/, this script's folder, is on sys.path

IMAGE_SIZE = (480, 640)  # (height, width), COCOA's usual photo size
OBJECTS_PER_IMAGE = 10
POLYGON_VERTICES = 16
RADIUS_RANGE = (30.0, 140.0)  # pixels
JPEG_QUALITY = 90
TRAIN_SHORT_SIDE = 800
TRAIN_MAX_SIZE = 1333
HFLIP_PROB = 0.5
PROJECTED_WORKERS = 8
TARGET_IMAGES_PER_S = 30.0  # a modern GPU's appetite for R50-FPN training at this size


# Our pipeline's steps for the profile table (nested: decode_rles runs inside image_target).
PROFILED_STEPS = {
    "read_image_pixels": dataset_module.read_image_pixels,
    "image_target": dataset_module.image_target,
    "decode_rles": masks.decode_rles,
    "resize (ResizeShortestEdge)": transforms.ResizeShortestEdge.__call__,
    "resize_masks_nearest": transforms.resize_masks_nearest,
    "flip (RandomHorizontalFlip)": transforms.RandomHorizontalFlip.__call__,
    "pixels_as_unit_float": dataset_module.pixels_as_unit_float,
}


def write_cocoa_like_split(out_dir: str, num_images: int, seed: int = 0) -> tuple[str, str]:
    """JPEGs and an amodal COCO file (amodal polygons, visible RLEs, depth ranks); returns both paths."""
    rng = np.random.default_rng(seed)
    height, width = IMAGE_SIZE
    image_dir = os.path.join(out_dir, "images")
    os.makedirs(image_dir, exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, num_images + 1):
        photo = structured_image(height, width, image_id).permute(1, 2, 0).numpy() * 255
        polygons = [_random_polygon(rng, height, width) for _ in range(OBJECTS_PER_IMAGE)]  # back to front
        polygon_rles = [mask_utils.frPyObjects([p.tolist()], height, width)[0] for p in polygons]
        # pycocotools' raster of the polygons, so that the visible masks lie inside the amodal ones exactly
        amodal = np.stack([mask_utils.decode(rle).astype(bool) for rle in polygon_rles])
        covered = np.zeros((height, width), dtype=bool)
        for index in range(OBJECTS_PER_IMAGE - 1, -1, -1):
            visible = amodal[index] & ~covered
            covered |= amodal[index]
            photo[amodal[index]] = rng.random(3) * 255
            rle = encode_mask(visible)
            box = mask_utils.toBbox(polygon_rles[index]).tolist()
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "segmentation": [polygons[index].tolist()], "bbox": box, "area": float(amodal[index].sum()),
                "visible_segmentation": rle, "depth_rank": OBJECTS_PER_IMAGE - index,
            })
        file_name = f"{image_id:06d}.jpg"
        Image.fromarray(photo.astype(np.uint8)).save(os.path.join(image_dir, file_name), quality=JPEG_QUALITY)
        images.append({"id": image_id, "file_name": file_name, "height": height, "width": width})
    annotation_path = os.path.join(out_dir, "annotations.json")
    with open(annotation_path, "w") as f:
        json.dump({"images": images, "annotations": annotations,
                   "categories": [{"id": 1, "name": "object", "supercategory": "object"}]}, f)
    return annotation_path, image_dir


def _random_polygon(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A star-shaped polygon as COCO's flat [x0, y0, x1, y1, ...]."""
    centre = rng.uniform((0, 0), (width, height))
    angles = np.sort(rng.uniform(0, 2 * np.pi, POLYGON_VERTICES))
    radii = rng.uniform(*RADIUS_RANGE) * rng.uniform(0.6, 1.0, POLYGON_VERTICES)
    xs = np.clip(centre[0] + radii * np.cos(angles), 0, width - 1)
    ys = np.clip(centre[1] + radii * np.sin(angles), 0, height - 1)
    return np.stack([xs, ys], axis=1).ravel().round(2)


class ReferencePipeline:
    """torchvision's detection-reference style: annToMask per object, then resize the image and masks."""

    def __init__(self, annotation_path: str, image_dir: str, seed: int = 0):
        self.coco = COCO(annotation_path)
        self.image_ids = sorted(self.coco.imgs)
        self.image_dir = image_dir
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int):
        info = self.coco.imgs[self.image_ids[index]]
        with Image.open(os.path.join(self.image_dir, info["file_name"])) as img:
            image = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 255
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"]))
        amodal = np.stack([self.coco.annToMask(a) for a in anns])
        visible = np.stack([self.coco.annToMask({**a, "segmentation": a["visible_segmentation"]}) for a in anns])
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32)
        boxes[:, 2:] += boxes[:, :2]
        height, width = image.shape[-2:]
        size = resized_size(height, width, TRAIN_SHORT_SIDE, TRAIN_MAX_SIZE)
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
        masks = torch.from_numpy(np.concatenate([amodal, visible]))[:, None].float()
        masks = F.interpolate(masks, size=size, mode="nearest")[:, 0].byte()
        boxes = boxes * torch.tensor([size[1] / width, size[0] / height] * 2)
        target = {"boxes": boxes, "labels": torch.tensor([a["category_id"] for a in anns]),
                  "amodal_masks": masks[: len(anns)], "visible_masks": masks[len(anns):],
                  "depth_rank": torch.tensor([a["depth_rank"] for a in anns])}
        if self.rng.random() < HFLIP_PROB:
            image, target["amodal_masks"], target["visible_masks"] = (
                image.flip(-1), target["amodal_masks"].flip(-1), target["visible_masks"].flip(-1))
            target["boxes"] = torch.stack([size[1] - boxes[:, 2], boxes[:, 1], size[1] - boxes[:, 0], boxes[:, 3]], 1)
        return image, target


def images_per_second(dataset, keys: list, passes: int) -> float:
    dataset[keys[0]]  # warm-up: first-call costs (imports, allocator) are not per-image costs
    start = time.perf_counter()
    for _ in range(passes):
        for key in keys:
            dataset[key]
    return passes * len(keys) / (time.perf_counter() - start)


def profile_ours(dataset, keys: list) -> dict[str, float]:
    """Milliseconds per image spent in (and under) each of PROFILED_STEPS, by cProfile."""
    profiler = cProfile.Profile()
    profiler.enable()
    for key in keys:
        dataset[key]
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    cumulative = {key: entry[3] for key, entry in stats.items()}  # (file, first line, name) -> seconds
    steps = {name: cumulative.get(_code_key(function), 0.0) for name, function in PROFILED_STEPS.items()}
    steps["whole item"] = cumulative.get(_code_key(AmodalDataset.__getitem__), 0.0)
    return {name: round(1000 * seconds / len(keys), 2) for name, seconds in steps.items()}


def _code_key(function) -> tuple[str, int, str]:
    code = function.__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def check_same_targets(ours, reference, index: int) -> None:
    """Both pipelines must produce the same masks (up to the flip, which each draws itself); the
    reference lists objects in annotation order, as the reader does."""
    _, mine = ours[(0, index)]
    _, theirs = reference[index]
    for field in ("amodal_masks", "visible_masks"):
        a, b = mine[field].bool(), theirs[field].bool()
        if not (torch.equal(a, b) or torch.equal(a, b.flip(-1))):
            raise AssertionError(f"{field} of image {index}: the two pipelines differ in "
                                 f"{(a ^ b).float().mean().item():.2%} of the pixels")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40, help="images in the generated split")
    parser.add_argument("--passes", type=int, default=3, help="passes over the split per pipeline")
    parser.add_argument("--out", help="folder for the generated split (default: a temporary one)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # a loader worker runs on one core
    with tempfile.TemporaryDirectory() as scratch:
        out_dir = args.out or scratch
        annotation_path, image_dir = write_cocoa_like_split(out_dir, args.images)
        ours = AmodalDataset(read_amodal_coco(annotation_path), image_dir, train=True,
                             min_sizes=(TRAIN_SHORT_SIDE,), max_size=TRAIN_MAX_SIZE, hflip_prob=HFLIP_PROB)
        reference = ReferencePipeline(annotation_path, image_dir)
        check_same_targets(ours, reference, 0)
        keys = [(0, i) for i in range(args.images)]
        ours_rate = images_per_second(ours, keys, args.passes)
        reference_rate = images_per_second(reference, list(range(args.images)), args.passes)
        profile = profile_ours(ours, keys)
    result = {
        "images": args.images, "passes": args.passes, "image_size": list(IMAGE_SIZE),
        "objects_per_image": OBJECTS_PER_IMAGE, "train_short_side": TRAIN_SHORT_SIDE, "train_max_size": TRAIN_MAX_SIZE,
        "ours_images_per_s_per_worker": round(ours_rate, 2),
        "reference_images_per_s_per_worker": round(reference_rate, 2),
        "speedup": round(ours_rate / reference_rate, 2),
        f"ours_projected_{PROJECTED_WORKERS}_workers_images_per_s": round(PROJECTED_WORKERS * ours_rate, 1),
        "target_images_per_s": TARGET_IMAGES_PER_S,
        "ours_profile_ms_per_image": profile,
    }
    print(f"ours {ours_rate:.2f} images/s per worker, reference {reference_rate:.2f}: {result['speedup']}x; "
          f"{PROJECTED_WORKERS} workers ~ {PROJECTED_WORKERS * ours_rate:.1f} images/s (target {TARGET_IMAGES_PER_S})")
    print("profile (ms per image, cumulative):", json.dumps(profile))
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
