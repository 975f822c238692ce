"""What training shows in TensorBoard: scalars averaged over a window, and pictures.

The pictures themselves are drawn by ``visualize.py`` (shared with ``amodal_test.py``); this module
picks what to draw: here, the sem-dist maps of detections beside the targets of the objects they
found.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from torch.utils.tensorboard import SummaryWriter
from torchvision.ops import box_iou

from ..layering import resolve_depth_order, resolve_dist_saturation, roi_layering_targets

TAG_PREFIX = "train/"  # TensorBoard tags of training scalars and pictures


class TrainingEvents:
    """Process 0's TensorBoard writer. ``add_scalars`` averages each value over ``log_period``
    iterations and writes the means at the window's last iteration; ``flush`` writes a partial
    window (the end of training)."""

    def __init__(self, log_dir: str, log_period: int):
        if log_period < 1:
            raise ValueError(f"SOLVER.LOG_PERIOD must be at least 1, got {log_period}")
        self.writer = SummaryWriter(log_dir)
        self.log_period = log_period
        self.sums: dict[str, float] = defaultdict(float)
        self.count = 0

    def add_scalars(self, iteration: int, scalars: dict[str, float]) -> None:
        for name, value in scalars.items():
            self.sums[name] += value
        self.count += 1
        if iteration % self.log_period == 0:
            self.flush(iteration)

    def flush(self, iteration: int) -> None:
        for name, total in self.sums.items():
            self.writer.add_scalar(TAG_PREFIX + name, total / self.count, iteration)
        self.sums.clear()
        self.count = 0
        self.writer.flush()

    def add_picture(self, name: str, picture: np.ndarray, iteration: int) -> None:
        """``picture``: (H, W, 3) uint8, as ``visualize.py`` draws them."""
        self.writer.add_image(TAG_PREFIX + name, picture, iteration, dataformats="HWC")

    def close(self) -> None:
        self.writer.close()


def matched_sem_dist_maps(
    detections: dict[str, Tensor],
    target: dict,
    num_layers: int,
    dist_saturation: Optional[float],
    max_rois: int,
    match_iou: float,
) -> tuple[Tensor, Tensor]:
    """Predicted and target sem-dist maps (R, M, M) of up to ``max_rois`` detections, best score
    first, whose box overlaps a ground-truth box at IoU >= ``match_iou``.

    detections: one image's model output (``boxes``, ``scores``, ``sem_dist`` (D, M, M)); target:
    that image's ground truth (data contract) in the same pixels. The target map is built on the
    detection's own RoI grid from the best-overlapping object (SPEC section 2).
    """
    boxes, scores, predicted = detections["boxes"].cpu(), detections["scores"].cpu(), detections["sem_dist"].cpu()
    resolution = predicted.shape[-1]
    if len(boxes) == 0 or len(target["boxes"]) == 0:
        empty = predicted.new_zeros((0, resolution, resolution))
        return empty, empty
    best_iou, matched = box_iou(boxes, target["boxes"].cpu()).max(dim=1)
    keep = torch.where(best_iou >= match_iou)[0]
    keep = keep[scores[keep].argsort(descending=True)[:max_rois]]
    amodal, visible = target["amodal_masks"].cpu().bool(), target["visible_masks"].cpu().bool()
    in_front = resolve_depth_order(amodal, visible, target["depth_rank"].cpu(), target["depth_constraints"].cpu())
    _, expected = roi_layering_targets(
        amodal, visible, in_front, boxes[keep], matched[keep], resolution, num_layers,
        resolve_dist_saturation(dist_saturation, resolution),
    )
    return predicted[keep], expected
