"""Build the model from the config (``cfg.MODEL``, ``cfg.INPUT``); each part has its own builder.

The mask branch is the one registered under ``MODEL.ROI_MASK_HEAD.NAME`` (``mask_branches/``), built
from its own ``from_config``; nothing here names a particular branch.
"""
from __future__ import annotations

from ..config import CfgNode
from .anchors import AnchorGenerator
from .backbone import FEATURE_NAMES, FPN, ResNet
from .box_coder import BoxCoder
from .box_head import FastRCNNPredictor, TwoMLPHead
from .image_transform import ImageTransform
from .mask_branches import build_mask_branch
from .mask_rcnn import MaskRCNN
from .matcher import Matcher
from .poolers import roi_pooler_from_config
from .roi_heads import RoIHeads
from .rpn import RegionProposalNetwork, RPNHead
from .sampler import BalancedPositiveNegativeSampler


def build_backbone(cfg: CfgNode) -> FPN:
    b = cfg.MODEL.BACKBONE
    resnet = ResNet(
        b.DEPTH, b.NORM, b.NORM_EPS, b.GN_GROUPS, b.TRAINABLE_LAYERS, stage_widths=tuple(b.STAGE_WIDTHS)
    )
    return FPN(resnet, cfg.MODEL.FPN.OUT_CHANNELS)


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


def build_roi_heads(cfg: CfgNode, backbone: FPN) -> RoIHeads:
    h, box = cfg.MODEL.ROI_HEADS, cfg.MODEL.ROI_BOX_HEAD
    return RoIHeads(
        roi_pooler_from_config(cfg, backbone, box.POOLER_RESOLUTION, box.POOLER_SAMPLING_RATIO),
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
        mask_branch=build_mask_branch(cfg, backbone),
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
        model.check_categories(categories)
    return model.to(cfg.MODEL.DEVICE)
