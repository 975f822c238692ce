"""RoI heads: the Fast R-CNN box branch and a pluggable mask branch on the RPN's proposals.

Training: the GT boxes join the proposals, each proposal is matched to a GT box (IoU >= 0.5
foreground, else background), 512 per image are sampled (25% foreground at most), and the box
branch is trained on them. Eval: class scores and per-class boxes are decoded, clipped, thresholded
(score > 0.05), tiny boxes removed, NMS run per class (0.5) and the best 100 kept per image.

The mask branch (``mask_branches/``) follows the contract of ``mask_branches/base.py``; the RoI
heads hand it the positive RoIs in training and the final detections at test time, merge its
outputs into the detections (refusing any that would replace ``boxes`` or ``labels``), and pass on
what the rest of the model asks of it: the fields to paste, the finalized output fields, the
dataset check and the debug pictures. The branch owns its RoI pooler, so it chooses which levels
and resolution it pools.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import boxes as box_ops

from .box_coder import BoxCoder
from .box_head import FastRCNNPredictor, TwoMLPHead, fast_rcnn_losses
from .mask_branches import BOX_FIELDS, MaskBranch, RoIBatch
from .matcher import Matcher
from .poolers import MultiScaleRoIAlign
from .sampler import BalancedPositiveNegativeSampler


class RoIHeads(nn.Module):
    """``forward(features, proposals, image_sizes, targets) -> (detections, losses)``.

    Args:
        box_pooler, box_head, box_predictor: the box branch.
        box_coder: deltas relative to the proposals (weights 10, 10, 5, 5).
        matcher, sampler: proposal labelling and sampling for training.
        smooth_l1_beta: of the box regression loss.
        score_thresh, nms_thresh, detections_per_image, min_box_size: eval post-processing.
        mask_branch: optional ``MaskBranch``.
    """

    def __init__(
        self,
        box_pooler: MultiScaleRoIAlign,
        box_head: TwoMLPHead,
        box_predictor: FastRCNNPredictor,
        box_coder: BoxCoder,
        matcher: Matcher,
        sampler: BalancedPositiveNegativeSampler,
        smooth_l1_beta: float,
        score_thresh: float,
        nms_thresh: float,
        detections_per_image: int,
        min_box_size: float,
        mask_branch: Optional[MaskBranch] = None,
    ):
        super().__init__()
        self.box_pooler = box_pooler
        self.box_head = box_head
        self.box_predictor = box_predictor
        self.box_coder = box_coder
        self.matcher = matcher
        self.sampler = sampler
        self.smooth_l1_beta = smooth_l1_beta
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_image = detections_per_image
        self.min_box_size = min_box_size
        self.mask_branch = mask_branch

    def forward(
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_sizes: list[tuple[int, int]],
        targets: Optional[list[dict]] = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """Returns per-image detections {boxes (D, 4), scores (D,), labels (D,), + mask outputs}
        in eval mode, the losses in training mode (the other element is empty)."""
        if self.training:
            proposals, labels, matched_gt, regression_targets = self.sample_proposals(proposals, targets)
        class_logits, box_deltas = self.box_predictor(self.box_head(self.box_pooler(features, proposals)))

        if self.training:
            loss_classifier, loss_box_reg = fast_rcnn_losses(
                class_logits, box_deltas, torch.cat(labels), torch.cat(regression_targets), self.smooth_l1_beta
            )
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
            if self.mask_branch is not None:
                positive = [torch.where(labels_i > 0)[0] for labels_i in labels]
                rois = RoIBatch(
                    boxes=[p[keep] for p, keep in zip(proposals, positive)],
                    labels=[lab[keep] for lab, keep in zip(labels, positive)],
                    matched_gt=[m[keep] for m, keep in zip(matched_gt, positive)],
                )
                losses.update(self.mask_branch(features, rois, image_sizes, targets))
            return [], losses

        detections = self.postprocess(class_logits, box_deltas, proposals, image_sizes)
        if self.mask_branch is not None:
            rois = RoIBatch(
                boxes=[d["boxes"] for d in detections],
                labels=[d["labels"] for d in detections],
                scores=[d["scores"] for d in detections],
            )
            for detection, outputs in zip(detections, self.mask_branch(features, rois, image_sizes)):
                replaced = [name for name in BOX_FIELDS if name in outputs]
                if replaced:
                    raise ValueError(f"mask branch {type(self.mask_branch).__name__} returned {replaced}, which the "
                                     "box branch decides; a mask branch may add fields and replace scores only")
                detection.update(outputs)
        return detections, {}

    @property
    def pasted_fields(self) -> tuple[str, ...]:
        """The eval outputs on the RoI grid that the image transform pastes into the image."""
        return () if self.mask_branch is None else self.mask_branch.pasted_fields

    def finalize(self, detections: list[dict[str, Tensor]], image_sizes: list[tuple[int, int]]) -> list[dict]:
        """Per image, once in original-image pixels: the mask branch's finalized output fields
        (the detections as they are without a mask branch)."""
        if self.mask_branch is None:
            return detections
        return [self.mask_branch.finalize(d, size) for d, size in zip(detections, image_sizes)]

    def check_categories(self, categories: list[dict]) -> None:
        if self.mask_branch is not None:
            self.mask_branch.check_categories(categories)

    @property
    def debug_picture_names(self) -> tuple[str, ...]:
        return () if self.mask_branch is None else self.mask_branch.debug_picture_names

    def debug_pictures(self, detection: dict[str, Tensor], target: Optional[dict], max_rois: int,
                       match_iou: float) -> dict[str, np.ndarray]:
        if self.mask_branch is None:
            return {}
        return self.mask_branch.debug_pictures(detection, target, max_rois, match_iou)

    def sample_proposals(
        self, proposals: list[Tensor], targets: list[dict]
    ) -> tuple[list[Tensor], list[Tensor], list[Tensor], list[Tensor]]:
        """Per image: sampled proposals (S_i, 4), labels (S_i,), matched GT index (S_i,), box targets (S_i, 4)."""
        labels_per_image, matched_per_image = [], []
        proposals = [torch.cat([p, t["boxes"].to(p.dtype)]) for p, t in zip(proposals, targets)]
        for proposals_i, target in zip(proposals, targets):
            gt_boxes, gt_labels = target["boxes"], target["labels"]
            if gt_boxes.numel() == 0:
                matched = torch.zeros(len(proposals_i), dtype=torch.int64, device=proposals_i.device)
                labels = torch.zeros_like(matched)
            else:
                matches = self.matcher(box_ops.box_iou(gt_boxes, proposals_i))
                matched = matches.clamp(min=0)
                labels = gt_labels[matched].to(torch.int64)
                labels[matches == Matcher.BELOW_LOW_THRESHOLD] = 0
                labels[matches == Matcher.BETWEEN_THRESHOLDS] = -1
            labels_per_image.append(labels)
            matched_per_image.append(matched)

        positive_masks, negative_masks = self.sampler(labels_per_image)
        sampled_proposals, sampled_labels, sampled_matched, regression_targets = [], [], [], []
        for proposals_i, labels, matched, target, pos, neg in zip(
            proposals, labels_per_image, matched_per_image, targets, positive_masks, negative_masks
        ):
            sampled = torch.where(pos | neg)[0]
            proposals_i, matched = proposals_i[sampled], matched[sampled]
            # Without GT every sample is background; its regression target is never used.
            matched_boxes = target["boxes"][matched] if len(target["boxes"]) else proposals_i
            sampled_proposals.append(proposals_i)
            sampled_labels.append(labels[sampled])
            sampled_matched.append(matched)
            regression_targets.append(self.box_coder.encode(matched_boxes.to(proposals_i.dtype), proposals_i))
        return sampled_proposals, sampled_labels, sampled_matched, regression_targets

    def postprocess(
        self, class_logits: Tensor, box_deltas: Tensor, proposals: list[Tensor], image_sizes: list[tuple[int, int]]
    ) -> list[dict[str, Tensor]]:
        """Scores and class boxes -> per image the detections after thresholding and class-wise NMS."""
        num_classes = class_logits.shape[1]  # background included
        boxes = self.box_coder.decode(box_deltas, torch.cat(proposals))  # (R, C + 1 or 1, 4)
        boxes = boxes.expand(-1, num_classes, -1)
        scores = F.softmax(class_logits, -1)
        # Column 0 is background; a detection is a (RoI, foreground class) pair.
        class_ids = torch.arange(1, num_classes, device=class_logits.device)
        detections = []
        counts = [len(p) for p in proposals]
        for boxes_i, scores_i, image_size in zip(boxes.split(counts), scores.split(counts), image_sizes):
            labels_i = class_ids.repeat(len(boxes_i))
            boxes_i = box_ops.clip_boxes_to_image(boxes_i, image_size)[:, 1:].reshape(-1, 4)
            scores_i = scores_i[:, 1:].reshape(-1)
            keep = torch.where(scores_i > self.score_thresh)[0]
            boxes_i, scores_i, labels_i = boxes_i[keep], scores_i[keep], labels_i[keep]
            keep = box_ops.remove_small_boxes(boxes_i, self.min_box_size)
            boxes_i, scores_i, labels_i = boxes_i[keep], scores_i[keep], labels_i[keep]
            keep = box_ops.batched_nms(boxes_i, scores_i, labels_i, self.nms_thresh)[: self.detections_per_image]
            detections.append({"boxes": boxes_i[keep], "scores": scores_i[keep], "labels": labels_i[keep]})
        return detections
