"""The torch Dataset over an AnnotationSet: (image, target) pairs in the project's data contract.

Augmentation randomness comes from a generator seeded by (seed, epoch, index), never from global
state, so a run gives the same samples whatever the number of loader workers. The training sampler
(``loader.TrainingSampler``) passes ``(epoch, index)`` keys; a plain integer index means epoch 0.
"""
from __future__ import annotations

import logging
import os
from typing import Optional, Sequence

import numpy as np
import torch
from PIL import Image

from ..numbers import UINT8_MAX
from ..structures.masks import decode_rles
from .records import AnnotationError, AnnotationSet, DropLog, ImageRecord
from .transforms import Compose, RandomHorizontalFlip, ResizeShortestEdge

logger = logging.getLogger(__name__)

AUGMENT_STREAM = 1  # tags item generators apart from the sampler's shuffle generators (loader.SHUFFLE_STREAM)
UNKNOWN_DEPTH_RANK = 0  # target depth_rank of objects whose annotation gives none
# Target field listing the unreadable images an item passed over (their paths), so the process that
# consumes the batches can report them even when loader workers did the reading.
SKIPPED_IMAGES_FIELD = "skipped_images"
UINT16_MAX = np.iinfo(np.uint16).max  # full scale of 16-bit greyscale images (PIL modes "I;16", "I")
PIL_NATIVE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr")


class UnreadableImageError(Exception):
    """An image file that is missing, corrupt, or in a pixel format this loader does not handle."""


def read_image(path: str) -> np.ndarray:
    """Any PIL-readable image as H x W x 3 float32 RGB in [0, 1] (see ``read_image_pixels``)."""
    return pixels_as_unit_float(read_image_pixels(path))


def read_image_pixels(path: str) -> np.ndarray:
    """Any PIL-readable image as H x W x 3 RGB: uint8 for 8-bit formats (as stored, 4 times smaller
    than floats, so that resizing is cheap), float32 in [0, 1] for 16-bit greyscale (scaled by its
    full range) and float images (clipped). Greyscale becomes three equal channels; an alpha
    channel is dropped.
    """
    try:
        with Image.open(path) as img:
            if img.mode in PIL_NATIVE_MODES:
                array = np.array(img.convert("RGB"))  # writable, for torch.from_numpy
            elif img.mode.startswith("I"):
                array = np.asarray(img, dtype=np.float32) / UINT16_MAX
            elif img.mode == "F":
                array = np.asarray(img, dtype=np.float32)
            else:
                raise UnreadableImageError(f"{path}: unsupported pixel format {img.mode!r}")
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise UnreadableImageError(f"{path}: {err}") from err
    if array.dtype != np.uint8:
        array = np.clip(array, 0.0, 1.0)
    return np.repeat(array[..., None], 3, axis=2) if array.ndim == 2 else array


def pixels_as_unit_float(pixels):
    """uint8 pixels (numpy or torch) as float32 in [0, 1]; float32 pixels (already in [0, 1]) as they are."""
    if pixels.dtype in (np.uint8, torch.uint8):
        return pixels.astype(np.float32) / UINT8_MAX if isinstance(pixels, np.ndarray) else pixels.float() / UINT8_MAX
    if pixels.dtype not in (np.float32, torch.float32):
        raise TypeError(f"pixels must be uint8 or float32 in [0, 1], got {pixels.dtype}")
    return pixels


def item_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, AUGMENT_STREAM, epoch, index])


class AmodalDataset(torch.utils.data.Dataset):
    """Images of one split with their amodal targets.

    Train mode resizes (short side drawn from ``min_sizes``, long side capped at ``max_size``) and
    flips with probability ``hflip_prob``; eval mode returns images at their own size (the model
    resizes and maps its outputs back). An unreadable image is skipped: the item is the next
    readable one in index order, the file is named in a warning, counted in ``drop_log`` (counts
    are per process, so per loader worker) and listed in the item's target under
    ``SKIPPED_IMAGES_FIELD``; with ``strict`` it raises AnnotationError.
    Crowd regions are not instances and are left out of targets.
    """

    def __init__(
        self,
        annotations: AnnotationSet,
        image_root: str,
        train: bool,
        min_sizes: Optional[Sequence[int]] = None,
        max_size: Optional[int] = None,
        hflip_prob: Optional[float] = None,
        strict: bool = False,
        seed: int = 0,
    ):
        self.records = annotations.records
        self.image_root = image_root
        self.train = train
        self.strict = strict
        self.seed = seed
        self.label_of = annotations.contiguous_ids()
        for record in self.records:
            for obj in record.objects:
                if obj.category_id not in self.label_of:
                    raise AnnotationError(self._path(record), "category_id",
                                          f"{obj.category_id} is not among the dataset's categories")
        if train:
            if min_sizes is None or max_size is None or hflip_prob is None:
                raise ValueError("a training dataset needs min_sizes, max_size and hflip_prob")
            self.transforms = Compose([ResizeShortestEdge(min_sizes, max_size), RandomHorizontalFlip(hflip_prob)])
        else:
            self.transforms = Compose([])
        self.drop_log = DropLog(image_root)
        self._unreadable: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key: int | tuple[int, int]):
        epoch, index = key if isinstance(key, tuple) else (0, key)
        index, image, skipped = self._first_readable(index)
        record = self.records[index]
        image = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        target = {**image_target(record, self.label_of), SKIPPED_IMAGES_FIELD: skipped}
        # Transforms see the pixels as stored: resizing 8-bit images is several times cheaper than floats.
        image, target = self.transforms(image, target, item_rng(self.seed, epoch, index))
        masks = {field: target[field].contiguous() for field in ("amodal_masks", "visible_masks")}
        return pixels_as_unit_float(image), {**target, **masks}

    def _path(self, record: ImageRecord) -> str:
        return os.path.join(self.image_root, record.file_name)

    def _first_readable(self, index: int) -> tuple[int, np.ndarray, list[str]]:
        """(index, image) of the image at ``index``, or at the next index (cyclically) whose file reads
        correctly, and the paths of the unreadable ones passed over."""
        skipped = []
        for step in range(len(self)):
            candidate = (index + step) % len(self)
            record = self.records[candidate]
            path = self._path(record)
            if candidate in self._unreadable:
                skipped.append(path)
                continue
            try:
                image = read_image_pixels(path)
                if image.shape[:2] != (record.height, record.width):
                    raise UnreadableImageError(
                        f"{path}: image is {image.shape[1]}x{image.shape[0]}, the annotation says "
                        f"{record.width}x{record.height}")
            except UnreadableImageError as err:
                if self.strict:
                    raise AnnotationError(path, "image", str(err)) from err
                logger.warning("skipping unreadable image %s (%s)", path, err)
                self.drop_log.drop("image", "image file", str(err), record.file_name)
                self._unreadable.add(candidate)
                skipped.append(path)
                continue
            return candidate, image, skipped
        raise AnnotationError(self.image_root, "images", "no image of the dataset can be read")


def image_target(record: ImageRecord, label_of: dict[int, int]) -> dict:
    """The training target of one image: its non-crowd objects' boxes (xyxy), labels (``label_of``:
    category id -> 1..C), amodal and visible masks (G, H, W), depth ranks and constraints, occlusion
    rates, stuff flags, and the image's id, size and file name."""
    kept = [i for i, obj in enumerate(record.objects) if not obj.iscrowd]
    objects = [record.objects[i] for i in kept]
    position = {old: new for new, old in enumerate(kept)}
    constraints = [(position[f], position[b]) for f, b in record.depth_constraints
                   if f in position and b in position]
    height, width = record.height, record.width
    boxes = torch.tensor([obj.bbox for obj in objects], dtype=torch.float32).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]  # xywh -> xyxy
    return {
        "boxes": boxes,
        "labels": torch.tensor([label_of[obj.category_id] for obj in objects], dtype=torch.int64),
        "amodal_masks": _mask_tensor([obj.amodal for obj in objects], height, width),
        "visible_masks": _mask_tensor([obj.visible for obj in objects], height, width),
        "depth_rank": torch.tensor(
            [UNKNOWN_DEPTH_RANK if obj.depth_rank is None else obj.depth_rank for obj in objects],
            dtype=torch.int64),
        "depth_constraints": torch.tensor(constraints, dtype=torch.int64).reshape(-1, 2),
        "occlude_rate": torch.tensor([obj.occlude_rate for obj in objects], dtype=torch.float32),
        "is_stuff": torch.tensor([obj.is_stuff for obj in objects], dtype=torch.bool),
        "image_id": record.image_id,
        "orig_size": (height, width),
        "file_name": record.file_name,
    }


def _mask_tensor(rles: list[dict], height: int, width: int) -> torch.Tensor:
    """(N, H, W) uint8 in the column-major layout of ``decode_rles`` (``__getitem__`` makes it contiguous)."""
    return torch.from_numpy(decode_rles(rles, height, width))


def build_dataset(cfg, annotations: AnnotationSet, image_root: str, train: bool) -> AmodalDataset:
    """An AmodalDataset with the INPUT, DATASETS.STRICT and DATALOADER.SEED settings of ``cfg``."""
    return AmodalDataset(
        annotations, image_root, train,
        min_sizes=cfg.INPUT.MIN_SIZE_TRAIN, max_size=cfg.INPUT.MAX_SIZE_TRAIN, hflip_prob=cfg.INPUT.HFLIP_PROB,
        strict=cfg.DATASETS.STRICT, seed=cfg.DATALOADER.SEED,
    )
