"""Build the model from the config (``cfg.MODEL``, ``cfg.INPUT``); each part has its own builder.

Mask branches are chosen by ``MODEL.ROI_MASK_HEAD.NAME`` from ``MASK_BRANCHES``; a new head
registers its builder ``(cfg, backbone) -> nn.Module`` with ``@register_mask_branch("Name")``.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from ..config import CfgNode
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
from .poolers import MultiScaleRoIAlign
from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork, RPNHead
from .sampler import BalancedPositiveNegativeSampler
from .sln_head import SLNHead

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


@register_mask_branch("MaskRCNNHead")
def build_mask_rcnn_head(cfg: CfgNode, backbone: FPN) -> MaskRCNNHead:
    m = cfg.MODEL.ROI_MASK_HEAD
    return MaskRCNNHead(
        build_roi_pooler(cfg, backbone, m.POOLER_RESOLUTION, m.POOLER_SAMPLING_RATIO),
        backbone.out_channels,
        m.CONV_DIMS,
        m.DECONV_DIM,
        cfg.MODEL.NUM_CLASSES,
        m.CLS_AGNOSTIC_MASK,
        m.MASK_THRESH,
        m.TARGET_KEY,
    )


@register_mask_branch("SLNHead")
def build_sln_head(cfg: CfgNode, backbone: FPN) -> SLNHead:
    m, sln = cfg.MODEL.ROI_MASK_HEAD, cfg.MODEL.SLN
    pooler = build_roi_pooler(cfg, backbone, m.POOLER_RESOLUTION, m.POOLER_SAMPLING_RATIO)
    if m.POOLER_RESOLUTION * UPSAMPLE_FACTOR != sln.ROI_RESOLUTION:
        raise ValueError(
            f"MODEL.SLN.ROI_RESOLUTION ({sln.ROI_RESOLUTION}) must be {UPSAMPLE_FACTOR} x "
            f"MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION ({m.POOLER_RESOLUTION})"
        )
    if sln.GLOBAL_FEATURE not in backbone.strides:
        raise ValueError(f"MODEL.SLN.GLOBAL_FEATURE: unknown FPN level {sln.GLOBAL_FEATURE!r}, "
                         f"choose from {sorted(backbone.strides)}")
    return SLNHead(
        pooler,
        GlobalLayeringModule(sln.GLOBAL_FEATURE, backbone.out_channels, sln.GLOBAL_CONV_DIMS, sln.NUM_LAYERS),
        backbone.strides[sln.GLOBAL_FEATURE],
        backbone.out_channels,
        sln.INSTANCE_CONV_DIMS,
        sln.DECONV_DIM,
        sln.SEM_DIST_CONV_DIMS,
        cfg.MODEL.NUM_CLASSES,
        sln.CLS_AGNOSTIC,
        sln.NUM_LAYERS,
        resolve_dist_saturation(sln.DIST_SATURATION, sln.ROI_RESOLUTION),
        sln.SMOOTH_L1_BETA,
        (sln.GLOBAL_LOSS_WEIGHT, sln.INSTANCE_LOSS_WEIGHT, sln.SEM_DIST_LOSS_WEIGHT),
        sln.AMODAL_THRESH,
        sln.VISIBLE_MARGIN,
        cfg.MODEL.ROI_HEADS.POOLER_ALIGNED,
    )


def build_roi_heads(cfg: CfgNode, backbone: FPN) -> RoIHeads:
    h, box = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
    name = cfg.MODEL.ROI_MASK_HEAD.NAME
    if name not in MASK_BRANCHES:
        raise ValueError(f"MODEL.ROI_MASK_HEAD.NAME: unknown mask branch {name!r}, registered: {sorted(MASK_BRANCHES)}")
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


def build_model(cfg: CfgNode) -> MaskRCNN:
    """The Mask R-CNN of ``cfg`` with fresh weights, on ``cfg.MODEL.DEVICE`` (see ``weights.py`` to load any)."""
    backbone = build_backbone(cfg)
    model = MaskRCNN(build_image_transform(cfg), backbone, build_rpn(cfg, backbone), build_roi_heads(cfg, backbone))
    return model.to(cfg.MODEL.DEVICE)
