"""Where a dataset split lives on disk, and turning upstream annotations into the project's format.

``resolve_split`` serves the project layout (``DIR/annotations/{split}.json`` + ``DIR/images/``)
directly. The upstream layouts, registered by their readers (``data_types.py``), are converted on
first use to amodal COCO JSON and cached; the cache is reused while the source files keep their
path, size and mtime.
``convert_dataset`` is the same conversion for the ``scripts/convert_*.py`` command lines.
"""
from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
from typing import Optional

from . import readers  # noqa: F401  (registers the upstream data types)
from .data_types import (
    PROJECT_DATA_TYPE,
    DataType,
    SplitLayout,
    data_type_names,
    options_from_config,
    registered_data_type,
)
from .readers.amodal_coco import read_amodal_coco, write_amodal_coco
from .records import AnnotationError, AnnotationSet, DropLog

logger = logging.getLogger(__name__)

CACHE_DIR_NAME = ".sln_cache"  # under the dataset folder unless a cache_dir is given
CACHE_FORMAT_VERSION = 2  # bump when a reader's output changes, so old caches are not reused
# Where ``--dataset NAME`` looks for the folder NAME: the repository's datasets/ folder.
DATASETS_ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "datasets")
PROJECT_LAYOUT = SplitLayout(annotation_files=("annotations/{split}.json",), image_dir="images")


def read_source(data_type: str, source: str, log: DropLog, image_root: Optional[str] = None,
                options: Optional[dict] = None) -> AnnotationSet:
    """Read an upstream annotation file (the image folder for an image-folder type) with the
    registered reader of its type and the reader's keyword ``options``."""
    entry = registered_data_type(data_type)
    extra = {} if entry.source_is_image_folder else {"image_root": image_root}
    return entry.read(source, strict=log.strict, log=log, **extra, **(options or {}))


def convert_dataset(
    data_type: str,
    source: str,
    out: str,
    image_root: Optional[str] = None,
    strict: bool = False,
    options: Optional[dict] = None,
) -> DropLog:
    """Convert ``source`` to amodal COCO JSON at ``out``; returns what was read, kept and dropped.

    With ``image_root`` given, images whose file is missing there are dropped and counted.
    ``options``: the reader's keyword options (its ``DataType.options``).
    """
    log = DropLog(source, strict)
    write_amodal_coco(read_source(data_type, source, log, image_root, options), out)
    return log


def resolve_split(
    dataset: str,
    split: str,
    data_type: str,
    strict: bool = False,
    cache_dir: Optional[str] = None,
    options: Optional[dict] = None,
    need_images: bool = True,
) -> tuple[AnnotationSet, str]:
    """(annotations, image folder) of one split of the dataset ``dataset`` (a folder, or the name of
    one in ``DATASETS_ROOT``).

    ``data_type`` is one of ``data_type_names()`` (config DATASETS.DATA_TYPE), ``cache_dir``
    overrides where conversions are cached (DATASETS.CACHE_DIR) and ``options`` are the reader's
    keyword options (``resolve_split_from_config`` reads all of them from the config). A missing
    file or folder raises FileNotFoundError naming the path that was expected; the image folder may
    be missing when ``need_images`` is False (scoring a results file). A split without categories
    or without any kept image raises AnnotationError.
    """
    data_type = data_type.upper()
    dataset = dataset_folder(dataset)
    entry = None if data_type == PROJECT_DATA_TYPE else registered_data_type(data_type)
    layout = _layout(entry, data_type, split)
    image_root = os.path.join(dataset, layout.image_dir)
    images_are_source = entry is not None and entry.source_is_image_folder
    if not os.path.isdir(image_root) and (need_images or images_are_source):
        raise FileNotFoundError(_missing_message([image_root], data_type, split, "image folder"))
    if entry is None:
        path = _find_annotation_file(dataset, layout, data_type, split)
    else:
        source = image_root if images_are_source else _find_annotation_file(dataset, layout, data_type, split)
        path = _cached_conversion(data_type, split, source, strict, cache_dir or os.path.join(dataset, CACHE_DIR_NAME),
                                  options or {})
    log = DropLog(path, strict)
    annotations = read_amodal_coco(path, strict, log)
    logger.info("%s", log.summary())
    if not annotations.categories:
        raise AnnotationError(path, "categories", "the file lists no categories, so no object can be used")
    if not annotations.records:
        raise AnnotationError(path, "images", f"no image of the {split} split is usable ({log.counts['images read']} "
                              "read; see the summary above for why they were dropped)")
    return annotations, image_root


def resolve_split_from_config(cfg, dataset: str, split: str, need_images: bool = True) -> tuple[AnnotationSet, str]:
    """``resolve_split`` with every setting of config section DATASETS: DATA_TYPE, STRICT, CACHE_DIR
    and the options of the data type's reader."""
    data = cfg.DATASETS
    data_type = data.DATA_TYPE.upper()
    options = {} if data_type == PROJECT_DATA_TYPE else options_from_config(registered_data_type(data_type), data)
    return resolve_split(dataset, split, data_type, data.STRICT, data.CACHE_DIR, options, need_images)


def dataset_folder(dataset: str) -> str:
    """``dataset`` itself when it is a folder, else ``DATASETS_ROOT/dataset`` for a bare name (SPEC
    section 7: ``--dataset DIR_OR_NAME``); FileNotFoundError naming both when neither exists."""
    if os.path.isdir(dataset):
        return dataset
    named = os.path.join(DATASETS_ROOT, dataset)
    if os.sep not in dataset and os.path.isdir(named):
        return named
    raise FileNotFoundError(f"{dataset}: no such dataset folder (nor {named})")


def _layout(entry: Optional[DataType], data_type: str, split: str) -> SplitLayout:
    if entry is None:
        files = tuple(name.format(split=split) for name in PROJECT_LAYOUT.annotation_files)
        return SplitLayout(files, PROJECT_LAYOUT.image_dir)
    splits = entry.splits
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
            f"(other layouts: --data_type {' | '.join(t for t in data_type_names() if t != data_type)})")


def _cached_conversion(data_type: str, split: str, source: str, strict: bool, cache_dir: str, options: dict) -> str:
    """Path of the converted split, converting only when no cache matches the source as it is now."""
    key = {
        "version": CACHE_FORMAT_VERSION,
        "data_type": data_type,
        "strict": strict,
        "options": options,
        "source": _source_fingerprint(source),
    }
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    prefix = os.path.join(cache_dir, f"{data_type.lower()}_{split}")
    path = f"{prefix}_{digest}.json"
    if os.path.isfile(path):
        logger.info("using cached conversion %s of %s", path, source)
        return path
    logger.info("converting %s (%s) to %s", source, data_type, path)
    log = convert_dataset(data_type, source, path, strict=strict, options=options)
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
