"""What the convert_*.py scripts share: the command line and the report."""
from __future__ import annotations

import argparse
import os
import sys

from sln_amodal.config import get_default_config
from sln_amodal.data.catalog import convert_dataset
from sln_amodal.data.data_types import registered_data_type
from sln_amodal.data.records import AnnotationError
from sln_amodal.fileio import OutputError, refuse_existing


def converter_main(data_type: str, description: str, argv: list[str] | None = None) -> int:
    """Parse the command line the data type's registration implies (its source and its reader's
    options), convert, print what was read, kept and dropped; the exit status."""
    entry = registered_data_type(data_type)
    defaults = get_default_config().DATASETS
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if entry.source_is_image_folder:
        parser.add_argument("--images", required=True, help=f"the {data_type} image folder, the source itself")
    else:
        parser.add_argument("--ann", required=True, help=f"the {data_type} annotation JSON")
        parser.add_argument("--images",
                            help="image folder; an image whose file is missing there is dropped and counted")
    parser.add_argument("--out", required=True, help="amodal COCO JSON to write (never one of the inputs)")
    parser.add_argument("--force", action="store_true", help="replace --out when it exists")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad entry instead of dropping it")
    for option in entry.options:
        parser.add_argument(option.flag, dest=option.keyword, type=option.type, default=defaults[option.config_key],
                            help=f"{option.help} (config DATASETS.{option.config_key})")
    args = parser.parse_args(argv)

    source = args.images if entry.source_is_image_folder else args.ann
    try:
        if not entry.source_is_image_folder and os.path.exists(args.out) and os.path.samefile(args.out, args.ann):
            raise OutputError(f"--out {args.out} is the --ann file; a converter never overwrites its input")
        refuse_existing([args.out], args.force, "it")
        log = convert_dataset(
            data_type, source, args.out,
            image_root=None if entry.source_is_image_folder else args.images,
            strict=args.strict,
            options={option.keyword: getattr(args, option.keyword) for option in entry.options},
        )
    except (AnnotationError, OutputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(log.summary())
    print(f"wrote {args.out}")
    return 0
