"""Where a dataset split lives on disk, and turning upstream annotations into the project's format.

``resolve_split`` serves the project layout (``DIR/annotations/{split}.json`` + ``DIR/images/``)
directly. The upstream layouts (COCOA, D2SA, KINS, SLN) are converted on first use to amodal COCO
JSON and cached; the cache is reused while the source files keep their path, size and mtime.
``convert_dataset`` is the same conversion for the ``scripts/convert_*.py`` command lines.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from typing import Optional

from .readers.amodal_coco import read_amodal_coco, write_amodal_coco
from .readers.cocoa import read_cocoa
from .readers.d2sa import read_d2sa
from .readers.kins import read_kins
from .readers.sln_npz import read_sln_npz
from .records import AnnotationError, AnnotationSet, DropLog

logger = logging.getLogger(__name__)

PROJECT_DATA_TYPE = "AMODAL_COCO"
CACHE_DIR_NAME = ".sln_cache"  # under the dataset folder unless a cache_dir is given
CACHE_FORMAT_VERSION = 2  # bump when a reader's output changes, so old caches are not reused
# Where ``--dataset NAME`` looks for the folder NAME: the repository's datasets/ folder.
DATASETS_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "datasets")


@dataclass(frozen=True)
class SplitLayout:
    annotation_files: tuple[str, ...]  # candidates relative to the dataset folder, first found wins
    image_dir: str  # relative to the dataset folder; the image file names are relative to it


PROJECT_LAYOUT = SplitLayout(annotation_files=("annotations/{split}.json",), image_dir="images")
UPSTREAM_LAYOUTS = {
    "COCOA": {
        "train": SplitLayout(("annotations/COCO_amodal_train2014.json",), "train2014"),
        "val": SplitLayout(("annotations/COCO_amodal_val2014.json",), "val2014"),
    },
    "D2SA": {
        "train": SplitLayout(("annotations/D2S_amodal_training_rot0.json",), "images"),
        "val": SplitLayout(("annotations/D2S_amodal_validation.json",), "images"),
    },
    "KINS": {
        "train": SplitLayout(("instances_train.json", "update_train_2020.json"), "training/image_2"),
        "val": SplitLayout(("instances_val.json", "update_test_2020.json"), "testing/image_2"),
    },
    # The layer maps lie beside the images, so the image folder is the source.
    "SLN": {
        "train": SplitLayout((), "train2014"),
        "val": SplitLayout((), "val2014"),
    },
}
DATA_TYPES = (PROJECT_DATA_TYPE, *UPSTREAM_LAYOUTS)


def read_source(
    data_type: str, source: str, log: DropLog, image_root: Optional[str] = None, cocoa_annotator: int = 0
) -> AnnotationSet:
    """Read an upstream annotation file (the image folder for SLN) with the reader of its type."""
    if data_type == "COCOA":
        return read_cocoa(source, log=log, annotator=cocoa_annotator, image_root=image_root)
    if data_type == "D2SA":
        return read_d2sa(source, log=log, image_root=image_root)
    if data_type == "KINS":
        return read_kins(source, log=log, image_root=image_root)
    if data_type == "SLN":
        return read_sln_npz(source, log=log)
    raise ValueError(f"unknown data type {data_type!r}; expected one of {', '.join(UPSTREAM_LAYOUTS)}")


def convert_dataset(
    data_type: str,
    source: str,
    out: str,
    image_root: Optional[str] = None,
    strict: bool = False,
    cocoa_annotator: int = 0,
) -> DropLog:
    """Convert ``source`` to amodal COCO JSON at ``out``; returns what was read, kept and dropped.

    With ``image_root`` given, images whose file is missing there are dropped and counted.
    """
    log = DropLog(source, strict)
    write_amodal_coco(read_source(data_type, source, log, image_root, cocoa_annotator), out)
    return log


def resolve_split(
    dataset: str,
    split: str,
    data_type: str,
    strict: bool = False,
    cache_dir: Optional[str] = None,
    cocoa_annotator: int = 0,
    need_images: bool = True,
) -> tuple[AnnotationSet, str]:
    """(annotations, image folder) of one split of the dataset ``dataset`` (a folder, or the name of
    one in ``DATASETS_ROOT``).

    ``data_type`` is one of ``DATA_TYPES`` (config DATASETS.DATA_TYPE), ``cache_dir`` overrides
    where conversions are cached (DATASETS.CACHE_DIR) and ``cocoa_annotator`` picks the COCOA
    annotator (DATASETS.COCOA_ANNOTATOR). A missing file or folder raises FileNotFoundError naming
    the path that was expected; the image folder may be missing when ``need_images`` is False
    (scoring a results file). A split without categories or without any kept image raises
    AnnotationError.
    """
    data_type = data_type.upper()
    dataset = dataset_folder(dataset)
    layout = _layout(data_type, split)
    image_root = os.path.join(dataset, layout.image_dir)
    if not os.path.isdir(image_root) and (need_images or data_type == "SLN"):
        raise FileNotFoundError(_missing_message([image_root], data_type, split, "image folder"))
    if data_type == PROJECT_DATA_TYPE:
        path = _find_annotation_file(dataset, layout, data_type, split)
    else:
        source = image_root if data_type == "SLN" else _find_annotation_file(dataset, layout, data_type, split)
        path = _cached_conversion(data_type, split, source, strict, cache_dir or os.path.join(dataset, CACHE_DIR_NAME),
                                  cocoa_annotator)
    log = DropLog(path, strict)
    annotations = read_amodal_coco(path, strict, log)
    logger.info("%s", log.summary())
    if not annotations.categories:
        raise AnnotationError(path, "categories", "the file lists no categories, so no object can be used")
    if not annotations.records:
        raise AnnotationError(path, "images", f"no image of the {split} split is usable ({log.counts['images read']} "
                              "read; see the summary above for why they were dropped)")
    return annotations, image_root


def dataset_folder(dataset: str) -> str:
    """``dataset`` itself when it is a folder, else ``DATASETS_ROOT/dataset`` for a bare name (SPEC
    section 7: ``--dataset DIR_OR_NAME``); FileNotFoundError naming both when neither exists."""
    if os.path.isdir(dataset):
        return dataset
    named = os.path.join(DATASETS_ROOT, dataset)
    if os.sep not in dataset and os.path.isdir(named):
        return named
    raise FileNotFoundError(f"{dataset}: no such dataset folder (nor {named})")


def _layout(data_type: str, split: str) -> SplitLayout:
    if data_type == PROJECT_DATA_TYPE:
        files = tuple(name.format(split=split) for name in PROJECT_LAYOUT.annotation_files)
        return SplitLayout(files, PROJECT_LAYOUT.image_dir)
    if data_type not in UPSTREAM_LAYOUTS:
        raise ValueError(f"unknown --data_type {data_type!r}; expected one of {', '.join(DATA_TYPES)}")
    splits = UPSTREAM_LAYOUTS[data_type]
    if split not in splits:
        raise ValueError(f"--data_type {data_type} has the splits {', '.join(splits)}, not {split!r}")
    return splits[split]


def _find_annotation_file(dataset: str, layout: SplitLayout, data_type: str, split: str) -> str:
    candidates = [os.path.join(dataset, name) for name in layout.annotation_files]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(_missing_message(candidates, data_type, split, "annotation file"))


def _missing_message(expected: list[str], data_type: str, split: str, what: str) -> str:
    return (f"no {split} {what} for --data_type {data_type}: expected {' or '.join(expected)} "
            f"(other layouts: --data_type {' | '.join(t for t in DATA_TYPES if t != data_type)})")


def _cached_conversion(
    data_type: str, split: str, source: str, strict: bool, cache_dir: str, cocoa_annotator: int
) -> str:
    """Path of the converted split, converting only when no cache matches the source as it is now."""
    key = {
        "version": CACHE_FORMAT_VERSION,
        "data_type": data_type,
        "strict": strict,
        "cocoa_annotator": cocoa_annotator if data_type == "COCOA" else None,
        "source": _source_fingerprint(source),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    prefix = os.path.join(cache_dir, f"{data_type.lower()}_{split}")
    path = f"{prefix}_{digest}.json"
    if os.path.isfile(path):
        logger.info("using cached conversion %s of %s", path, source)
        return path
    logger.info("converting %s (%s) to %s", source, data_type, path)
    log = convert_dataset(data_type, source, path, strict=strict, cocoa_annotator=cocoa_annotator)
    logger.info("%s", log.summary())
    for stale in glob.glob(f"{glob.escape(prefix)}_*.json"):
        if stale != path:
            os.remove(stale)
    return path


def _source_fingerprint(source: str) -> list:
    """(path, size, mtime) of the source file, or of every file in the source folder."""
    if os.path.isfile(source):
        files = [source]
    else:
        files = sorted(os.path.join(source, name) for name in os.listdir(source))
    fingerprint = []
    for path in files:
        stat = os.stat(path)
        fingerprint.append([os.path.abspath(path), stat.st_size, stat.st_mtime_ns])
    return fingerprint
