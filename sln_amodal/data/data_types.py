"""The registry of dataset types: each reader registers, in its own file, the ``--data_type`` name it
reads, where its splits lie in an upstream dataset folder, and its options.

A ``DataType``'s reader is called ``read(source, strict=..., log=..., **options)`` (plus
``image_root=`` unless the source is the image folder itself) and returns an ``AnnotationSet``;
``catalog.py`` converts and caches what it reads, and the ``convert_*.py`` scripts build their command
lines from the same entry, so no generic code names a dataset. The project's own layout
(``PROJECT_DATA_TYPE``, amodal COCO JSON) is read directly and is not registered here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

PROJECT_DATA_TYPE = "AMODAL_COCO"


@dataclass(frozen=True)
class SplitLayout:
    annotation_files: tuple[str, ...]  # candidates relative to the dataset folder, first found wins
    image_dir: str  # relative to the dataset folder; the image file names are relative to it


@dataclass(frozen=True)
class ReaderOption:
    """One option of a reader: its keyword, the DATASETS config key that sets it, and its converter flag."""

    keyword: str
    config_key: str
    flag: str
    type: Callable[[str], Any]
    help: str


@dataclass(frozen=True)
class DataType:
    name: str  # the --data_type value (upper case)
    read: Callable[..., Any]
    splits: dict[str, SplitLayout]
    source_is_image_folder: bool = False  # the layout's images are the source (no annotation file)
    options: tuple[ReaderOption, ...] = ()


DATA_TYPES: dict[str, DataType] = {}


def register_data_type(data_type: DataType) -> DataType:
    if data_type.name != data_type.name.upper() or data_type.name == PROJECT_DATA_TYPE:
        raise ValueError(f"a data type is named in upper case and is not {PROJECT_DATA_TYPE}, got {data_type.name!r}")
    if data_type.name in DATA_TYPES:
        raise ValueError(f"data type {data_type.name!r} is already registered")
    DATA_TYPES[data_type.name] = data_type
    return data_type


def data_type_names() -> tuple[str, ...]:
    """Every ``--data_type`` value: the project's layout first, then the registered ones."""
    return (PROJECT_DATA_TYPE, *DATA_TYPES)


def registered_data_type(name: str) -> DataType:
    if name not in DATA_TYPES:
        raise ValueError(f"unknown --data_type {name!r}; expected one of {', '.join(data_type_names())}")
    return DATA_TYPES[name]


def options_from_config(data_type: DataType, datasets_cfg) -> dict[str, Any]:
    """The reader's keyword options as config section DATASETS sets them."""
    return {option.keyword: datasets_cfg[option.config_key] for option in data_type.options}
