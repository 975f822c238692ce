"""Hand-written Mask R-CNN (ResNet-FPN, RPN, RoI heads with a pluggable mask branch)."""
from .build import build_model, register_mask_branch
from .mask_rcnn import MaskRCNN
from .roi_heads import RoIBatch
from .weights import LoadReport, PretrainedWeightsMissing, load_pretrained

__all__ = [
    "LoadReport",
    "MaskRCNN",
    "PretrainedWeightsMissing",
    "RoIBatch",
    "build_model",
    "load_pretrained",
    "register_mask_branch",
]
