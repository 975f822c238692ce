"""Pretrained weights: torchvision checkpoints -> this model's layout, and ``load_pretrained``.

Three layouts are recognised by their keys: this project's (``backbone.bottom_up.*``), torchvision's
``maskrcnn_resnet50_fpn`` (``backbone.body.*``, old and new key versions) and torchvision's ImageNet
ResNet classifiers (``conv1.*``, ``layer1.*``; the classifier ``fc`` is dropped).

Batch-norm epsilon: torchvision's COCO_V1 Mask R-CNN weights run with eps 0 (torchvision calls
``overwrite_eps(model, 0.0)`` after loading them), while this model's norm layers use
``MODEL.BACKBONE.NORM_EPS``. The converter folds the difference into ``running_var``, so
var + eps, the only place eps enters, is unchanged and the model's own checkpoints need no extra
state.
"""
from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchvision.models import get_weight

from ..torch_files import CheckpointError, read_torch_file
from .norm import FrozenBatchNorm2d

logger = logging.getLogger(__name__)

COCO_CHECKPOINT = "mask_rcnn_coco.pth"
IMAGENET_CHECKPOINT = "resnet{depth}_imagenet.pth"
TORCHVISION_COCO_WEIGHTS = "MaskRCNN_ResNet50_FPN_Weights.COCO_V1"
TORCHVISION_IMAGENET_WEIGHTS = "ResNet{depth}_Weights.IMAGENET1K_V1"
# Epsilon the torchvision weights expect: 0 for the COCO Mask R-CNN (see the module docstring);
# nn.BatchNorm2d's and FrozenBatchNorm2d's default for the ImageNet ResNets and torchvision models
# built in code.
TORCHVISION_COCO_BN_EPS = 0.0
TORCHVISION_BN_EPS = 1e-5
# nn.BatchNorm2d's step counter: state, not a weight; never converted, never reported.
BN_STEP_COUNTER = "num_batches_tracked"
_STAGE_OF_LAYER = {"layer1": "res2", "layer2": "res3", "layer3": "res4", "layer4": "res5"}
_BN_BUFFERS = r"(weight|bias|running_mean|running_var)"
# torchvision key -> this model's key; the first pattern that matches the whole key applies.
# "(?:\.0)?" and friends accept both torchvision key versions (before and after its module renames).
_TORCHVISION_KEY_PATTERNS = [
    (r"backbone\.body\.conv1\.weight", lambda m: "backbone.bottom_up.stem.conv.weight"),
    (rf"backbone\.body\.bn1\.{_BN_BUFFERS}", lambda m: f"backbone.bottom_up.stem.norm.{m[1]}"),
    (
        r"backbone\.body\.(layer\d)\.(\d+)\.conv(\d)\.weight",
        lambda m: f"backbone.bottom_up.{_STAGE_OF_LAYER[m[1]]}.{m[2]}.conv{m[3]}.weight",
    ),
    (
        rf"backbone\.body\.(layer\d)\.(\d+)\.bn(\d)\.{_BN_BUFFERS}",
        lambda m: f"backbone.bottom_up.{_STAGE_OF_LAYER[m[1]]}.{m[2]}.norm{m[3]}.{m[4]}",
    ),
    (
        r"backbone\.body\.(layer\d)\.(\d+)\.downsample\.0\.weight",
        lambda m: f"backbone.bottom_up.{_STAGE_OF_LAYER[m[1]]}.{m[2]}.shortcut.conv.weight",
    ),
    (
        rf"backbone\.body\.(layer\d)\.(\d+)\.downsample\.1\.{_BN_BUFFERS}",
        lambda m: f"backbone.bottom_up.{_STAGE_OF_LAYER[m[1]]}.{m[2]}.shortcut.norm.{m[3]}",
    ),
    (r"backbone\.fpn\.inner_blocks\.(\d)(?:\.0)?\.(weight|bias)", lambda m: f"backbone.lateral_convs.{m[1]}.{m[2]}"),
    (r"backbone\.fpn\.layer_blocks\.(\d)(?:\.0)?\.(weight|bias)", lambda m: f"backbone.output_convs.{m[1]}.{m[2]}"),
    (r"rpn\.head\.conv(?:\.0\.0)?\.(weight|bias)", lambda m: f"rpn.head.conv.{m[1]}"),
    (r"rpn\.head\.cls_logits\.(weight|bias)", lambda m: f"rpn.head.objectness_logits.{m[1]}"),
    (r"rpn\.head\.bbox_pred\.(weight|bias)", lambda m: f"rpn.head.anchor_deltas.{m[1]}"),
    (r"roi_heads\.box_head\.fc6\.(weight|bias)", lambda m: f"roi_heads.box_head.fc1.{m[1]}"),
    (r"roi_heads\.box_head\.fc7\.(weight|bias)", lambda m: f"roi_heads.box_head.fc2.{m[1]}"),
    (
        r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)",
        lambda m: f"roi_heads.box_predictor.{m[1]}.{m[2]}",
    ),
    (r"roi_heads\.mask_head\.(\d)\.0\.(weight|bias)", lambda m: f"roi_heads.mask_branch.mask_fcn.convs.{m[1]}.{m[2]}"),
    (
        r"roi_heads\.mask_head\.mask_fcn(\d)\.(weight|bias)",
        lambda m: f"roi_heads.mask_branch.mask_fcn.convs.{int(m[1]) - 1}.{m[2]}",
    ),
    (
        r"roi_heads\.mask_predictor\.conv5_mask\.(weight|bias)",
        lambda m: f"roi_heads.mask_branch.mask_fcn.deconv.{m[1]}",
    ),
    (
        r"roi_heads\.mask_predictor\.mask_fcn_logits\.(weight|bias)",
        lambda m: f"roi_heads.mask_branch.mask_fcn.predictor.{m[1]}",
    ),
]
_TORCHVISION_KEY_RULES = [(re.compile(pattern), rename) for pattern, rename in _TORCHVISION_KEY_PATTERNS]


class PretrainedWeightsMissing(FileNotFoundError):
    """A weights file that is neither on disk nor downloadable; the message says what to fetch."""


@dataclass
class LoadReport:
    """What ``load_pretrained`` did: the file and the keys loaded or left as initialised."""

    path: str | None
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # model keys the checkpoint lacks
    mismatched: list[str] = field(default_factory=list)  # keys whose shapes differ (e.g. class count)
    unexpected: list[str] = field(default_factory=list)  # checkpoint keys the model lacks


def convert_torchvision_maskrcnn(
    state_dict: dict[str, Tensor], source_bn_eps: float, target_bn_eps: float
) -> dict[str, Tensor]:
    """torchvision Mask R-CNN state dict -> this model's keys (unknown keys raise ``KeyError``).

    ``num_batches_tracked`` counters are dropped; ``running_var`` absorbs ``source_bn_eps -
    target_bn_eps`` so the normalisation is unchanged under this model's epsilon.
    """
    converted = {}
    for key, value in state_dict.items():
        if key.endswith(BN_STEP_COUNTER):
            continue
        new_key = _rename_torchvision_key(key)
        if key.endswith("running_var"):
            value = value + (source_bn_eps - target_bn_eps)
        converted[new_key] = value
    return converted


def convert_torchvision_resnet(
    state_dict: dict[str, Tensor], source_bn_eps: float, target_bn_eps: float
) -> dict[str, Tensor]:
    """torchvision ImageNet ResNet state dict -> this model's backbone keys (classifier dropped)."""
    body = {f"backbone.body.{k}": v for k, v in state_dict.items() if not k.startswith("fc.")}
    return convert_torchvision_maskrcnn(body, source_bn_eps, target_bn_eps)


def _rename_torchvision_key(key: str) -> str:
    for pattern, rename in _TORCHVISION_KEY_RULES:
        match = pattern.fullmatch(key)
        if match:
            return rename(match)
    raise KeyError(f"torchvision checkpoint key {key!r} has no counterpart in this model")


def detect_layout(state_dict: dict[str, Tensor]) -> str:
    """Which layout a state dict has ("project", "torchvision_maskrcnn", "torchvision_resnet"),
    told by its backbone keys."""
    if any(k.startswith("backbone.bottom_up.") for k in state_dict):
        return "project"
    if any(k.startswith("backbone.body.") for k in state_dict):
        return "torchvision_maskrcnn"
    if "conv1.weight" in state_dict and any(k.startswith("layer1.") for k in state_dict):
        return "torchvision_resnet"
    raise ValueError("unrecognised checkpoint layout: no backbone.bottom_up.*, backbone.body.* or conv1/layer1 keys")


def load_pretrained(
    model: nn.Module, spec: str, checkpoints_dir: str = "checkpoints", trust: bool = False
) -> LoadReport:
    """Load ``spec`` into ``model``: "coco", "imagenet", "none" or a checkpoint path.

    "coco" reads ``checkpoints_dir/mask_rcnn_coco.pth`` (torchvision's or this project's layout),
    "imagenet" ``checkpoints_dir/resnet{depth}_imagenet.pth``; a missing file is downloaded from
    torchvision's URL into that place, and when that fails ``PretrainedWeightsMissing`` says which
    file to fetch and where to put it. A path may hold a bare state dict or a training checkpoint
    with the weights under "model". Tensors whose shape differs from the model's (another class
    count, a new head) stay as initialised; they and the keys the checkpoint lacks are logged.
    ``trust``: see ``read_torch_file``. A file that holds no usable weights raises CheckpointError.
    """
    if spec.lower() == "none":
        return LoadReport(path=None)
    target_eps = _norm_eps(model)
    if spec.lower() == "coco":
        path = os.path.join(checkpoints_dir, COCO_CHECKPOINT)
        _ensure_file(path, TORCHVISION_COCO_WEIGHTS)
        source_eps = TORCHVISION_COCO_BN_EPS
    elif spec.lower() == "imagenet":
        depth = model.backbone.bottom_up.depth
        path = os.path.join(checkpoints_dir, IMAGENET_CHECKPOINT.format(depth=depth))
        _ensure_file(path, TORCHVISION_IMAGENET_WEIGHTS.format(depth=depth))
        source_eps = TORCHVISION_BN_EPS
    else:
        path = spec
        if not os.path.isfile(path):
            raise PretrainedWeightsMissing(f"--model / MODEL.WEIGHTS: checkpoint {path!r} does not exist")
        source_eps = TORCHVISION_BN_EPS

    state_dict = _read_state_dict(path, trust)
    try:
        layout = detect_layout(state_dict)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from err
    if layout == "torchvision_maskrcnn":
        state_dict = convert_torchvision_maskrcnn(state_dict, source_eps, target_eps)
    elif layout == "torchvision_resnet":
        state_dict = convert_torchvision_resnet(state_dict, source_eps, target_eps)
    return _load_matching(model, state_dict, path)


def _norm_eps(model: nn.Module) -> float:
    """Epsilon of the model's batch-norm layers (they share one); the default when it has none."""
    for module in model.modules():
        if isinstance(module, (FrozenBatchNorm2d, nn.BatchNorm2d)):
            return module.eps
    return TORCHVISION_BN_EPS


def _download(url: str, path: str) -> None:
    torch.hub.load_state_dict_from_url(url, model_dir=os.path.dirname(path) or ".", file_name=os.path.basename(path))


def _ensure_file(path: str, torchvision_weights: str) -> None:
    if os.path.isfile(path):
        return
    url = get_weight(torchvision_weights).url
    try:
        _download(url, path)
    except (OSError, RuntimeError) as error:
        raise PretrainedWeightsMissing(
            f"{path} is missing and downloading it failed ({error}). Download {url} "
            f"and save it as {os.path.abspath(path)}"
        ) from error


def _read_state_dict(path: str, trust: bool) -> dict[str, Tensor]:
    checkpoint = read_torch_file(path, trust)
    if isinstance(checkpoint, dict) and isinstance(checkpoint.get("model"), dict):
        checkpoint = checkpoint["model"]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor) or a checkpoint with one under 'model'")
    return checkpoint


def _load_matching(model: nn.Module, state_dict: dict[str, Tensor], path: str) -> LoadReport:
    own = model.state_dict()
    report = LoadReport(path=path)
    loadable = {}
    for key, value in state_dict.items():
        if key not in own:
            if not key.endswith(BN_STEP_COUNTER):
                report.unexpected.append(key)
        elif own[key].shape != value.shape:
            report.mismatched.append(f"{key} (checkpoint {tuple(value.shape)}, model {tuple(own[key].shape)})")
        else:
            loadable[key] = value
    model.load_state_dict(loadable, strict=False)
    report.loaded = sorted(loadable)
    report.missing = sorted(k for k in own if k not in state_dict and not k.endswith(BN_STEP_COUNTER))
    logger.info("loaded %d tensors from %s", len(report.loaded), path)
    if report.mismatched:
        logger.warning("left freshly initialised (shape differs): %s", ", ".join(report.mismatched))
    if report.missing:
        logger.warning("left freshly initialised (not in %s): %s", path, ", ".join(report.missing))
    if report.unexpected:
        logger.warning("ignored (not in the model): %s", ", ".join(report.unexpected))
    return report
