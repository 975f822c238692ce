"""The Semantics Layering Network's mask branch (SPEC sections 2-4), layer by layer:

1. global layering: G predicted on an FPN level for the whole image (``sln_global_layering.py``);
2. instance layering: per RoI, the pooled features plus the RoI crop of the soft global layering
   output (optionally also the RoI's single-layer context) -> convolutions (optionally dilated) ->
   2x deconvolution -> L, the instance layering map (K + 1 classes);
3. sem-dist: those features plus the softmax of L (optionally also the RoI's image cells, see
   ``image_cells``) -> convolutions -> S, regressed on the M x M grid.

Training targets come from the GT masks of each positive RoI's matched object (SPEC section 2,
``sln_amodal.layering``); the cells where another object overlaps the RoI's may weigh more in the
losses (SPEC section 4). At test time S is decoded into amodal and visible masks, occlusion rates
and depth ranks (SPEC section 3) by ``finalize`` once the boxes are in original-image pixels. Its
debug picture shows the sem-dist maps (``sln_pictures.py``).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...config import ConfigError
from ...layering import (
    decode_detections,
    global_layering_map,
    resolve_depth_order,
    resolve_dist_saturation,
    roi_layering_targets,
    roi_cover_levels,
)
from ..layers import channels_last, conv_stack, conv_stack_over_parts, init_predictor, init_trunk
from ..poolers import MultiScaleRoIAlign, boxes_to_rois, roi_pooler_from_config
from ..roi_align import roi_align
from .base import INPUT_IMAGE, MaskBranch, RoIBatch, register_mask_branch
from .roi_masks import UPSAMPLE_FACTOR, graph_keeping_zero, scale_boxes, select_class_maps
from .sln_global_layering import GlobalLayeringModule, global_layering_loss, global_layering_targets
from .sln_pictures import matched_sem_dist_maps, sem_dist_picture


SINGLE_LAYER_CONTEXT = "single_layer"
ROI_CONTEXTS = ("", SINGLE_LAYER_CONTEXT)
CONTEXT_WEIGHT_FLOOR = 1e-6  # a RoI whose weights are all zero gets a zero mean
SEM_DIST_PICTURE = "sem_dist"  # the name of the debug picture of the sem-dist maps
IMAGE_CELL_CHANNELS = 7  # an image cell's colour (3), the visible cells' mean colour (3), their distance (1)


def weighted_cell_mean(values: Tensor, weights: Tensor) -> Tensor:
    """(R, C, 1, 1) mean of RoI cells ``values`` (R, C, P, P) weighted by ``weights`` (R, 1, P, P);
    zero for a RoI whose weights are all zero.

    Two uses: the single-layer context (pooled features weighted by P(G = 1): the cells one object
    covers are mostly the RoI's own object, seen unoccluded, so beside it a cell of the overlap can
    tell whether it shows the same object or another one) and the visible colour of ``image_cells``.
    """
    total = (values * weights).sum(dim=(2, 3), keepdim=True)
    return total / weights.sum(dim=(2, 3), keepdim=True).clamp(min=CONTEXT_WEIGHT_FLOOR)


def image_cells(image_crops: Tensor, visible_weights: Tensor) -> Tensor:
    """(R, 7, M, M): each cell's colour (R, 3, M, M), the mean colour of the cells weighted by
    P(visible) (R, 1, M, M), and the squared distance between the two.

    Inside an overlap the colour tells the two objects apart: a cell whose colour is the RoI's own
    visible colour shows the RoI's object (visible there), one of another colour shows the occluder.
    """
    mean_colour = weighted_cell_mean(image_crops, visible_weights)  # (R, 3, 1, 1)
    distance = (image_crops - mean_colour).square().sum(dim=1, keepdim=True)
    return torch.cat([image_crops, mean_colour.expand_as(image_crops), distance], dim=1)


@register_mask_branch("SLNHead")
class SLNHead(MaskBranch):
    """Args:
        pooler: RoIAlign of the FPN features for the branch (14 x 14 by default).
        global_layering: predicts G; its level's stride places its output for RoIAlign.
        global_stride: stride of the level the global layering module reads.
        in_channels: channels of the pooled FPN features.
        instance_conv_dims, deconv_dim: the instance layering trunk.
        instance_conv_dilations: one dilation per instance convolution (empty: none); dilation
            widens what each RoI cell sees without more computation.
        roi_context: "" or "single_layer": the instance trunk also reads, at every cell, the RoI's
            mean pooled feature over the cells the global layering calls covered once.
        sem_dist_conv_dims, sem_dist_conv_dilations: the sem-dist trunk (dilations as above).
        image_cells: the sem-dist trunk also reads the input image RoIAligned on the M x M grid,
            the mean colour of the cells the instance layering calls visible, and each cell's
            squared colour distance to it (``image_cells``).
        num_classes: foreground classes; S has one map per class (+ background) unless class-agnostic.
        class_agnostic: one S map per RoI.
        num_layers: K.
        dist_saturation: tau of the sem-dist ramp, in RoI grid pixels.
        smooth_l1_beta: of the sem-dist regression loss.
        loss_weights: (global layering, instance layering, sem-dist).
        overlap_cell_weight: weight, in the instance layering and sem-dist losses, of the cells of
            the object's amodal mask that another object's amodal mask also covers (the cells
            where visible or hidden is decided).
        foreign_cell_weight: weight of the cells outside the object's amodal mask that another
            object covers (where the map must leave that object out); every other cell weighs 1.
        roi_scale: every RoI the branch reads, learns on and pastes is its box scaled by this
            factor about its centre: a regressed amodal box falls short of hidden parts, and S can
            reach them only inside its RoI.
        amodal_thresh, visible_margin: decoding thresholds (amodal where S >= amodal_thresh,
            visible where S >= K - visible_margin).
        pooler_aligned: half-pixel offset of RoIAlign, as for the FPN pooler.
    """

    debug_picture_names = (SEM_DIST_PICTURE,)

    def __init__(
        self,
        *,
        pooler: MultiScaleRoIAlign,
        global_layering: GlobalLayeringModule,
        global_stride: int,
        in_channels: int,
        instance_conv_dims: Sequence[int],
        instance_conv_dilations: Sequence[int],
        roi_context: str,
        deconv_dim: int,
        sem_dist_conv_dims: Sequence[int],
        sem_dist_conv_dilations: Sequence[int],
        image_cells: bool,
        num_classes: int,
        class_agnostic: bool,
        num_layers: int,
        dist_saturation: float,
        smooth_l1_beta: float,
        loss_weights: tuple[float, float, float],
        overlap_cell_weight: float,
        foreign_cell_weight: float,
        roi_scale: float,
        amodal_thresh: float,
        visible_margin: float,
        pooler_aligned: bool,
    ):
        super().__init__()
        self.pooler = pooler
        self.global_layering = global_layering
        self.global_stride = global_stride
        self.num_layers = num_layers
        self.resolution = pooler.output_size[0] * UPSAMPLE_FACTOR
        self.dist_saturation = dist_saturation
        self.smooth_l1_beta = smooth_l1_beta
        self.loss_weights = loss_weights
        self.overlap_cell_weight = overlap_cell_weight
        self.foreign_cell_weight = foreign_cell_weight
        if roi_scale < 1.0:
            raise ValueError(f"ROI_SCALE must be >= 1 (a RoI smaller than its box cuts the object), got {roi_scale}")
        self.roi_scale = roi_scale
        self.amodal_thresh = amodal_thresh
        self.visible_margin = visible_margin
        self.pooler_aligned = pooler_aligned

        layer_classes = num_layers + 1
        if roi_context not in ROI_CONTEXTS:
            raise ValueError(f"INSTANCE_ROI_CONTEXT must be one of {ROI_CONTEXTS}, got {roi_context!r}")
        self.roi_context = roi_context
        self.image_cells = image_cells
        context_channels = in_channels if roi_context == SINGLE_LAYER_CONTEXT else 0
        self.instance_trunk, channels = conv_stack(
            in_channels + context_channels + layer_classes, instance_conv_dims, instance_conv_dilations)
        self.deconv = nn.ConvTranspose2d(channels, deconv_dim, UPSAMPLE_FACTOR, stride=UPSAMPLE_FACTOR)
        self.instance_classifier = nn.Conv2d(deconv_dim, layer_classes, 1)
        sem_dist_inputs = deconv_dim + layer_classes + (IMAGE_CELL_CHANNELS if image_cells else 0)
        self.sem_dist_trunk, channels = conv_stack(sem_dist_inputs, sem_dist_conv_dims, sem_dist_conv_dilations)
        self.sem_dist_predictor = nn.Conv2d(channels, 1 if class_agnostic else num_classes + 1, 1)
        init_trunk(self.instance_trunk, self.deconv, self.sem_dist_trunk)
        init_predictor(self.instance_classifier, self.sem_dist_predictor)

    @classmethod
    def from_config(cls, cfg, backbone) -> dict:
        m, sln = cfg.MODEL.ROI_MASK_HEAD, cfg.MODEL.SLN
        if m.POOLER_RESOLUTION * UPSAMPLE_FACTOR != sln.ROI_RESOLUTION:
            raise ConfigError(
                f"MODEL.SLN.ROI_RESOLUTION ({sln.ROI_RESOLUTION}) must be {UPSAMPLE_FACTOR} x "
                f"MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION ({m.POOLER_RESOLUTION})"
            )
        if sln.GLOBAL_FEATURE not in backbone.strides:
            raise ConfigError(f"MODEL.SLN.GLOBAL_FEATURE: unknown FPN level {sln.GLOBAL_FEATURE!r}, "
                              f"choose from {sorted(backbone.strides)}")
        return {
            "pooler": roi_pooler_from_config(cfg, backbone, m.POOLER_RESOLUTION, m.POOLER_SAMPLING_RATIO),
            "global_layering": GlobalLayeringModule(
                sln.GLOBAL_FEATURE, backbone.out_channels, sln.GLOBAL_CONV_DIMS, sln.NUM_LAYERS),
            "global_stride": backbone.strides[sln.GLOBAL_FEATURE],
            "in_channels": backbone.out_channels,
            "instance_conv_dims": sln.INSTANCE_CONV_DIMS,
            "instance_conv_dilations": sln.INSTANCE_CONV_DILATIONS,
            "roi_context": sln.INSTANCE_ROI_CONTEXT,
            "deconv_dim": sln.DECONV_DIM,
            "sem_dist_conv_dims": sln.SEM_DIST_CONV_DIMS,
            "sem_dist_conv_dilations": sln.SEM_DIST_CONV_DILATIONS,
            "image_cells": sln.IMAGE_CELLS,
            "num_classes": cfg.MODEL.NUM_CLASSES,
            "class_agnostic": sln.CLS_AGNOSTIC,
            "num_layers": sln.NUM_LAYERS,
            "dist_saturation": resolve_dist_saturation(sln.DIST_SATURATION, sln.ROI_RESOLUTION),
            "smooth_l1_beta": sln.SMOOTH_L1_BETA,
            "loss_weights": (sln.GLOBAL_LOSS_WEIGHT, sln.INSTANCE_LOSS_WEIGHT, sln.SEM_DIST_LOSS_WEIGHT),
            "overlap_cell_weight": sln.OVERLAP_CELL_WEIGHT,
            "foreign_cell_weight": sln.FOREIGN_CELL_WEIGHT,
            "roi_scale": sln.ROI_SCALE,
            "amodal_thresh": sln.AMODAL_THRESH,
            "visible_margin": sln.VISIBLE_MARGIN,
            "pooler_aligned": cfg.MODEL.ROI_HEADS.POOLER_ALIGNED,
        }

    def predict(self, features: dict[str, Tensor], boxes: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """Global logits (B, K+1, h, w), instance layering logits (R, K+1, M, M), S (R, C', M, M)."""
        global_logits = self.global_layering(features)
        pooled = channels_last(self.pooler(features, boxes))  # (R, C, P, P)
        # float32 whatever autocast does: box corners in half precision would be rounded by pixels
        rois = boxes_to_rois(boxes).float()
        layering_crops = self.crop(global_logits.float().softmax(dim=1), rois, pooled.shape[-2:],
                                   1.0 / self.global_stride)  # (R, K+1, P, P)
        # The trunks read concatenations of features, computed part by part (``conv_over_parts``):
        # the single-layer context is one value per RoI and channel, so it is never broadcast.
        parts = [pooled, channels_last(layering_crops.to(pooled.dtype))]
        if self.roi_context == SINGLE_LAYER_CONTEXT:
            parts.append(weighted_cell_mean(pooled, layering_crops[:, 1:2].to(pooled.dtype)))  # (R, C, 1, 1)
        x = conv_stack_over_parts(self.instance_trunk, parts)
        x = F.relu(self.deconv(x), inplace=True)  # (R, D, M, M)
        instance_logits = self.instance_classifier(x)
        layer_probabilities = instance_logits.softmax(dim=1)  # (R, K+1, M, M)
        cell_inputs = [layer_probabilities]
        if self.image_cells:
            image_crops = self.crop(features[INPUT_IMAGE].float(), rois, x.shape[-2:], 1.0)  # (R, 3, M, M)
            cell_inputs.append(image_cells(image_crops, layer_probabilities[:, 1:2].float()).to(x.dtype))
        # channels-last like x: the part-wise convolution then adds outputs of one memory order
        cells = channels_last(torch.cat(cell_inputs, dim=1))  # (R, K+1 (+ 7), M, M)
        sem_dist = self.sem_dist_predictor(conv_stack_over_parts(self.sem_dist_trunk, [x, cells]))
        return global_logits, instance_logits, sem_dist

    def crop(self, maps: Tensor, rois: Tensor, size: tuple[int, int], spatial_scale: float) -> Tensor:
        """RoIAlign of whole-batch ``maps`` (N, C, H, W) at ``rois`` (R, 5), sampled as the pooler does."""
        return roi_align(maps, rois, size, spatial_scale=spatial_scale, sampling_ratio=self.pooler.sampling_ratio,
                         aligned=self.pooler_aligned)

    def forward(
        self,
        features: dict[str, Tensor],
        rois: RoIBatch,
        image_sizes: list[tuple[int, int]],
        targets: list[dict] | None = None,
    ):
        rois = replace(rois, boxes=[scale_boxes(boxes, self.roi_scale) for boxes in rois.boxes])
        global_logits, instance_logits, sem_dist = self.predict(features, rois.boxes)
        sem_dist = select_class_maps(sem_dist, torch.cat(rois.labels))  # (R, M, M)
        if self.training:
            return self.losses(global_logits, instance_logits, sem_dist, rois, targets)
        return [{"sem_dist": s} for s in sem_dist.split([len(b) for b in rois.boxes])]

    def losses(
        self, global_logits: Tensor, instance_logits: Tensor, sem_dist: Tensor, rois: RoIBatch, targets: list[dict]
    ) -> dict[str, Tensor]:
        batch_hw = (global_logits.shape[-2] * self.global_stride, global_logits.shape[-1] * self.global_stride)
        # G of each image, computed once: the global module's target and where RoI cells overlap.
        global_maps = [global_layering_map(t["amodal_masks"].bool(), self.num_layers) for t in targets]
        global_targets = global_layering_targets(global_maps, batch_hw, self.global_stride)
        layer_targets, sem_dist_targets, cover = self.roi_targets(rois, targets, global_maps)
        weight_global, weight_instance, weight_sem_dist = self.loss_weights
        losses = {"loss_global_layering": weight_global * global_layering_loss(global_logits, global_targets)}
        if len(layer_targets) == 0:
            # No positive RoI: zeros that still depend on the parameters keep DDP's graph complete.
            zero = graph_keeping_zero(instance_logits, sem_dist)
            return {**losses, "loss_instance_layering": zero, "loss_sem_dist": zero}
        # A weighted mean over the cells: the same scale as the plain mean when nothing overlaps.
        own = layer_targets > 0
        cell_weights = torch.where(own & (cover >= 2), self.overlap_cell_weight, 1.0)  # (R, M, M)
        cell_weights = torch.where(~own & (cover >= 1), self.foreign_cell_weight, cell_weights)
        cell_weights = cell_weights / cell_weights.sum()
        instance_loss = F.cross_entropy(instance_logits, layer_targets, reduction="none")
        sem_dist_loss = F.smooth_l1_loss(sem_dist, sem_dist_targets, beta=self.smooth_l1_beta, reduction="none")
        losses["loss_instance_layering"] = weight_instance * (instance_loss * cell_weights).sum()
        losses["loss_sem_dist"] = weight_sem_dist * (sem_dist_loss * cell_weights).sum()
        return losses

    def roi_targets(
        self, rois: RoIBatch, targets: list[dict], global_maps: list[Tensor]
    ) -> tuple[Tensor, Tensor, Tensor]:
        """L (R, M, M) int64, S (R, M, M) float and G at the cells (R, M, M) int64 (from each
        image's G in ``global_maps``) for the positive RoIs of all images, in order."""
        layer_maps, sem_dists, covers = [], [], []
        for boxes, matched, target, global_map in zip(rois.boxes, rois.matched_gt, targets, global_maps):
            amodal, visible = target["amodal_masks"].bool(), target["visible_masks"].bool()
            in_front = resolve_depth_order(amodal, visible, target["depth_rank"], target["depth_constraints"])
            layer_map, sem_dist = roi_layering_targets(
                amodal, visible, in_front, boxes.detach(), matched, self.resolution, self.num_layers,
                self.dist_saturation,
            )
            layer_maps.append(layer_map)
            sem_dists.append(sem_dist)
            covers.append(roi_cover_levels(global_map, boxes.detach(), self.resolution))
        return torch.cat(layer_maps), torch.cat(sem_dists), torch.cat(covers)

    def finalize(self, detection: dict[str, Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        """Decode one image's S maps (boxes in original-image pixels) into the shared output fields."""
        decoded = decode_detections(
            detection["sem_dist"].float(), scale_boxes(detection["boxes"], self.roi_scale), detection["scores"],
            *image_size, self.num_layers, amodal_thresh=self.amodal_thresh, visible_margin=self.visible_margin,
        )
        return {
            **detection,
            "amodal_masks": decoded["amodal"],
            "visible_masks": decoded["visible"],
            "occlude_rate": decoded["occlude_rate"],
            "depth_rank": decoded["depth_rank"],
        }

    def debug_pictures(self, detection: dict[str, Tensor], target: dict | None, max_rois: int,
                       match_iou: float) -> dict[str, np.ndarray]:
        """The sem-dist maps of the best-scoring detections, each beside its target when ``target`` is given."""
        if target is None:
            best = detection["scores"].argsort(descending=True)[:max_rois]
            return {SEM_DIST_PICTURE: sem_dist_picture(detection["sem_dist"][best], None, self.num_layers)}
        predicted, expected = matched_sem_dist_maps(
            detection, target, self.num_layers, self.dist_saturation, max_rois, match_iou, self.roi_scale)
        if len(predicted) == 0:
            return {}
        return {SEM_DIST_PICTURE: sem_dist_picture(predicted, expected, self.num_layers)}
