"""Build the model from the config (``cfg.MODEL``, ``cfg.INPUT``); each part has its own builder.

Mask branches are chosen by ``MODEL.ROI_MASK_HEAD.NAME`` from ``MASK_BRANCHES``; a new head
registers its builder ``(cfg, backbone) -> nn.Module`` with ``@register_mask_branch("Name")``.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import CfgNode, ConfigError
from .anchors import AnchorGenerator
from .backbone import FEATURE_NAMES, FPN, ROI_FEATURE_NAMES, ResNet
from .box_coder import BoxCoder
from .box_head import FastRCNNPredictor, TwoMLPHead
from .image_transform import ImageTransform
from ..layering import resolve_dist_saturation
from .global_layering import GlobalLayeringModule
from .mask_head import UPSAMPLE_FACTOR, MaskRCNNHead
from .mask_rcnn import MaskRCNN
from .matcher import Matcher
from .orcnn_head import ORCNNHead
from .poolers import MultiScaleRoIAlign
from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork, RPNHead
from .sampler import BalancedPositiveNegativeSampler
from .shape_prior import ShapePrior
from .sln_head import SLNHead
from .vrsp_head import VisibleReclassifier, VRSPHead

MASK_BRANCHES: dict[str, Callable[[CfgNode, FPN], nn.Module]] = {}


def register_mask_branch(name: str):
    """Decorator adding a mask-branch builder ``(cfg, backbone) -> nn.Module`` under ``name``."""

    def register(builder):
        if name in MASK_BRANCHES:
            raise ValueError(f"mask branch {name!r} is already registered")
        MASK_BRANCHES[name] = builder
        return builder

    return register


def build_backbone(cfg: CfgNode) -> FPN:
    b = cfg.MODEL.BACKBONE
    resnet = ResNet(b.DEPTH, b.NORM, b.NORM_EPS, b.GN_GROUPS, b.TRAINABLE_LAYERS)
    return FPN(resnet, cfg.MODEL.FPN.OUT_CHANNELS)


def build_roi_pooler(cfg: CfgNode, backbone: FPN, resolution: int, sampling_ratio: int) -> MultiScaleRoIAlign:
    """RoIAlign over P2..P5 at ``resolution``; shared by the box branch and every mask branch."""
    h = cfg.MODEL.ROI_HEADS
    return MultiScaleRoIAlign(
        ROI_FEATURE_NAMES,
        [backbone.strides[name] for name in ROI_FEATURE_NAMES],
        resolution,
        sampling_ratio,
        h.CANONICAL_BOX_SIZE,
        h.CANONICAL_LEVEL,
        h.POOLER_ALIGNED,
    )


def build_rpn(cfg: CfgNode, backbone: FPN) -> RegionProposalNetwork:
    r = cfg.MODEL.RPN
    anchors = AnchorGenerator(cfg.MODEL.ANCHOR_GENERATOR.SIZES, cfg.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS)
    return RegionProposalNetwork(
        FEATURE_NAMES,
        anchors,
        RPNHead(backbone.out_channels, anchors.num_anchors_per_location),
        BoxCoder(r.BBOX_REG_WEIGHTS),
        Matcher(r.FG_IOU_THRESHOLD, r.BG_IOU_THRESHOLD, allow_low_quality_matches=True),
        BalancedPositiveNegativeSampler(r.BATCH_SIZE_PER_IMAGE, r.POSITIVE_FRACTION),
        pre_nms_topk_train=r.PRE_NMS_TOPK_TRAIN,
        pre_nms_topk_test=r.PRE_NMS_TOPK_TEST,
        post_nms_topk_train=r.POST_NMS_TOPK_TRAIN,
        post_nms_topk_test=r.POST_NMS_TOPK_TEST,
        nms_thresh=r.NMS_THRESH,
        score_thresh=r.SCORE_THRESH,
        min_size=r.MIN_SIZE,
        smooth_l1_beta=r.SMOOTH_L1_BETA,
    )


def _mask_network_arguments(cfg: CfgNode, backbone: FPN) -> list:
    """The constructor arguments every Mask R-CNN-style mask branch starts with (Mask R-CNN, ORCNN,
    VRSP-Net): pooler, channels, mask network sizes, classes, class-agnosticism, binarising threshold."""
    m = cfg.MODEL.ROI_MASK_HEAD
    return [
        build_roi_pooler(cfg, backbone, m.POOLER_RESOLUTION, m.POOLER_SAMPLING_RATIO),
        backbone.out_channels,
        m.CONV_DIMS,
        m.DECONV_DIM,
        cfg.MODEL.NUM_CLASSES,
        m.CLS_AGNOSTIC_MASK,
        m.MASK_THRESH,
    ]


@register_mask_branch("MaskRCNNHead")
def build_mask_rcnn_head(cfg: CfgNode, backbone: FPN) -> MaskRCNNHead:
    return MaskRCNNHead(*_mask_network_arguments(cfg, backbone), cfg.MODEL.ROI_MASK_HEAD.TARGET_KEY)


@register_mask_branch("SLNHead")
def build_sln_head(cfg: CfgNode, backbone: FPN) -> SLNHead:
    m, sln = cfg.MODEL.ROI_MASK_HEAD, cfg.MODEL.SLN
    pooler = build_roi_pooler(cfg, backbone, m.POOLER_RESOLUTION, m.POOLER_SAMPLING_RATIO)
    if m.POOLER_RESOLUTION * UPSAMPLE_FACTOR != sln.ROI_RESOLUTION:
        raise ConfigError(
            f"MODEL.SLN.ROI_RESOLUTION ({sln.ROI_RESOLUTION}) must be {UPSAMPLE_FACTOR} x "
            f"MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION ({m.POOLER_RESOLUTION})"
        )
    if sln.GLOBAL_FEATURE not in backbone.strides:
        raise ConfigError(f"MODEL.SLN.GLOBAL_FEATURE: unknown FPN level {sln.GLOBAL_FEATURE!r}, "
                         f"choose from {sorted(backbone.strides)}")
    return SLNHead(
        pooler=pooler,
        global_layering=GlobalLayeringModule(
            sln.GLOBAL_FEATURE, backbone.out_channels, sln.GLOBAL_CONV_DIMS, sln.NUM_LAYERS),
        global_stride=backbone.strides[sln.GLOBAL_FEATURE],
        in_channels=backbone.out_channels,
        instance_conv_dims=sln.INSTANCE_CONV_DIMS,
        instance_conv_dilations=sln.INSTANCE_CONV_DILATIONS,
        roi_context=sln.INSTANCE_ROI_CONTEXT,
        deconv_dim=sln.DECONV_DIM,
        sem_dist_conv_dims=sln.SEM_DIST_CONV_DIMS,
        sem_dist_conv_dilations=sln.SEM_DIST_CONV_DILATIONS,
        num_classes=cfg.MODEL.NUM_CLASSES,
        class_agnostic=sln.CLS_AGNOSTIC,
        num_layers=sln.NUM_LAYERS,
        dist_saturation=resolve_dist_saturation(sln.DIST_SATURATION, sln.ROI_RESOLUTION),
        smooth_l1_beta=sln.SMOOTH_L1_BETA,
        loss_weights=(sln.GLOBAL_LOSS_WEIGHT, sln.INSTANCE_LOSS_WEIGHT, sln.SEM_DIST_LOSS_WEIGHT),
        overlap_cell_weight=sln.OVERLAP_CELL_WEIGHT,
        amodal_thresh=sln.AMODAL_THRESH,
        visible_margin=sln.VISIBLE_MARGIN,
        pooler_aligned=cfg.MODEL.ROI_HEADS.POOLER_ALIGNED,
    )


@register_mask_branch("ORCNNHead")
def build_orcnn_head(cfg: CfgNode, backbone: FPN) -> ORCNNHead:
    return ORCNNHead(*_mask_network_arguments(cfg, backbone))


def build_shape_prior(cfg: CfgNode) -> ShapePrior:
    """The VRSP-Net shape prior of ``cfg`` with the codebook of MODEL.VRSP.SHAPE_PRIOR.FILE, if named."""
    prior_cfg = cfg.MODEL.VRSP.SHAPE_PRIOR
    mask_size = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION * UPSAMPLE_FACTOR
    prior = ShapePrior(cfg.MODEL.NUM_CLASSES, mask_size, prior_cfg.CHANNELS, prior_cfg.NUM_CONVS,
                       prior_cfg.NUM_CLUSTERS)
    if prior_cfg.FILE:
        prior.load_file(prior_cfg.FILE)
    return prior


@register_mask_branch("VRSPHead")
def build_vrsp_head(cfg: CfgNode, backbone: FPN) -> VRSPHead:
    v = cfg.MODEL.VRSP
    prior_cfg = v.SHAPE_PRIOR
    if v.SHAPE_PRIOR_REFINEMENT and prior_cfg.TRAIN_JOINTLY:
        raise ConfigError("MODEL.VRSP.SHAPE_PRIOR.TRAIN_JOINTLY: shape-prior refinement needs its codebook before "
                         "training, so the auto-encoder cannot train jointly; turn one of them off")
    if v.SHAPE_PRIOR_REFINEMENT and not prior_cfg.FILE:
        raise ConfigError("MODEL.VRSP.SHAPE_PRIOR.FILE: shape-prior refinement needs a codebook file "
                         "(scripts/build_shape_codebook.py writes one)")
    if v.SHAPE_PRIOR_REFINEMENT and v.SHAPE_PRIOR_K > prior_cfg.NUM_CLUSTERS:
        raise ConfigError(f"MODEL.VRSP.SHAPE_PRIOR_K ({v.SHAPE_PRIOR_K}) exceeds the codebook's "
                         f"MODEL.VRSP.SHAPE_PRIOR.NUM_CLUSTERS ({prior_cfg.NUM_CLUSTERS})")
    uses_prior = v.SHAPE_PRIOR_REFINEMENT or v.SHAPE_PRIOR_RETRIEVAL or prior_cfg.TRAIN_JOINTLY
    shape_prior = build_shape_prior(cfg) if uses_prior else None
    if shape_prior is not None:
        shape_prior.autoencoder.requires_grad_(prior_cfg.TRAIN_JOINTLY)  # otherwise fixed by its file
    m = cfg.MODEL.ROI_MASK_HEAD
    reclassifier = VisibleReclassifier(
        backbone.out_channels * m.POOLER_RESOLUTION**2, v.RECLASSIFICATION_FC_DIM, cfg.MODEL.NUM_CLASSES
    ) if v.RECLASSIFICATION else None
    return VRSPHead(
        *_mask_network_arguments(cfg, backbone),
        cross_task_refinement=v.CROSS_TASK_REFINEMENT,
        gt_attention_weights=(v.GT_AMODAL_WEIGHT, v.GT_VISIBLE_WEIGHT),
        feature_matching_weights=tuple(v.FEATURE_MATCHING_WEIGHTS) if v.FEATURE_MATCHING else None,
        reclassifier=reclassifier,
        reclassification_weight=v.RECLASSIFICATION_WEIGHT,
        reclassification_gt_weight=v.RECLASSIFICATION_GT_WEIGHT,
        reclassification_floor=v.RECLASSIFICATION_FLOOR,
        shape_prior=shape_prior,
        shape_prior_k=v.SHAPE_PRIOR_K if v.SHAPE_PRIOR_REFINEMENT else 0,
        shape_prior_retrieval=v.SHAPE_PRIOR_RETRIEVAL,
        shape_prior_alpha=v.SHAPE_PRIOR_ALPHA,
        reconstruction_weight=prior_cfg.RECONSTRUCTION_WEIGHT if prior_cfg.TRAIN_JOINTLY else 0.0,
    )


def build_roi_heads(cfg: CfgNode, backbone: FPN) -> RoIHeads:
    h, box = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
    name = cfg.MODEL.ROI_MASK_HEAD.NAME
    if name not in MASK_BRANCHES:
        raise ConfigError(
            f"MODEL.ROI_MASK_HEAD.NAME: unknown mask branch {name!r}, registered: {sorted(MASK_BRANCHES)}")
    return RoIHeads(
        build_roi_pooler(cfg, backbone, box.POOLER_RESOLUTION, box.POOLER_SAMPLING_RATIO),
        TwoMLPHead(backbone.out_channels * box.POOLER_RESOLUTION**2, box.FC_DIM),
        FastRCNNPredictor(box.FC_DIM, cfg.MODEL.NUM_CLASSES, box.CLS_AGNOSTIC_BBOX_REG),
        BoxCoder(box.BBOX_REG_WEIGHTS),
        Matcher(h.FG_IOU_THRESHOLD, h.BG_IOU_THRESHOLD, allow_low_quality_matches=False),
        BalancedPositiveNegativeSampler(h.BATCH_SIZE_PER_IMAGE, h.POSITIVE_FRACTION),
        smooth_l1_beta=box.SMOOTH_L1_BETA,
        score_thresh=h.SCORE_THRESH_TEST,
        nms_thresh=h.NMS_THRESH_TEST,
        detections_per_image=h.DETECTIONS_PER_IMAGE,
        min_box_size=h.MIN_BOX_SIZE_TEST,
        mask_branch=MASK_BRANCHES[name](cfg, backbone),
    )


def build_image_transform(cfg: CfgNode) -> ImageTransform:
    return ImageTransform(
        cfg.MODEL.PIXEL_MEAN,
        cfg.MODEL.PIXEL_STD,
        cfg.INPUT.MIN_SIZE_TEST,
        cfg.INPUT.MAX_SIZE_TEST,
        cfg.MODEL.SIZE_DIVISIBILITY,
    )


def build_model(cfg: CfgNode, categories: list[dict] | None = None) -> MaskRCNN:
    """The Mask R-CNN of ``cfg`` with fresh weights, on ``cfg.MODEL.DEVICE`` (see ``weights.py`` to load any).
    ``categories``, the dataset's, if given must be those any shape-prior file of the config was built for."""
    backbone = build_backbone(cfg)
    model = MaskRCNN(build_image_transform(cfg), backbone, build_rpn(cfg, backbone), build_roi_heads(cfg, backbone))
    if categories is not None:
        for module in model.modules():
            if isinstance(module, ShapePrior):
                module.check_categories(categories)
    return model.to(cfg.MODEL.DEVICE)
