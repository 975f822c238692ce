"""What several test files share: small configs (the Mask R-CNN at test scale, its ResNet-18 variant,
the tiny SLN of the training tests and its synthetic scenes), scenes with objects, box masks and
running a script of the repository (the torchvision reference with our weights is
``modeling.torchvision_reference.same_weights_pair``)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import torch
import torch.nn.functional as F

from sln_amodal.config import get_default_config, load_config
from sln_amodal.data.synthetic import SceneParams

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT_TIMEOUT_S = 300

NUM_CLASSES = 4
IMAGE_SIZES = ((240, 320), (300, 256))


def small_config():
    """Defaults at test scale: 256..320 px inputs, fewer proposals and detections."""
    cfg = get_default_config()
    cfg.MODEL.NUM_CLASSES = NUM_CLASSES
    cfg.INPUT.MIN_SIZE_TEST = 256
    cfg.INPUT.MAX_SIZE_TEST = 320
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 300
    cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 25
    return cfg


def scene(height: int, width: int, seed: int):
    """A smooth random background with three overlapping boxes drawn front to back; returns the
    image (3, H, W) in [0, 1] and its target (amodal = whole box, visible = the unhidden part)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 16 + 1, width // 16 + 1, generator=g)
    image = F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]
    corners = torch.rand(3, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6])
    sizes = (torch.rand(3, 2, generator=g) * 0.3 + 0.2) * torch.tensor([width, height])
    boxes = torch.cat([corners, corners + sizes], dim=1).floor()
    amodal = torch.zeros(3, height, width, dtype=torch.uint8)
    covered = torch.zeros(height, width, dtype=torch.bool)
    visible = torch.zeros_like(amodal)
    # Draw back to front so the last object ends up in front.
    for index, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
        amodal[index, y0:y1, x0:x1] = 1
        image[:, y0:y1, x0:x1] = torch.rand(3, 1, 1, generator=g)
    for index in reversed(range(3)):
        visible[index] = amodal[index].bool() & ~covered
        covered |= amodal[index].bool()
    target = {
        "boxes": boxes,
        "labels": torch.randint(1, NUM_CLASSES + 1, (3,), generator=g),
        "amodal_masks": amodal,
        "visible_masks": visible,
    }
    return image, target


def scenes():
    images, targets = zip(*(scene(h, w, seed) for seed, (h, w) in enumerate(IMAGE_SIZES)))
    return list(images), list(targets)


def mask_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-row IoU of (N, ...) masks binarised at 0.5 (1 where both are empty)."""
    a, b = (a >= 0.5).flatten(1), (b >= 0.5).flatten(1)
    union = (a | b).sum(1)
    return torch.where(union > 0, (a & b).sum(1) / union.clamp(min=1), torch.ones_like(union, dtype=torch.float32))


def resnet18_config(**model_keys):
    """ResNet-18 with narrow FPN and heads: every option, a fraction of the compute."""
    cfg = small_config()
    cfg.MODEL.BACKBONE.DEPTH = 18
    cfg.MODEL.FPN.OUT_CHANNELS = 64
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 256
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIMS = (64, 64, 64, 64)
    cfg.MODEL.ROI_MASK_HEAD.DECONV_DIM = 64
    cfg.MODEL.RPN.POST_NMS_TOPK_TRAIN = 300
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 64
    for key, value in model_keys.items():
        section, name = key.split("__")
        cfg.MODEL[section][name] = value
    return cfg


# The training tests' tiny SLN and its scenes.
SCENE = SceneParams(height=96, width=128, min_objects=2, max_objects=4, occlusion=0.5, min_object_size=0.15,
                    max_object_size=0.3, min_visible_area=16)
BASE_LR = 0.01
WARMUP_ITERS = 2
WARMUP_FACTOR = 0.001
# A tiny SLN: small input, narrow heads, few proposals; BASE_LR used as is; every iteration logged.
TINY = [
    "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "none", "MODEL.ROI_MASK_HEAD.NAME", "SLNHead",
    "MODEL.BACKBONE.DEPTH", "18", "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "64",
    "INPUT.MIN_SIZE_TRAIN", "[96]", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "96",
    "INPUT.MAX_SIZE_TEST", "128",
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "32", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "100",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "50",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "100", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32", "MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE", "10",
    "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
    "MODEL.SLN.GLOBAL_CONV_DIMS", "[16]", "MODEL.SLN.INSTANCE_CONV_DIMS", "[32]", "MODEL.SLN.DECONV_DIM", "32",
    "MODEL.SLN.SEM_DIST_CONV_DIMS", "[16]",
    "DATALOADER.NUM_WORKERS", "0", "DATALOADER.IMS_PER_BATCH", "2",
    "SOLVER.BASE_LR", str(BASE_LR), "SOLVER.REFERENCE_BATCH_SIZE", "0", "SOLVER.WARMUP_ITERS", str(WARMUP_ITERS),
    "SOLVER.WARMUP_FACTOR", str(WARMUP_FACTOR), "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.LOG_PERIOD", "1",
    "SOLVER.VIS_PERIOD", "2", "SOLVER.VIS_MATCH_IOU", "0.1", "VIS.SCORE_THRESH", "0.0",
]


def tiny_config(*overrides):
    return load_config(None, TINY + list(overrides))


def box_mask(y0: int, x0: int, y1: int, x1: int, height: int, width: int) -> np.ndarray:
    """(height, width) bool, True on rows y0:y1 and columns x0:x1."""
    mask = np.zeros((height, width), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def run_script(*args, timeout: float = SCRIPT_TIMEOUT_S) -> subprocess.CompletedProcess:
    """Run a Python script of the repository (path relative to it, then its arguments) in the repository."""
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)
