"""SLN-Amodal command line: ``python amodal_train.py <command> [options] [KEY VALUE ...]``.

Commands:
  evaluate  score a results JSON (SPEC section 7) against a dataset split; prints the metric
            tables and writes OUT/metrics.json and OUT/pr_curves.png.

Trailing ``KEY VALUE`` pairs override config values (after --config), e.g. ``EVAL.USE_CATS false``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys

from sln_amodal.config import ConfigError, load_config
from sln_amodal.data.catalog import DATA_TYPES, resolve_split
from sln_amodal.data.records import AnnotationError, DropLog
from sln_amodal.evaluation import AmodalEvaluator, format_report, load_results, plot_pr_curves, write_metrics

METRICS_FILE = "metrics.json"
PR_CURVES_FILE = "pr_curves.png"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amodal_train.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    evaluate = commands.add_parser("evaluate", help="score detections against a dataset split")
    evaluate.add_argument("--dataset", required=True, help="dataset folder")
    evaluate.add_argument("--results", required=True,
                          help="results JSON: COCO results with amodal `segmentation` and `visible_segmentation`")
    evaluate.add_argument("--out", required=True, help=f"folder for {METRICS_FILE} and {PR_CURVES_FILE}")
    evaluate.add_argument("--data_type", type=str.upper, choices=DATA_TYPES,
                          help="dataset layout (default: config DATASETS.DATA_TYPE)")
    evaluate.add_argument("--config", help="YAML config file")
    evaluate.add_argument("overrides", nargs="*", metavar="KEY VALUE", help="config overrides")
    evaluate.set_defaults(run=run_evaluate)
    return parser


def run_evaluate(args: argparse.Namespace) -> None:
    cfg = load_config(args.config, args.overrides)
    if args.data_type:
        cfg.DATASETS.DATA_TYPE = args.data_type
    data = cfg.DATASETS
    annotations, _ = resolve_split(args.dataset, data.VAL_SPLIT, data.DATA_TYPE, data.STRICT, data.CACHE_DIR,
                                   data.COCOA_ANNOTATOR)
    log = DropLog(args.results, data.STRICT)
    detections = load_results(args.results, annotations, log=log)
    print(log.summary())
    result = AmodalEvaluator(annotations, detections, cfg.EVAL, progress=True).evaluate()
    print(format_report(result.metrics))
    metrics_path, curves_path = os.path.join(args.out, METRICS_FILE), os.path.join(args.out, PR_CURVES_FILE)
    write_metrics(result.metrics, metrics_path)
    plot_pr_curves(result, curves_path)
    print(f"wrote {metrics_path} and {curves_path}")


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (AnnotationError, ConfigError, FileNotFoundError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
