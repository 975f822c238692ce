"""Build VRSP-Net's shape-prior codebook file for a dataset (one file per dataset).

    python scripts/build_shape_codebook.py --dataset datasets/synthetic \
        --config sln_amodal/config/yaml/quickstart_vrsp.yaml --out checkpoints/synthetic_shape_prior.pth

Without --model the shape auto-encoder is trained here on the training split's GT amodal masks
(MODEL.VRSP.SHAPE_PRIOR.TRAIN_*); with --model (a VRSP-Net checkpoint trained with
MODEL.VRSP.SHAPE_PRIOR.TRAIN_JOINTLY) its jointly trained auto-encoder is used. Then each class's
shape embeddings are clustered by k-means into the codebook. Name the file in
MODEL.VRSP.SHAPE_PRIOR.FILE to train with shape-prior refinement or to rescore with retrieval.
"""
from __future__ import annotations

import argparse
import logging
import sys


from sln_amodal.config import ConfigError, load_config
from sln_amodal.data.catalog import resolve_split_from_config
from sln_amodal.data.data_types import data_type_names
from sln_amodal.data.records import AnnotationError
from sln_amodal.engine.checkpoint import CheckpointError, atomic_torch_save, load_trained_model
from sln_amodal.engine.shape_codebook import build_codebook
from sln_amodal.fileio import OutputError
from sln_amodal.modeling.mask_branches.vrsp_shape_prior import shape_prior_file_content
from sln_amodal.torch_files import add_trust_checkpoint_option


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="dataset folder (its training split supplies the shapes)")
    parser.add_argument("--out", required=True, help="codebook file to write")
    parser.add_argument("--config", help="YAML config (MODEL.VRSP.SHAPE_PRIOR, mask resolution, SOLVER.SEED)")
    parser.add_argument("--model", help="VRSP-Net training checkpoint whose jointly trained auto-encoder to use "
                                        "(its config replaces --config)")
    parser.add_argument("--data_type", type=str.upper, choices=data_type_names(), help="dataset layout")
    add_trust_checkpoint_option(parser)
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE", help="config overrides")
    args = parser.parse_intermixed_args(argv)
    try:
        autoencoder = None
        if args.model:
            model, cfg, categories = load_trained_model(args.model, args.overrides, device="cpu",
                                                        trust=args.trust_checkpoint)
            prior = getattr(model.roi_heads.mask_branch, "shape_prior", None)
            if prior is None:
                raise CheckpointError(f"{args.model}: model: its mask branch has no shape auto-encoder "
                                      "(train VRSPHead with MODEL.VRSP.SHAPE_PRIOR.TRAIN_JOINTLY true)")
            autoencoder = prior.autoencoder
        else:
            cfg = load_config(args.config, args.overrides)
        if args.data_type:
            cfg.DATASETS.DATA_TYPE = args.data_type
        annotations, _ = resolve_split_from_config(cfg, args.dataset, cfg.DATASETS.TRAIN_SPLIT)
        if args.model and categories != annotations.categories:
            raise CheckpointError(f"{args.model}: categories: differ from those of {args.dataset}")
        prior, summary = build_codebook(cfg, annotations, autoencoder)
        atomic_torch_save(shape_prior_file_content(prior, annotations.categories), args.out)
    except (AnnotationError, CheckpointError, ConfigError, FileNotFoundError, OutputError, ValueError) as err:
        sys.exit(f"error: {err}")
    print(f"{summary['shapes']} shapes of {len(annotations.categories)} classes at {summary['mask_size']}^2; "
          f"codes per class {summary['codes_per_class']}; wrote {args.out}")


if __name__ == "__main__":
    main()
