"""Hand-written Mask R-CNN (ResNet-FPN, RPN, RoI heads with a pluggable mask branch)."""
from .build import build_model
from .mask_branches import OUTPUT_FIELDS, MaskBranch, RoIBatch, register_mask_branch
from .mask_rcnn import MaskRCNN
from .weights import LoadReport, PretrainedWeightsMissing, load_pretrained

__all__ = [
    "LoadReport",
    "MaskBranch",
    "MaskRCNN",
    "OUTPUT_FIELDS",
    "PretrainedWeightsMissing",
    "RoIBatch",
    "build_model",
    "load_pretrained",
    "register_mask_branch",
]
