"""Mask branches: one file per branch, each registering itself (``base.py`` holds the contract and
the registry, ``roi_masks.py`` the toolbox several branches share).

Importing this package registers Mask R-CNN (``MaskRCNNHead``), ORCNN (``ORCNNHead``), VRSP-Net
(``VRSPHead``) and the SLN (``SLNHead``); a new branch defined anywhere registers itself the same way.
"""
from . import mask_rcnn, orcnn, sln, vrsp  # noqa: F401  (registration)
from .base import (
    BOX_FIELDS,
    INPUT_IMAGE,
    MASK_BRANCHES,
    OUTPUT_FIELDS,
    MaskBranch,
    RoIBatch,
    build_mask_branch,
    register_mask_branch,
)

__all__ = [
    "BOX_FIELDS",
    "INPUT_IMAGE",
    "MASK_BRANCHES",
    "OUTPUT_FIELDS",
    "MaskBranch",
    "RoIBatch",
    "build_mask_branch",
    "register_mask_branch",
]
