"""Region Proposal Network (Ren et al., 2015) over the FPN levels, as in torchvision.

A shared head scores and regresses A anchors per cell of every level; the best anchors per level
become proposals after decoding, clipping, removal of tiny boxes and per-level NMS. Training
matches anchors to GT boxes (IoU >= 0.7 positive, < 0.3 negative, plus each GT's best anchors),
samples 256 per image and applies BCE on objectness and smooth-L1 on the deltas of positives.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import boxes as box_ops

from .anchors import AnchorGenerator
from .box_coder import BoxCoder
from .matcher import Matcher
from .sampler import BalancedPositiveNegativeSampler

HEAD_INIT_STD = 0.01  # normal init of the head's convolutions (Faster R-CNN)


class RPNHead(nn.Module):
    """3x3 conv + ReLU shared by all levels, then 1x1 convs for A objectness logits and 4A deltas."""

    def __init__(self, in_channels: int, num_anchors: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, in_channels, 3, padding=1)
        self.objectness_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.anchor_deltas = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for conv in (self.conv, self.objectness_logits, self.anchor_deltas):
            nn.init.normal_(conv.weight, std=HEAD_INIT_STD)
            nn.init.zeros_(conv.bias)

    def forward(self, features: list[Tensor]) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: (N, A, H, W) logits and (N, 4A, H, W) deltas."""
        logits, deltas = [], []
        for feature in features:
            hidden = F.relu(self.conv(feature), inplace=True)
            logits.append(self.objectness_logits(hidden))
            deltas.append(self.anchor_deltas(hidden))
        return logits, deltas


class RegionProposalNetwork(nn.Module):
    """``forward(batch_hw, image_sizes, features, targets) -> (proposals, losses)``.

    Args:
        feature_names: the FPN levels it runs on, finest first (one anchor size level each).
        pre_nms_topk_train / _test: proposals kept per level and image before NMS.
        post_nms_topk_train / _test: proposals kept per image after NMS.
        nms_thresh: IoU of the per-level NMS.
        score_thresh: objectness probability a proposal must reach.
        min_size: proposals with a side below this (pixels) are dropped.
        smooth_l1_beta: transition point of the smooth-L1 box loss.
    """

    def __init__(
        self,
        feature_names: tuple[str, ...],
        anchor_generator: AnchorGenerator,
        head: RPNHead,
        box_coder: BoxCoder,
        matcher: Matcher,
        sampler: BalancedPositiveNegativeSampler,
        pre_nms_topk_train: int,
        pre_nms_topk_test: int,
        post_nms_topk_train: int,
        post_nms_topk_test: int,
        nms_thresh: float,
        score_thresh: float,
        min_size: float,
        smooth_l1_beta: float,
    ):
        super().__init__()
        self.feature_names = tuple(feature_names)
        self.anchor_generator = anchor_generator
        self.head = head
        self.box_coder = box_coder
        self.matcher = matcher
        self.sampler = sampler
        self.pre_nms_topk = {True: pre_nms_topk_train, False: pre_nms_topk_test}
        self.post_nms_topk = {True: post_nms_topk_train, False: post_nms_topk_test}
        self.nms_thresh = nms_thresh
        self.score_thresh = score_thresh
        self.min_size = min_size
        self.smooth_l1_beta = smooth_l1_beta

    def forward(
        self,
        batch_hw: tuple[int, int],
        image_sizes: list[tuple[int, int]],
        features: dict[str, Tensor],
        targets: list[dict] | None = None,
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Args:
            batch_hw: (H, W) of the padded batch.
            image_sizes: (h, w) of each image inside it.
            features: FPN levels by name, (N, C, H_l, W_l).
            targets: training targets (``boxes`` used).

        Returns: per image (P_i, 4) proposals xyxy, and the losses (empty in eval mode).
        """
        features = [features[name] for name in self.feature_names]
        logits, deltas = self.head(features)
        anchors_per_level = self.anchor_generator(batch_hw, [f.shape[-2:] for f in features], features[0].device)
        anchors_per_level_count = [len(a) for a in anchors_per_level]
        anchors = torch.cat(anchors_per_level)
        num_images = features[0].shape[0]
        # Flatten to the anchor order: level, cell (row-major), anchor.
        objectness = torch.cat([level.permute(0, 2, 3, 1).reshape(num_images, -1) for level in logits], dim=1)
        anchor_deltas = torch.cat(
            [
                level.view(num_images, -1, 4, *level.shape[-2:]).permute(0, 3, 4, 1, 2).reshape(num_images, -1, 4)
                for level in deltas
            ],
            dim=1,
        )  # (N, A_total, 4)
        proposals = self.box_coder.decode(anchor_deltas.detach(), anchors)[..., 0, :]  # (N, A_total, 4)
        boxes = self.select_proposals(proposals, objectness.detach(), image_sizes, anchors_per_level_count)

        losses = {}
        if self.training:
            losses = self.losses(anchors, objectness, anchor_deltas, targets)
        return boxes, losses

    def select_proposals(
        self, proposals: Tensor, objectness: Tensor, image_sizes: list[tuple[int, int]], anchors_per_level: list[int]
    ) -> list[Tensor]:
        """(N, A_total, 4) boxes and (N, A_total) logits -> per image the proposals kept by NMS."""
        device = proposals.device
        pre_nms_topk = self.pre_nms_topk[self.training]
        top_indices, top_levels = [], []
        start = 0
        for level, count in enumerate(anchors_per_level):
            k = min(pre_nms_topk, count)
            top_indices.append(objectness[:, start : start + count].topk(k, dim=1).indices + start)
            top_levels.append(torch.full((k,), level, dtype=torch.int64, device=device))
            start += count
        top_indices = torch.cat(top_indices, dim=1)  # (N, K)
        levels = torch.cat(top_levels)  # (K,)
        image_index = torch.arange(len(proposals), device=device)[:, None]
        scores = torch.sigmoid(objectness[image_index, top_indices])
        boxes = proposals[image_index, top_indices]

        kept = []
        for boxes_i, scores_i, image_size in zip(boxes, scores, image_sizes):
            boxes_i = box_ops.clip_boxes_to_image(boxes_i, image_size)
            keep = box_ops.remove_small_boxes(boxes_i, self.min_size)
            keep = keep[scores_i[keep] >= self.score_thresh]
            boxes_i, scores_i, levels_i = boxes_i[keep], scores_i[keep], levels[keep]
            keep = box_ops.batched_nms(boxes_i, scores_i, levels_i, self.nms_thresh)
            kept.append(boxes_i[keep[: self.post_nms_topk[self.training]]])
        return kept

    def losses(
        self, anchors: Tensor, objectness: Tensor, anchor_deltas: Tensor, targets: list[dict]
    ) -> dict[str, Tensor]:
        """BCE on sampled anchors' objectness; smooth-L1 on sampled positives' deltas, both per sample."""
        labels, matched_boxes = [], []
        for target in targets:
            gt_boxes = target["boxes"]
            if gt_boxes.numel() == 0:
                labels.append(torch.zeros(len(anchors), device=anchors.device))
                matched_boxes.append(torch.zeros_like(anchors))
                continue
            matches = self.matcher(box_ops.box_iou(gt_boxes, anchors))
            labels_i = (matches >= 0).to(torch.float32)
            labels_i[matches == Matcher.BETWEEN_THRESHOLDS] = -1.0
            labels.append(labels_i)
            matched_boxes.append(gt_boxes[matches.clamp(min=0)])

        positive_masks, negative_masks = self.sampler(labels)
        positives = torch.where(torch.cat(positive_masks))[0]
        negatives = torch.where(torch.cat(negative_masks))[0]
        sampled = torch.cat([positives, negatives])

        # Indices run over (image, anchor) pairs; the anchors are the same for every image.
        regression_targets = self.box_coder.encode(
            torch.cat(matched_boxes)[positives], anchors[positives % len(anchors)]
        )
        box_loss = F.smooth_l1_loss(
            anchor_deltas.reshape(-1, 4)[positives], regression_targets, beta=self.smooth_l1_beta, reduction="sum"
        ) / sampled.numel()
        objectness_loss = F.binary_cross_entropy_with_logits(
            objectness.reshape(-1)[sampled], torch.cat(labels)[sampled]
        )
        return {"loss_objectness": objectness_loss, "loss_rpn_box_reg": box_loss}
