"""The mask-branch contract and registry: what every mask branch (Mask R-CNN, ORCNN, VRSP-Net, SLN,
or a new one) does, and how the model builder finds it by ``MODEL.ROI_MASK_HEAD.NAME``.

A branch subclasses ``MaskBranch``, maps the config to its keyword-only constructor arguments in
``from_config`` and registers itself with ``@register_mask_branch("Name")``; nothing else in the
package names it. It works in two phases:

1. ``forward(features, rois, image_sizes, targets=None)``, inside the RoI heads.
   features     dict[str, Tensor]: the FPN levels by name ("p2".."p6"), (N, C, H_l, W_l), and
                under ``INPUT_IMAGE`` the normalised, padded network-input batch (N, 3, H, W),
                stride 1, for a branch that looks at pixels.
   rois         RoIBatch: per image, the boxes the branch works on (network-input pixels, xyxy)
                and their classes. Training: the positive sampled proposals, ``labels`` = the
                class of their matched GT object, ``matched_gt`` = that object's index in
                ``targets[i]`` (so any per-object target field can be gathered). Eval: the final
                detections, ``labels`` = predicted class, ``scores`` = detection score.
   image_sizes  list[(h, w)]: each image's size inside the padded batch.
   targets      training only: the per-image target dicts of the data contract.
   returns      training: dict of scalar losses, names starting with "loss_". Eval: one dict
                per image whose tensors have one row per detection, merged into that image's
                detections; it may replace ``scores`` (VRSP-Net rescores), never ``boxes`` or
                ``labels``. The fields named in ``pasted_fields`` are (R_i, K, M, M) maps on the
                RoI grid, which the image transform pastes into the original image as
                (R_i, K, H, W); every other field passes through unchanged.
2. ``finalize(detection, image_size) -> detection``, once the boxes and pasted maps are in
   original-image pixels: the image's detection dict with every field of ``OUTPUT_FIELDS``, so
   evaluation, results files and pictures serve all branches alike.

Optional: ``check_categories`` refuses a dataset that the branch's dataset-bound state (a
shape-prior codebook) was not built for; ``debug_pictures`` draws what the branch predicts on the
RoI grid, named in ``debug_picture_names``, for TensorBoard and ``amodal_test.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from torch import Tensor, nn

from ...config import ConfigError

# The fields of every finalized detection (SPEC section 4): boxes (D, 4) xyxy in original-image
# pixels, labels (D,) 1..C, scores (D,), amodal_masks and visible_masks (D, H, W) bool,
# occlude_rate (D,) float and depth_rank (D,) int64, 1 = front-most.
OUTPUT_FIELDS = ("boxes", "labels", "scores", "amodal_masks", "visible_masks", "occlude_rate", "depth_rank")
# The key of the network-input batch among the features a mask branch reads (stride 1).
INPUT_IMAGE = "image"
# What the box branch decides and a mask branch must leave as it is.
BOX_FIELDS = ("boxes", "labels")


@dataclass
class RoIBatch:
    """The RoIs handed to a mask branch; every field is a list with one tensor per image."""

    boxes: list[Tensor]  # (R_i, 4) xyxy in network-input pixels
    labels: list[Tensor]  # (R_i,) int64 class 1..C
    matched_gt: Optional[list[Tensor]] = None  # training: (R_i,) int64 index into targets[i]'s objects
    scores: Optional[list[Tensor]] = None  # eval: (R_i,) detection scores


class MaskBranch(nn.Module):
    """The base of every mask branch; see the module docstring for the contract."""

    pasted_fields: tuple[str, ...] = ()
    debug_picture_names: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg, backbone) -> dict[str, Any]:
        """The keyword arguments of ``__init__`` for ``cfg`` and the FPN ``backbone``."""
        raise NotImplementedError

    def finalize(self, detection: dict[str, Tensor], image_size: tuple[int, int]) -> dict[str, Tensor]:
        raise NotImplementedError

    def check_categories(self, categories: list[dict]) -> None:
        """Raise if dataset-bound state does not fit the dataset's ``categories``; nothing to check by default."""

    def debug_pictures(self, detection: dict[str, Tensor], target: dict | None, max_rois: int,
                       match_iou: float) -> dict[str, np.ndarray]:
        """Pictures (H, W, 3) uint8 by name (``debug_picture_names``) of one image's finalized
        ``detection``: up to ``max_rois`` detections; with ``target`` (the image's ground truth in the
        same pixels) only those matching a GT box at IoU >= ``match_iou``, beside their targets."""
        return {}


MASK_BRANCHES: dict[str, type[MaskBranch]] = {}


def register_mask_branch(name: str):
    """Class decorator: the ``MaskBranch`` subclass is built for ``MODEL.ROI_MASK_HEAD.NAME == name``."""

    def register(branch: type[MaskBranch]) -> type[MaskBranch]:
        if name in MASK_BRANCHES:
            raise ValueError(f"mask branch {name!r} is already registered")
        if not (isinstance(branch, type) and issubclass(branch, MaskBranch)):
            raise TypeError(f"mask branch {name!r} must be a MaskBranch subclass, got {branch!r}")
        MASK_BRANCHES[name] = branch
        return branch

    return register


def build_mask_branch(cfg, backbone) -> MaskBranch:
    """The registered branch of ``MODEL.ROI_MASK_HEAD.NAME``, built from its own ``from_config``."""
    name = cfg.MODEL.ROI_MASK_HEAD.NAME
    if name not in MASK_BRANCHES:
        raise ConfigError(
            f"MODEL.ROI_MASK_HEAD.NAME: unknown mask branch {name!r}, registered: {sorted(MASK_BRANCHES)}")
    branch = MASK_BRANCHES[name]
    return branch(**branch.from_config(cfg, backbone))
