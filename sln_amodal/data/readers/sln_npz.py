"""SLN layered annotations (the upstream converted datasets) -> AnnotationSet, and their writer.

Beside each image ``<stem>.jpg`` lies ``<stem>.npz`` holding ``layer``, a uint64 H x W map: bit i
is set where object i is visible, bit 32 + i where object i is hidden. Objects are indexed
front-first, so the kept objects get depth ranks 1, 2, ... in index order. One category.
Image ids are 1, 2, ... in sorted file-name order; image sizes are the layer map's.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np
from tqdm import tqdm

from ..data_types import DataType, SplitLayout, register_data_type
from ...structures.masks import encode_masks
from ..records import AnnotationError, AnnotationSet, DropLog, ImageRecord
from .cocoa import OBJECT_CATEGORIES, OBJECT_CATEGORY_ID
from .common import build_object

LAYER_KEY = "layer"
LAYER_SUFFIX = ".npz"
MAX_OBJECTS = 32  # bits 0..31 say "visible in object i", bits 32..63 "hidden in object i"
BITS_PER_BYTE = 8
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


class LayerFileError(ValueError):
    """A layer map that is missing or unreadable."""


def read_sln_npz(image_dir: str, strict: bool = False, log: DropLog | None = None) -> AnnotationSet:
    if not os.path.isdir(image_dir):
        raise AnnotationError(image_dir, "<folder>", "no such image folder")
    log = log or DropLog(image_dir, strict)
    names = sorted(n for n in os.listdir(image_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
    records = []
    for image_id, name in enumerate(tqdm(names, desc=f"reading {image_dir}", unit="image", disable=None), start=1):
        log.read("images")
        try:
            layer = load_layer(os.path.join(image_dir, os.path.splitext(name)[0] + LAYER_SUFFIX))
        except LayerFileError as err:
            log.drop("image", LAYER_KEY, str(err), name)
            continue
        height, width = layer.shape
        record = ImageRecord(name, height, width, image_id)
        visible, hidden = decode_layer(layer)
        amodal_rles, visible_rles = encode_masks(visible | hidden), encode_masks(visible)
        for index, (amodal_rle, visible_rle) in enumerate(zip(amodal_rles, visible_rles)):
            obj = build_object(
                log, f"{name} object {index}", height, width, OBJECT_CATEGORY_ID, amodal_rle, visible_rle
            )
            if obj is not None:
                record.objects.append(obj)
        for rank, obj in enumerate(record.objects, start=1):
            obj.depth_rank = rank
        log.kept("images")
        records.append(record)
    return AnnotationSet(categories=[dict(c) for c in OBJECT_CATEGORIES], records=records)


def load_layer(path: str) -> np.ndarray:
    """The H x W uint64 layer map stored in ``path``; LayerFileError when there is none."""
    if not os.path.isfile(path):
        raise LayerFileError(f"no {os.path.basename(path)} beside the image")
    try:
        with np.load(path, allow_pickle=False) as archive:
            layer = archive[LAYER_KEY]
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        raise LayerFileError(f"cannot read {LAYER_KEY!r} from {path}: {err}") from err
    if layer.ndim != 2 or not np.issubdtype(layer.dtype, np.integer):
        raise LayerFileError(f"{path}: expected a 2-D integer map, got {layer.dtype} of shape {layer.shape}")
    return layer.astype(np.uint64, copy=False)


def decode_layer(layer: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint64 H x W map -> (visible, hidden), bool N x H x W; N = highest object index used + 1."""
    used = int(np.bitwise_or.reduce(layer, axis=None))
    num_objects = max((used & ((1 << MAX_OBJECTS) - 1)).bit_length(), (used >> MAX_OBJECTS).bit_length())
    height, width = layer.shape
    # Byte k of a little-endian uint64 holds bits 8k..8k+7, so only the bytes that carry used
    # objects are unpacked: the visible bits start at byte 0, the hidden bits at byte 4.
    as_bytes = np.ascontiguousarray(layer, dtype="<u8").view(np.uint8).reshape(height, width, -1)
    num_bytes = -(-num_objects // BITS_PER_BYTE)
    hidden_start = MAX_OBJECTS // BITS_PER_BYTE

    def unpack(first_byte: int) -> np.ndarray:
        bits = np.unpackbits(as_bytes[..., first_byte:first_byte + num_bytes], axis=-1, bitorder="little",
                             count=num_objects)  # H x W x N
        return np.moveaxis(bits, -1, 0).astype(bool)

    return unpack(0), unpack(hidden_start)


def write_sln_npz(path: str, visible_masks: np.ndarray, amodal_masks: np.ndarray) -> None:
    """Write N x H x W masks, front-first, as an SLN layer map (``path`` should end in .npz)."""
    amodal = np.asarray(amodal_masks, dtype=bool)
    visible = np.asarray(visible_masks, dtype=bool) & amodal
    if amodal.ndim != 3 or visible.shape != amodal.shape:
        raise ValueError(f"expected two N x H x W mask stacks of one shape, got {visible.shape} and {amodal.shape}")
    num_objects, height, width = amodal.shape
    if num_objects > MAX_OBJECTS:
        raise ValueError(f"an SLN layer map holds at most {MAX_OBJECTS} objects, got {num_objects}")
    bits = np.zeros((height, width, 2 * MAX_OBJECTS), dtype=np.uint8)
    bits[..., :num_objects] = np.moveaxis(visible, 0, -1)
    bits[..., MAX_OBJECTS:MAX_OBJECTS + num_objects] = np.moveaxis(amodal & ~visible, 0, -1)
    layer = np.packbits(bits, axis=-1, bitorder="little").view("<u8")[..., 0].astype(np.uint64)
    np.savez_compressed(path, **{LAYER_KEY: layer})


# The layer maps lie beside the images, so the image folder is the source.
register_data_type(DataType(
    "SLN", read_sln_npz,
    splits={"train": SplitLayout((), "train2014"), "val": SplitLayout((), "val2014")},
    source_is_image_folder=True,
))
