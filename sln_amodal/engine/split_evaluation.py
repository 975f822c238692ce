"""Evaluating on a dataset split with files in between: run a model over the split's images into a
results file, and score a results file (tables printed, ``metrics.json`` and ``pr_curves.png``
written). ``amodal_train.py evaluate`` and ``scripts/compare_baselines.py`` both go through here.
"""
from __future__ import annotations

import json
import logging
import os

import torch
from torch import nn

from ..config import CfgNode
from ..data.dataset import build_dataset
from ..data.loader import build_eval_loader
from ..data.records import AnnotationSet, DropLog, category_ids_of
from ..evaluation import AmodalEvaluator, format_report, load_results, plot_pr_curves, write_metrics
from ..fileio import atomic_write_text
from .inference import run_inference

RESULTS_FILE = "results.json"
METRICS_FILE = "metrics.json"
PR_CURVES_FILE = "pr_curves.png"


def write_model_results(model: nn.Module, cfg: CfgNode, categories: list[dict], annotations: AnnotationSet,
                        image_root: str, out: str) -> tuple[str, AnnotationSet]:
    """Run the model over the split's images and write its detections to OUT/results.json.

    Returns the path and the annotations of the images the model saw: an unreadable image has no
    detections, so its ground truth is left out of scoring (with a warning) rather than counted as missed.
    """
    model_ids, dataset_ids = category_ids_of(categories), category_ids_of(annotations.categories)
    if model_ids != dataset_ids:
        logging.warning("the model's category ids %s differ from the dataset's %s; detections of categories the "
                        "dataset lacks are dropped when scoring", model_ids, dataset_ids)
    dataset = build_dataset(cfg, annotations, image_root, train=False)
    loader = build_eval_loader(dataset, cfg.DATALOADER.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS,
                               pin_memory=torch.device(cfg.MODEL.DEVICE).type == "cuda")
    results, inferred = run_inference(model, loader, cfg.MODEL.DEVICE, model_ids)
    path = os.path.join(out, RESULTS_FILE)
    atomic_write_text(json.dumps(results), path)
    print(f"wrote {len(results)} detections on {len({r['image_id'] for r in results})} of "
          f"{len(annotations.records)} images to {path}")
    unread = [record.file_name for record in annotations.records if record.image_id not in inferred]
    if unread:
        logging.warning("%d unreadable image(s) left out of scoring (their ground truth is not counted as missed): "
                        "%s", len(unread), ", ".join(unread))
        annotations = AnnotationSet(annotations.categories,
                                    [record for record in annotations.records if record.image_id in inferred])
    return path, annotations


def score_results(cfg: CfgNode, annotations: AnnotationSet, results_path: str, out: str) -> None:
    """Score a results file against the split; print the tables, write the metrics and PR curves."""
    log = DropLog(results_path, cfg.DATASETS.STRICT)
    detections = load_results(results_path, annotations, log=log)
    print(log.summary())
    result = AmodalEvaluator(annotations, detections, cfg.EVAL, progress=True).evaluate()
    print(format_report(result.metrics))
    metrics_path, curves_path = os.path.join(out, METRICS_FILE), os.path.join(out, PR_CURVES_FILE)
    write_metrics(result.metrics, metrics_path)
    plot_pr_curves(result, curves_path)
    print(f"wrote {metrics_path} and {curves_path}")
