"""SLN-Amodal command line: ``python amodal_train.py <command> [options] [KEY VALUE ...]``.

Commands:
  train     train a model on a dataset split (SPEC section 7): progress bar, TensorBoard events,
            atomic checkpoints and exact resume in LOGS; multi-GPU with
            ``torchrun --nproc_per_node N -- amodal_train.py train ...`` (the ``--`` stops torchrun
            from reading ``--logs`` as an abbreviation of its own ``--logs-specs``).
  evaluate  score a trained model (--model: runs it on the split and writes OUT/results.json) or a
            results JSON (--results, SPEC section 7) against a dataset split; prints the metric
            tables and writes OUT/metrics.json and OUT/pr_curves.png.

``KEY VALUE`` pairs override config values (after --config), e.g. ``EVAL.USE_CATS false``; they may
stand before, between or after the options. Checkpoints load as weights only; --trust-checkpoint
unpickles one fully (only for files from a trusted source: unpickling can run code).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from tqdm.contrib.logging import logging_redirect_tqdm

from sln_amodal.config import ConfigError, load_config
from sln_amodal.data.catalog import resolve_split_from_config
from sln_amodal.data.data_types import data_type_names
from sln_amodal.data.records import AnnotationError
from sln_amodal.engine import distributed
from sln_amodal.engine.checkpoint import CheckpointError, load_trained_model
from sln_amodal.engine.split_evaluation import (
    METRICS_FILE,
    PR_CURVES_FILE,
    RESULTS_FILE,
    score_results,
    write_model_results,
)
from sln_amodal.engine.trainer import NonFiniteLossError, train
from sln_amodal.fileio import OutputError, prepare_output_folder
from sln_amodal.modeling.mask_branches.vrsp_shape_prior import ShapePriorError
from sln_amodal.torch_files import add_trust_checkpoint_option

CHECKPOINTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "checkpoints")  # pretrained weights
LOGS_ROOT = "logs"  # --logs defaults to LOGS_ROOT/<config file stem>, or LOGS_ROOT/default without --config


def build_parser() -> argparse.ArgumentParser:
    return build_parsers()[0]


def build_parsers() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The program's parser and each command's own (by name)."""
    parser = argparse.ArgumentParser(prog="amodal_train.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    train_parser = commands.add_parser("train", help="train a model on a dataset split")
    train_parser.add_argument("--dataset", required=True, help="dataset folder, or the name of one in datasets/")
    train_parser.add_argument("--model", required=True,
                              help="weights to start from: coco | imagenet | none | PATH (a state dict, or the weights "
                                   "of a training checkpoint, to fine-tune) | last (resume the newest checkpoint in "
                                   "--logs exactly)")
    train_parser.add_argument("--config", help="YAML config file")
    train_parser.add_argument("--logs", help=f"run folder for checkpoints, TensorBoard events and config.yaml "
                                             f"(default {LOGS_ROOT}/<config file stem or 'default'>)")
    train_parser.add_argument("--data_type", type=str.upper, choices=data_type_names(),
                              help="dataset layout (default: config DATASETS.DATA_TYPE)")
    add_trust_checkpoint_option(train_parser)
    train_parser.add_argument("overrides", nargs="*", metavar="KEY VALUE", help="config overrides")
    train_parser.set_defaults(run=run_train)

    evaluate = commands.add_parser("evaluate", help="score a model or its detections against a dataset split")
    evaluate.add_argument("--dataset", required=True, help="dataset folder, or the name of one in datasets/")
    source = evaluate.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help=f"training checkpoint to run on the split, its detections written to "
                                        f"OUT/{RESULTS_FILE}; --config and KEY VALUE pairs apply on top of its config")
    source.add_argument("--results",
                        help="results JSON: COCO results with amodal `segmentation` and `visible_segmentation`")
    evaluate.add_argument("--out", required=True,
                          help=f"folder for {METRICS_FILE} and {PR_CURVES_FILE} (and {RESULTS_FILE} with --model)")
    evaluate.add_argument("--data_type", type=str.upper, choices=data_type_names(),
                          help="dataset layout (default: config DATASETS.DATA_TYPE)")
    evaluate.add_argument("--config", help="YAML config file")
    add_trust_checkpoint_option(evaluate)
    evaluate.add_argument("overrides", nargs="*", metavar="KEY VALUE", help="config overrides")
    evaluate.set_defaults(run=run_evaluate)
    return parser, {"train": train_parser, "evaluate": evaluate}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Options and KEY VALUE overrides in any order (``parse_intermixed_args``, which argparse offers
    for parsers without subcommands, so the command's own parser reads what follows the command)."""
    parser, commands = build_parsers()
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in commands:
        return parser.parse_args(argv)  # help, or the error naming the commands
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def run_train(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.overrides)
    if args.data_type:
        cfg.DATASETS.DATA_TYPE = args.data_type
    stem = os.path.splitext(os.path.basename(args.config))[0] if args.config else "default"
    logs = args.logs or os.path.join(LOGS_ROOT, stem)
    if distributed.rank_from_env() > 0:
        logging.getLogger().setLevel(logging.WARNING)  # process 0 reports for everyone
    try:
        result = train(cfg, args.dataset, args.model, logs, CHECKPOINTS_DIR, args.trust_checkpoint)
    except NonFiniteLossError as err:
        sys.exit(f"error: {err}")
    if result.checkpoint:
        print(f"trained {result.iteration} iterations; wrote {result.checkpoint}")


def run_evaluate(args: argparse.Namespace) -> None:
    prepare_output_folder(args.out, "--out")  # before any work, so no result is lost to an unwritable folder
    if args.model:
        model, cfg, categories = load_trained_model(args.model, args.overrides, config_file=args.config,
                                                    trust=args.trust_checkpoint)
    else:
        cfg = load_config(args.config, args.overrides)
    if args.data_type:
        cfg.DATASETS.DATA_TYPE = args.data_type
    annotations, image_root = resolve_split_from_config(cfg, args.dataset, cfg.DATASETS.VAL_SPLIT,
                                                        need_images=bool(args.model))
    results_path = args.results
    if args.model:
        results_path, annotations = write_model_results(model, cfg, categories, annotations, image_root, args.out)
    score_results(cfg, annotations, results_path, args.out)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    try:
        with logging_redirect_tqdm():  # log lines above the progress bars, not glued to them
            args.run(args)
    except (AnnotationError, CheckpointError, ConfigError, FileNotFoundError, OutputError, ShapePriorError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
