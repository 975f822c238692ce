"""Fast R-CNN box branch: two fully connected layers on the pooled RoI features, a classifier over
background + C classes, per-class (or class-agnostic) box deltas, and their losses.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TwoMLPHead(nn.Module):
    """(R, C, S, S) pooled features -> (R, fc_dim): flatten, FC + ReLU, FC + ReLU."""

    def __init__(self, in_features: int, fc_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.fc1(x.flatten(start_dim=1)), inplace=True)
        return F.relu(self.fc2(x), inplace=True)


class FastRCNNPredictor(nn.Module):
    """(R, fc_dim) -> class logits (R, C + 1) and box deltas (R, 4 (C + 1)), or (R, 4) class-agnostic."""

    def __init__(self, in_features: int, num_classes: int, class_agnostic: bool):
        super().__init__()
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 if class_agnostic else 4 * (num_classes + 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x)


def fast_rcnn_losses(
    class_logits: Tensor, box_deltas: Tensor, labels: Tensor, regression_targets: Tensor, smooth_l1_beta: float
) -> tuple[Tensor, Tensor]:
    """Cross-entropy over all sampled RoIs; smooth-L1 on the positives' deltas of their GT class
    (or the single class-agnostic box), summed and divided by the number of sampled RoIs.

    Args: (R, C + 1) logits, (R, 4k) deltas, (R,) labels (0 = background), (R, 4) targets.
    """
    classification_loss = F.cross_entropy(class_logits, labels)
    positives = torch.where(labels > 0)[0]
    deltas = box_deltas.reshape(len(box_deltas), -1, 4)
    box_classes = labels[positives] if deltas.shape[1] > 1 else torch.zeros_like(positives)
    box_loss = F.smooth_l1_loss(
        deltas[positives, box_classes], regression_targets[positives], beta=smooth_l1_beta, reduction="sum"
    )
    return classification_loss, box_loss / labels.numel()
