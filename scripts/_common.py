"""What the convert_*.py scripts share: the command line and the report."""
from __future__ import annotations

import argparse
import os
import sys

from sln_amodal.data.catalog import convert_dataset
from sln_amodal.data.records import AnnotationError
from sln_amodal.fileio import OutputError, refuse_existing


def converter_main(data_type: str, description: str, argv: list[str] | None = None) -> int:
    """Parse the command line, convert, print what was read, kept and dropped; the exit status."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    if data_type == "SLN":
        parser.add_argument("--images", required=True,
                            help="image folder with a <stem>.npz layer map beside each image")
    else:
        parser.add_argument("--ann", required=True, help=f"the {data_type} annotation JSON")
        parser.add_argument("--images",
                            help="image folder; an image whose file is missing there is dropped and counted")
    parser.add_argument("--out", required=True, help="amodal COCO JSON to write (never one of the inputs)")
    parser.add_argument("--force", action="store_true", help="replace --out when it exists")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad entry instead of dropping it")
    if data_type == "COCOA":
        parser.add_argument("--annotator", type=int, default=0,
                            help="which annotator record of each image to use (0 = first)")
    args = parser.parse_args(argv)

    source = args.images if data_type == "SLN" else args.ann
    try:
        if data_type != "SLN" and os.path.exists(args.out) and os.path.samefile(args.out, args.ann):
            raise OutputError(f"--out {args.out} is the --ann file; a converter never overwrites its input")
        refuse_existing([args.out], args.force, "it")
        log = convert_dataset(
            data_type, source, args.out,
            image_root=None if data_type == "SLN" else args.images,
            strict=args.strict,
            cocoa_annotator=args.annotator if data_type == "COCOA" else 0,
        )
    except (AnnotationError, OutputError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(log.summary())
    print(f"wrote {args.out}")
    return 0
