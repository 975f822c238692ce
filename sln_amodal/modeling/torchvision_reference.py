"""torchvision's Mask R-CNN built with the hyper-parameters of a config: the reference this
implementation is tested and benchmarked against (same weights through ``weights.py``).
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.mask_rcnn import MaskRCNN as TorchvisionMaskRCNN
from torchvision.models.detection.rpn import AnchorGenerator
from torchvision.ops import FrozenBatchNorm2d, MultiScaleRoIAlign

from ..config import CfgNode, get_default_config
from .backbone import ROI_FEATURE_NAMES
from .build import build_model
from .weights import convert_torchvision_maskrcnn

# torchvision names its pooled FPN outputs "0".."3" (P2..P5).
_TORCHVISION_ROI_FEATURES = [str(level) for level in range(len(ROI_FEATURE_NAMES))]
# Settings torchvision's MaskRCNN hard-codes; the config must hold the default (torchvision's) value.
_FIXED_IN_TORCHVISION = (
    "BACKBONE.STAGE_WIDTHS",
    "FPN.OUT_CHANNELS",
    "RPN.MIN_SIZE",
    "RPN.BBOX_REG_WEIGHTS",
    "RPN.SMOOTH_L1_BETA",
    "ROI_HEADS.MIN_BOX_SIZE_TEST",
    "ROI_HEADS.CANONICAL_BOX_SIZE",
    "ROI_HEADS.CANONICAL_LEVEL",
    "ROI_HEADS.POOLER_ALIGNED",
    "ROI_BOX_HEAD.FC_DIM",
    "ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG",
    "ROI_BOX_HEAD.SMOOTH_L1_BETA",
    "ROI_MASK_HEAD.NAME",
    "ROI_MASK_HEAD.CONV_DIMS",
    "ROI_MASK_HEAD.DECONV_DIM",
    "ROI_MASK_HEAD.CLS_AGNOSTIC_MASK",
)


def torchvision_reference(cfg: CfgNode) -> nn.Module:
    """torchvision ``MaskRCNN`` equal in architecture and settings to ``build_model(cfg)``.

    Its training path skips resizing, as this project's model does (the data pipeline resizes).
    Raises ``ValueError`` for settings torchvision has no counterpart for.
    """
    m = cfg.MODEL
    defaults = get_default_config().MODEL
    for path in _FIXED_IN_TORCHVISION:
        section, key = path.split(".")
        fixed, value = defaults[section][key], m[section][key]
        if value != fixed:
            raise ValueError(f"torchvision's MaskRCNN fixes MODEL.{path} to {fixed!r}, got {value!r}")
    if m.BACKBONE.NORM == "GN":
        raise ValueError("torchvision's MaskRCNN has no GroupNorm backbone")

    def norm_layer(channels: int) -> nn.Module:
        if m.BACKBONE.NORM == "FrozenBN":
            return FrozenBatchNorm2d(channels, eps=m.BACKBONE.NORM_EPS)
        return nn.BatchNorm2d(channels, eps=m.BACKBONE.NORM_EPS)

    body = getattr(resnet, f"resnet{m.BACKBONE.DEPTH}")(weights=None, norm_layer=norm_layer)
    backbone = _resnet_fpn_extractor(body, m.BACKBONE.TRAINABLE_LAYERS)
    sizes = tuple(tuple(level) for level in m.ANCHOR_GENERATOR.SIZES)
    ratios = tuple(tuple(level) for level in m.ANCHOR_GENERATOR.ASPECT_RATIOS)
    if len(ratios) == 1:
        ratios = ratios * len(sizes)

    def pooler(resolution: int, sampling_ratio: int) -> MultiScaleRoIAlign:
        return MultiScaleRoIAlign(_TORCHVISION_ROI_FEATURES, resolution, sampling_ratio)

    model = TorchvisionMaskRCNN(
        backbone,
        num_classes=m.NUM_CLASSES + 1,
        min_size=cfg.INPUT.MIN_SIZE_TEST,
        max_size=cfg.INPUT.MAX_SIZE_TEST,
        image_mean=list(m.PIXEL_MEAN),
        image_std=list(m.PIXEL_STD),
        rpn_anchor_generator=AnchorGenerator(sizes, ratios),
        rpn_pre_nms_top_n_train=m.RPN.PRE_NMS_TOPK_TRAIN,
        rpn_pre_nms_top_n_test=m.RPN.PRE_NMS_TOPK_TEST,
        rpn_post_nms_top_n_train=m.RPN.POST_NMS_TOPK_TRAIN,
        rpn_post_nms_top_n_test=m.RPN.POST_NMS_TOPK_TEST,
        rpn_nms_thresh=m.RPN.NMS_THRESH,
        rpn_fg_iou_thresh=m.RPN.FG_IOU_THRESHOLD,
        rpn_bg_iou_thresh=m.RPN.BG_IOU_THRESHOLD,
        rpn_batch_size_per_image=m.RPN.BATCH_SIZE_PER_IMAGE,
        rpn_positive_fraction=m.RPN.POSITIVE_FRACTION,
        rpn_score_thresh=m.RPN.SCORE_THRESH,
        box_roi_pool=pooler(m.ROI_BOX_HEAD.POOLER_RESOLUTION, m.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO),
        box_score_thresh=m.ROI_HEADS.SCORE_THRESH_TEST,
        box_nms_thresh=m.ROI_HEADS.NMS_THRESH_TEST,
        box_detections_per_img=m.ROI_HEADS.DETECTIONS_PER_IMAGE,
        box_fg_iou_thresh=m.ROI_HEADS.FG_IOU_THRESHOLD,
        box_bg_iou_thresh=m.ROI_HEADS.BG_IOU_THRESHOLD,
        box_batch_size_per_image=m.ROI_HEADS.BATCH_SIZE_PER_IMAGE,
        box_positive_fraction=m.ROI_HEADS.POSITIVE_FRACTION,
        bbox_reg_weights=tuple(m.ROI_BOX_HEAD.BBOX_REG_WEIGHTS),
        mask_roi_pool=pooler(m.ROI_MASK_HEAD.POOLER_RESOLUTION, m.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO),
        size_divisible=m.SIZE_DIVISIBILITY,
        _skip_resize=True,
    )
    return model


def randomize_frozen_bn(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial statistics and affine parameters for every frozen batch-norm layer."""
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if type(module).__name__ == "FrozenBatchNorm2d":
            n = module.weight.numel()
            module.weight.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            module.bias.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            module.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(n, generator=g) + 0.5)


def same_weights_pair(cfg: CfgNode, seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """(torchvision reference, ours) with identical random weights (non-trivial frozen batch-norm
    statistics included), on the CPU: the equivalence tests and the GPU check compare them."""
    torch.manual_seed(seed)
    reference = torchvision_reference(cfg)
    randomize_frozen_bn(reference, seed)
    ours = build_model(cfg)
    eps = cfg.MODEL.BACKBONE.NORM_EPS
    ours.load_state_dict(convert_torchvision_maskrcnn(reference.state_dict(), eps, eps), strict=True)
    return reference, ours
