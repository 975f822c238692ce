"""Write the synthetic amodal dataset: DIR/images/{train,val}/*.png and DIR/annotations/{train,val}.json.

    python scripts/make_synthetic.py --out datasets/synthetic --seed 0 --num-train 1000 --num-val 100

Options left out take their values from the SYNTHETIC config section (``--config`` or the defaults).
The same options always produce the same bytes. An existing dataset in DIR (its annotation files,
or any file under DIR/images) is replaced only with --force.
"""
from __future__ import annotations

import argparse
import os
import sys


import numpy as np

from sln_amodal.config import ConfigError, load_config
from sln_amodal.data.synthetic import SPLIT_STREAMS, scene_params_from_config, write_synthetic_dataset
from sln_amodal.fileio import OutputError, refuse_existing

SPLITS = tuple(SPLIT_STREAMS)  # the splits write_synthetic_dataset writes


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--config", help="YAML file whose SYNTHETIC section gives the defaults")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--num-train", type=int)
    parser.add_argument("--num-val", type=int)
    parser.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    parser.add_argument("--min-objects", type=int)
    parser.add_argument("--max-objects", type=int)
    parser.add_argument("--occlusion", type=float, help="0 (objects placed anywhere) .. 1 (stacked on each other)")
    parser.add_argument("--force", action="store_true", help="replace the dataset already in --out")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config)
        options = {"SEED": args.seed, "NUM_TRAIN": args.num_train, "NUM_VAL": args.num_val,
                   "IMAGE_SIZE": tuple(args.image_size) if args.image_size else None, "MIN_OBJECTS": args.min_objects,
                   "MAX_OBJECTS": args.max_objects, "OCCLUSION": args.occlusion}
        cfg.SYNTHETIC.merge_from_dict({k: v for k, v in options.items() if v is not None}, source="command line",
                                      prefix="SYNTHETIC.")
        for option, count in (("--num-train", cfg.SYNTHETIC.NUM_TRAIN), ("--num-val", cfg.SYNTHETIC.NUM_VAL)):
            if count < 0:
                raise ValueError(f"{option} must be 0 or more, got {count}")
        params = scene_params_from_config(cfg)
        images = os.path.join(args.out, "images")  # the images are written over too, so they count as the dataset
        images_hold_files = any(files for _, _, files in os.walk(images))
        refuse_existing([os.path.join(args.out, "annotations", f"{split}.json") for split in SPLITS]
                        + ([images] if images_hold_files else []), args.force, "the dataset")
        splits = write_synthetic_dataset(args.out, cfg.SYNTHETIC.SEED, cfg.SYNTHETIC.NUM_TRAIN,
                                         cfg.SYNTHETIC.NUM_VAL, params)
    except (ConfigError, OutputError, ValueError) as err:
        sys.exit(f"error: {err}")
    for split, annotation_set in splits.items():
        objects = [obj for record in annotation_set.records for obj in record.objects]
        mean_occlusion = float(np.mean([obj.occlude_rate for obj in objects])) if objects else 0.0
        print(f"{split}: {len(annotation_set.records)} images, {len(objects)} objects, "
              f"mean occlude_rate {mean_occlusion:.3f} -> {os.path.join(args.out, 'annotations', split + '.json')}")
        if annotation_set.records and not objects:
            print(f"warning: no object of the {split} split has the {params.min_visible_area} visible pixels it needs "
                  f"(SYNTHETIC.MIN_VISIBLE_AREA) in {params.height}x{params.width} images; use larger images",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
