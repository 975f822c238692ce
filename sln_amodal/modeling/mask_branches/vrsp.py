"""VRSP-Net (Xiao et al., AAAI 2021): amodal segmentation from visible-region segmentation and a
shape prior, as a mask branch.

On the pooled RoI features x (R, C, P, P), with A = the amodal and V = the visible mask network:

1. coarse: A0 = A(x), V0 = V(x);
2. cross-task refinement (CtRef): V1 = V(x * att(A0)), then A1 = A(x * att(V1)), where att(m) is
   the sigmoid of the RoI class's logits average-pooled to P x P;
3. shape-prior refinement (SPRef): the coarse amodal mask is embedded by the shape auto-encoder, the
   k nearest codes of its class are decoded, pooled to P x P and concatenated to A's input, which a
   3x3 convolution brings back to C channels;
4. training only, with CtRef: the GT-attention pass A2 = A(x * GT visible), V2 = V(x * GT amodal);
   feature matching (FM) pulls the coarse pass's last-convolution and deconvolution features
   towards the GT-attention pass's (cosine distance, the target detached);
5. visible-attention re-classification (VAR): a 2-FC classifier on x * att(V1); trained on the
   predicted attention (weighted by the visible mask's IoU) and on the GT visible mask;
6. test time: score^(1/n) rescoring by the VAR probability (floor + (1 - floor) p) and by the
   shape-prior retrieval (SPRet) factor relu(ln(alpha - d) / ln alpha), with d the fraction of
   pixels where the final amodal mask and its nearest code's shape disagree.

Outputs: A1 and V1 (A0 and V0 when neither refinement is on). The VAR and SPRet rescoring apply to
the final detections, after the box branch's NMS (VRSP-Net rescores before NMS). Deliberate
differences from the upstream code, where it does something its paper does not describe: the
GT-attention visible pass is supervised with the GT visible mask, the refinement IoU weights use the
RoI's class channel, the SPRef query is the coarse mask's probabilities (the codebook is built from
masks, not logits), and VAR's attention is the sigmoid used by CtRef, not raw logits.
"""
from __future__ import annotations

import logging
import math
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...config import ConfigError
from ...structures.pixel_counts import count_true
from ..poolers import MultiScaleRoIAlign
from .amodal_visible import AmodalVisibleHead
from .base import RoIBatch, register_mask_branch
from .mask_rcnn import mask_network_config
from .roi_masks import UPSAMPLE_FACTOR, class_mask_loss, graph_keeping_zero, roi_mask_targets, select_class_maps
from .vrsp_shape_prior import ShapePrior, reconstruction_loss, shape_prior_from_config

logger = logging.getLogger(__name__)


def mask_attention(mask_logits: Tensor, labels: Tensor) -> Tensor:
    """(R, K, M, M) logits -> (R, 1, M/2, M/2): the sigmoid of each RoI's class map, pooled to the
    resolution of the RoI features."""
    return F.avg_pool2d(select_class_maps(mask_logits, labels)[:, None], UPSAMPLE_FACTOR).sigmoid()


def pool_to_features(masks: Tensor) -> Tensor:
    """(R, M, M) masks (GT or decoded shapes; or (R, k, M, M)) -> (R, 1 or k, M/2, M/2)."""
    return F.avg_pool2d(masks if masks.dim() == 4 else masks[:, None], UPSAMPLE_FACTOR)


def binary_iou(predicted: Tensor, target: Tensor) -> Tensor:
    """(R,) IoU of (R, M, M) bool masks; 0 where both are empty."""
    intersection = count_true((predicted & target).flatten(1), dim=1)
    union = count_true((predicted | target).flatten(1), dim=1)
    return torch.where(union > 0, intersection / union.clamp(min=1), 0.0)


def cosine_distance(features: Tensor, targets: Tensor) -> Tensor:
    """Mean over the RoIs of 1 - cos(features, targets), each RoI's features flattened."""
    if features.numel() == 0:
        return graph_keeping_zero(features)
    return (1 - F.cosine_similarity(features.flatten(1), targets.flatten(1), dim=1)).mean()


def shape_prior_factor(disagreement: Tensor, alpha: float) -> Tensor:
    """VRSP-Net's retrieval rescoring factor: 1 when the mask equals its nearest shape (d = 0),
    falling to 0 at d = alpha - 1 (all pixels differ, for alpha = 2)."""
    return F.relu(torch.log(alpha - disagreement) / math.log(alpha))


class VisibleReclassifier(nn.Module):
    """VAR's classifier: flatten (C, P, P) -> FC + ReLU -> FC + ReLU -> C foreground class logits."""

    def __init__(self, in_features: int, fc_dim: int, num_classes: int):
        super().__init__()
        self.fc1 = nn.Linear(in_features, fc_dim)
        self.fc2 = nn.Linear(fc_dim, fc_dim)
        self.classifier = nn.Linear(fc_dim, num_classes)
        for layer in (self.fc1, self.fc2):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


@register_mask_branch("VRSPHead")
class VRSPHead(AmodalVisibleHead):
    """Args (after ``AmodalVisibleHead``'s):
        cross_task_refinement: CtRef (and the GT-attention pass it trains with).
        gt_attention_weights: loss weights of the GT-attention amodal and visible passes.
        feature_matching_weights: FM weights of the (last convolution, deconvolution) features; None: no FM.
        reclassifier: VAR's classifier; None: no VAR.
        reclassification_weight: VAR's loss weight.
        reclassification_gt_weight: weight of the GT-visible-attention samples in VAR's loss.
        reclassification_floor: the VAR factor is floor + (1 - floor) x class probability.
        shape_prior: the auto-encoder and codebook; None when neither SPRef, SPRet nor joint training is on.
        shape_prior_k: SPRef's number of retrieved shapes; 0: no SPRef.
        shape_prior_retrieval: SPRet rescoring at test time.
        shape_prior_alpha: SPRet's alpha.
        reconstruction_weight: weight of the auto-encoder's reconstruction loss on the GT amodal masks
            of the positive RoIs (training it jointly); 0: the auto-encoder is not trained here.
    """

    def __init__(
        self,
        *,
        pooler: MultiScaleRoIAlign,
        in_channels: int,
        conv_dims: Sequence[int],
        deconv_dim: int,
        num_classes: int,
        class_agnostic: bool,
        mask_thresh: float,
        cross_task_refinement: bool,
        gt_attention_weights: tuple[float, float],
        feature_matching_weights: Optional[tuple[float, float]],
        reclassifier: Optional[VisibleReclassifier],
        reclassification_weight: float,
        reclassification_gt_weight: float,
        reclassification_floor: float,
        shape_prior: Optional[ShapePrior],
        shape_prior_k: int,
        shape_prior_retrieval: bool,
        shape_prior_alpha: float,
        reconstruction_weight: float,
    ):
        super().__init__(pooler=pooler, in_channels=in_channels, conv_dims=conv_dims, deconv_dim=deconv_dim,
                         num_classes=num_classes, class_agnostic=class_agnostic, mask_thresh=mask_thresh)
        if feature_matching_weights is not None and not cross_task_refinement:
            raise ValueError("feature matching compares with the GT-attention pass, which comes with cross-task "
                             "refinement: turn MODEL.VRSP.CROSS_TASK_REFINEMENT on or MODEL.VRSP.FEATURE_MATCHING off")
        if shape_prior is None and (shape_prior_k or shape_prior_retrieval or reconstruction_weight):
            raise ValueError("shape-prior refinement, retrieval or reconstruction need a shape prior")
        self.cross_task_refinement = cross_task_refinement
        self.gt_attention_weights = gt_attention_weights
        self.feature_matching_weights = feature_matching_weights
        self.reclassifier = reclassifier
        self.reclassification_weight = reclassification_weight
        self.reclassification_gt_weight = reclassification_gt_weight
        self.reclassification_floor = reclassification_floor
        self.shape_prior = shape_prior
        self.shape_prior_k = shape_prior_k
        self.shape_prior_retrieval = shape_prior_retrieval
        self.shape_prior_alpha = shape_prior_alpha
        self.reconstruction_weight = reconstruction_weight
        self.prior_fusion = nn.Conv2d(in_channels + shape_prior_k, in_channels, 3, padding=1) if shape_prior_k else None
        self._warned_no_codebook = False

    @classmethod
    def from_config(cls, cfg, backbone) -> dict:
        v = cfg.MODEL.VRSP
        prior_cfg = v.SHAPE_PRIOR
        if v.SHAPE_PRIOR_REFINEMENT and prior_cfg.TRAIN_JOINTLY:
            raise ConfigError("MODEL.VRSP.SHAPE_PRIOR.TRAIN_JOINTLY: shape-prior refinement needs its codebook "
                              "before training, so the auto-encoder cannot train jointly; turn one of them off")
        if v.SHAPE_PRIOR_REFINEMENT and not prior_cfg.FILE:
            raise ConfigError("MODEL.VRSP.SHAPE_PRIOR.FILE: shape-prior refinement needs a codebook file "
                              "(scripts/build_shape_codebook.py writes one)")
        if v.SHAPE_PRIOR_REFINEMENT and v.SHAPE_PRIOR_K > prior_cfg.NUM_CLUSTERS:
            raise ConfigError(f"MODEL.VRSP.SHAPE_PRIOR_K ({v.SHAPE_PRIOR_K}) exceeds the codebook's "
                              f"MODEL.VRSP.SHAPE_PRIOR.NUM_CLUSTERS ({prior_cfg.NUM_CLUSTERS})")
        uses_prior = v.SHAPE_PRIOR_REFINEMENT or v.SHAPE_PRIOR_RETRIEVAL or prior_cfg.TRAIN_JOINTLY
        shape_prior = shape_prior_from_config(cfg) if uses_prior else None
        if shape_prior is not None:
            shape_prior.autoencoder.requires_grad_(prior_cfg.TRAIN_JOINTLY)  # otherwise fixed by its file
        pooled_features = backbone.out_channels * cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION**2
        reclassifier = VisibleReclassifier(
            pooled_features, v.RECLASSIFICATION_FC_DIM, cfg.MODEL.NUM_CLASSES) if v.RECLASSIFICATION else None
        return {
            **mask_network_config(cfg, backbone),
            "cross_task_refinement": v.CROSS_TASK_REFINEMENT,
            "gt_attention_weights": (v.GT_AMODAL_WEIGHT, v.GT_VISIBLE_WEIGHT),
            "feature_matching_weights": tuple(v.FEATURE_MATCHING_WEIGHTS) if v.FEATURE_MATCHING else None,
            "reclassifier": reclassifier,
            "reclassification_weight": v.RECLASSIFICATION_WEIGHT,
            "reclassification_gt_weight": v.RECLASSIFICATION_GT_WEIGHT,
            "reclassification_floor": v.RECLASSIFICATION_FLOOR,
            "shape_prior": shape_prior,
            "shape_prior_k": v.SHAPE_PRIOR_K if v.SHAPE_PRIOR_REFINEMENT else 0,
            "shape_prior_retrieval": v.SHAPE_PRIOR_RETRIEVAL,
            "shape_prior_alpha": v.SHAPE_PRIOR_ALPHA,
            "reconstruction_weight": prior_cfg.RECONSTRUCTION_WEIGHT if prior_cfg.TRAIN_JOINTLY else 0.0,
        }

    def check_categories(self, categories: list[dict]) -> None:
        """The shape prior's codebook file must have been built for the dataset's categories."""
        if self.shape_prior is not None:
            self.shape_prior.check_categories(categories)

    @property
    def refines_amodal(self) -> bool:
        return self.cross_task_refinement or self.prior_fusion is not None

    def prior_shapes(self, coarse_amodal: Tensor, labels: Tensor) -> Optional[Tensor]:
        """SPRef's (R, k, P, P) k nearest codebook shapes of the coarse amodal masks, pooled to the
        feature grid; None without SPRef."""
        if self.prior_fusion is None:
            return None
        if not self.shape_prior.has_codebook:
            raise RuntimeError("shape-prior refinement needs a codebook: build one with "
                               "scripts/build_shape_codebook.py and name it in MODEL.VRSP.SHAPE_PRIOR.FILE")
        with torch.no_grad():
            probabilities = select_class_maps(coarse_amodal, labels).sigmoid()
            shapes = self.shape_prior.nearest_shapes(probabilities, labels, self.shape_prior_k)  # (R, k, M, M)
        return pool_to_features(shapes)

    def with_shape_prior(self, features: Tensor, shapes: Optional[Tensor]) -> Tensor:
        """The amodal network's input: ``features`` fused with the ``prior_shapes`` (unchanged without SPRef)."""
        if shapes is None:
            return features
        return self.prior_fusion(torch.cat([features, shapes.to(features.dtype)], dim=1))

    def refine(
        self, x: Tensor, amodal0: Tensor, visible0: Tensor, labels: Tensor, shapes: Optional[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """The final (amodal, visible) logits from the coarse ones (stages 2 and 3 of the module docstring)."""
        if not self.refines_amodal:
            return amodal0, visible0
        if self.cross_task_refinement:
            visible1 = self.visible_fcn(x * mask_attention(amodal0, labels))
            amodal_input = x * mask_attention(visible1, labels)
        else:
            visible1, amodal_input = visible0, x
        return self.amodal_fcn(self.with_shape_prior(amodal_input, shapes)), visible1

    def forward(
        self,
        features: dict[str, Tensor],
        rois: RoIBatch,
        image_sizes: list[tuple[int, int]],
        targets: list[dict] | None = None,
    ):
        x = self.pooler(features, rois.boxes)  # (R, C, P, P)
        labels = torch.cat(rois.labels)
        amodal0, amodal0_features = self.amodal_fcn.forward_with_features(x)
        visible0, visible0_features = self.visible_fcn.forward_with_features(x)
        shapes = self.prior_shapes(amodal0, labels)
        amodal1, visible1 = self.refine(x, amodal0, visible0, labels, shapes)
        if not self.training:
            scores = self.rescore(torch.cat(rois.scores), x, amodal1, visible1, labels)
            return self.predictions(amodal1, visible1, rois, scores=scores)

        size = amodal0.shape[-1]
        gt_amodal = roi_mask_targets(rois, [t["amodal_masks"] for t in targets], size)  # (R, M, M) in [0, 1]
        gt_visible = roi_mask_targets(rois, [t["visible_masks"] for t in targets], size)
        losses = {
            "loss_amodal_mask": class_mask_loss(amodal0, labels, gt_amodal),
            "loss_visible_mask": class_mask_loss(visible0, labels, gt_visible),
        }
        if self.cross_task_refinement:
            # Each refined mask's loss counts as much as the coarse mask it attended to was right.
            with torch.no_grad():
                amodal_weight = binary_iou(select_class_maps(visible0, labels) > 0, gt_visible >= 0.5)
                visible_weight = binary_iou(select_class_maps(amodal0, labels) > 0, gt_amodal >= 0.5)
            losses["loss_amodal_refined"] = class_mask_loss(amodal1, labels, gt_amodal, amodal_weight)
            losses["loss_visible_refined"] = class_mask_loss(visible1, labels, gt_visible, visible_weight)
            losses.update(self.gt_attention_losses(x, labels, gt_amodal, gt_visible, shapes,
                                                   [amodal0_features, visible0_features]))
        elif self.refines_amodal:
            losses["loss_amodal_refined"] = class_mask_loss(amodal1, labels, gt_amodal)
        if self.reclassifier is not None:
            losses["loss_reclassification"] = self.reclassification_loss(x, visible1, labels, gt_visible)
        if self.reconstruction_weight:
            binary = (gt_amodal >= 0.5).to(x.dtype)
            loss = reconstruction_loss(self.shape_prior.autoencoder, binary) if len(binary) else graph_keeping_zero(x)
            losses["loss_shape_reconstruction"] = self.reconstruction_weight * loss
        return losses

    def gt_attention_losses(
        self, x: Tensor, labels: Tensor, gt_amodal: Tensor, gt_visible: Tensor, shapes: Optional[Tensor],
        coarse_features: list[list[Tensor]],
    ) -> dict[str, Tensor]:
        """The GT-attention pass (A2, V2, the amodal one with the same prior shapes as A1) and, with FM,
        the coarse features matched to it."""
        amodal_input = self.with_shape_prior(x * pool_to_features(gt_visible), shapes)
        amodal2, amodal2_features = self.amodal_fcn.forward_with_features(amodal_input)
        visible2, visible2_features = self.visible_fcn.forward_with_features(x * pool_to_features(gt_amodal))
        amodal_weight, visible_weight = self.gt_attention_weights
        losses = {
            "loss_amodal_gt_attention": amodal_weight * class_mask_loss(amodal2, labels, gt_amodal),
            "loss_visible_gt_attention": visible_weight * class_mask_loss(visible2, labels, gt_visible),
        }
        if self.feature_matching_weights is not None:
            pairs = zip(coarse_features, [amodal2_features, visible2_features])
            losses["loss_feature_matching"] = sum(
                weight * cosine_distance(coarse, attended.detach())
                for coarse_list, attended_list in pairs
                for weight, coarse, attended in zip(self.feature_matching_weights, coarse_list, attended_list)
            )
        return losses

    def reclassification_loss(self, x: Tensor, visible1: Tensor, labels: Tensor, gt_visible: Tensor) -> Tensor:
        """VAR: class cross-entropy on the features under the predicted visible attention (weighted by
        that mask's IoU with the GT) and under the GT visible mask (weighted by the GT weight)."""
        if len(labels) == 0:
            return graph_keeping_zero(x, *self.reclassifier.parameters())
        with torch.no_grad():
            predicted_attention = mask_attention(visible1, labels)
            weights = torch.cat([
                binary_iou(select_class_maps(visible1, labels) > 0, gt_visible >= 0.5),
                torch.full_like(labels, self.reclassification_gt_weight, dtype=x.dtype),
            ])
        logits = self.reclassifier(torch.cat([x * predicted_attention, x * pool_to_features(gt_visible)]))
        per_sample = F.cross_entropy(logits, (labels - 1).repeat(2), reduction="none")
        return self.reclassification_weight * (weights * per_sample).mean()

    def rescore(self, scores: Tensor, x: Tensor, amodal: Tensor, visible: Tensor, labels: Tensor) -> Tensor:
        """Test-time scores: the geometric mean of the box score and the VAR and SPRet factors in use."""
        factors = []
        if self.reclassifier is not None:
            probabilities = self.reclassifier(x * mask_attention(visible, labels)).softmax(dim=1)
            class_probability = probabilities[torch.arange(len(labels), device=labels.device), labels - 1]
            factors.append(self.reclassification_floor + (1 - self.reclassification_floor) * class_probability)
        if self.shape_prior_retrieval:
            if self.shape_prior.has_codebook:
                masks = (select_class_maps(amodal, labels).sigmoid() >= self.mask_thresh).to(x.dtype)
                nearest = self.shape_prior.nearest_shapes(masks, labels, 1)[:, 0] >= 0.5
                disagreement = (masks - nearest.to(x.dtype)).abs().flatten(1).mean(dim=1)
                factors.append(shape_prior_factor(disagreement, self.shape_prior_alpha))
            elif not self._warned_no_codebook:
                self._warned_no_codebook = True
                logger.warning("shape-prior retrieval rescoring skipped: no codebook loaded (build one with "
                               "scripts/build_shape_codebook.py and name it in MODEL.VRSP.SHAPE_PRIOR.FILE)")
        if not factors:
            return scores
        product = scores * torch.stack(factors).prod(dim=0)
        return product.clamp(min=0) ** (1 / (1 + len(factors)))
