"""Precision-recall curves as a PNG.

A bare matplotlib Figure renders with the Agg backend and needs no display; pyplot (and its
global backend state) is not involved.
"""
from __future__ import annotations

import os

import numpy as np
from matplotlib.figure import Figure

from ..fileio import atomic_write
from .amodal_eval import ALL_BUCKET, EvaluationResult
from .metrics import SUMMARY_IOUS, UNDEFINED

FIGURE_SIZE = (15, 4.5)  # inches: three panels side by side
FIGURE_DPI = 100


def plot_pr_curves(result: EvaluationResult, path: str) -> None:
    """Three panels: amodal (all objects) at AP50/AP75/mean IoU, amodal per occlusion bucket
    (mean over IoU), visible (all objects) like the first. Precision is averaged over categories."""
    recall = result.recall_thresholds
    amodal, visible = result.curves["amodal"], result.curves["visible"]
    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    axes = figure.subplots(1, 3)
    _plot_by_iou(axes[0], recall, amodal.precision[..., amodal.subsets.index(ALL_BUCKET), -1],
                 result.iou_thresholds, "amodal masks, all objects")
    for s, bucket in enumerate(amodal.subsets):
        _plot_curve(axes[1], recall, amodal.precision[..., s, -1], bucket)
    _style(axes[1], "amodal masks by occlusion (IoU .50:.95)")
    _plot_by_iou(axes[2], recall, visible.precision[..., 0, -1], result.iou_thresholds, "visible masks")
    figure.tight_layout()
    # The format is named: the file object written to has no suffix to guess it from.
    atomic_write(path, lambda f: figure.savefig(f, format=os.path.splitext(path)[1][1:] or "png"), binary=True)


def _plot_by_iou(axis, recall: np.ndarray, precision: np.ndarray, ious: np.ndarray, title: str) -> None:
    """``precision``: (T, R, K)."""
    for name, iou in SUMMARY_IOUS.items():
        _plot_curve(axis, recall, precision[np.isclose(ious, iou)], f"IoU {iou:.2f}")
    _plot_curve(axis, recall, precision, "IoU .50:.95")
    _style(axis, title)


def _plot_curve(axis, recall: np.ndarray, precision: np.ndarray, label: str) -> None:
    """Mean precision over every axis but recall (axis 1), skipping undefined entries."""
    defined = precision > UNDEFINED
    if not defined.any():
        axis.plot([], [], label=f"{label} (undefined)")
        return
    counts = defined.sum(axis=(0, 2))
    mean = np.where(defined, precision, 0.0).sum(axis=(0, 2)) / np.maximum(counts, 1)
    axis.plot(recall, mean, label=label)


def _style(axis, title: str) -> None:
    axis.set_title(title)
    axis.set_xlabel("recall")
    axis.set_ylabel("precision")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.grid(True, alpha=0.3)
    axis.legend(loc="lower left")
