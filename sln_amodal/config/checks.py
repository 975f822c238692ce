"""Value checks that the default's type alone cannot express (``check_config``).

``CfgNode`` checks that every key exists and has the default's type; a wrong *value* of the right
type (a ResNet depth that does not exist, a negative learning rate, an empty batch, a device this
machine lacks) would otherwise surface as a traceback deep in the model or the loader. Each check
raises ``ConfigError`` naming the key, the value and what is allowed.
"""
from __future__ import annotations

import math

import torch

from ..engine.optimizer import OPTIMIZERS
from ..modeling.backbone.resnet import RESNET_SPECS, STAGE_NAMES
from ..numbers import is_number
from .config import CfgNode, ConfigError

DEVICE_TYPES = ("cpu", "cuda")  # what the model, the loaders and DDP here run on


def check_config(cfg: CfgNode, training: bool) -> None:
    """Check the model, input and loader values, and with ``training`` the solver's too."""
    if cfg.MODEL.BACKBONE.DEPTH not in RESNET_SPECS:
        _fail("MODEL.BACKBONE.DEPTH", cfg.MODEL.BACKBONE.DEPTH, f"one of {', '.join(map(str, sorted(RESNET_SPECS)))}")
    _check_stage_widths(cfg.MODEL.BACKBONE)
    _at_least(cfg, "MODEL.SLN.NUM_LAYERS", 1)
    _at_least(cfg, "DATALOADER.IMS_PER_BATCH", 1)
    _at_least(cfg, "DATALOADER.NUM_WORKERS", 0)
    check_device(cfg.MODEL.DEVICE)
    if not (math.isfinite(cfg.VIS.MAX_WORKING_MEGAPIXELS) and cfg.VIS.MAX_WORKING_MEGAPIXELS > 0):
        _fail("VIS.MAX_WORKING_MEGAPIXELS", cfg.VIS.MAX_WORKING_MEGAPIXELS, "a positive number")
    if not training:
        return
    if not (math.isfinite(cfg.SOLVER.BASE_LR) and cfg.SOLVER.BASE_LR > 0):
        _fail("SOLVER.BASE_LR", cfg.SOLVER.BASE_LR, "a positive number")
    for key in ("SOLVER.MOMENTUM", "SOLVER.WEIGHT_DECAY", "SOLVER.CLIP_GRAD_NORM", "SOLVER.WARMUP_ITERS",
                "SOLVER.VIS_PERIOD", "SOLVER.REFERENCE_BATCH_SIZE"):
        _at_least(cfg, key, 0)
    if cfg.SOLVER.OPTIMIZER not in OPTIMIZERS:
        _fail("SOLVER.OPTIMIZER", cfg.SOLVER.OPTIMIZER, f"one of {list(OPTIMIZERS)}")
    betas = cfg.SOLVER.ADAM_BETAS
    if len(betas) != 2 or not all(is_number(beta) and 0 <= beta < 1 for beta in betas):
        _fail("SOLVER.ADAM_BETAS", list(cfg.SOLVER.ADAM_BETAS), "two numbers in [0, 1)")
    if not cfg.SOLVER.GAMMA > 0:
        _fail("SOLVER.GAMMA", cfg.SOLVER.GAMMA, "a positive number")
    if not 0 < cfg.SOLVER.WARMUP_FACTOR <= 1:
        _fail("SOLVER.WARMUP_FACTOR", cfg.SOLVER.WARMUP_FACTOR, "a number in (0, 1]")
    for key in ("SOLVER.MAX_ITER", "SOLVER.CHECKPOINT_PERIOD", "SOLVER.LOG_PERIOD"):
        _at_least(cfg, key, 1)


def check_device(device: str) -> None:
    """``device`` names a CPU or an available CUDA device."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        parsed = None
    if parsed is None or parsed.type not in DEVICE_TYPES:
        _fail("MODEL.DEVICE", device, "cpu, cuda or cuda:N")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            _fail("MODEL.DEVICE", device, "cpu: this machine has no usable CUDA GPU")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            _fail("MODEL.DEVICE", device, f"a GPU index below {torch.cuda.device_count()}")


def _check_stage_widths(backbone: CfgNode) -> None:
    widths = list(backbone.STAGE_WIDTHS)
    if len(widths) != len(STAGE_NAMES) or not all(isinstance(w, int) and w >= 1 for w in widths):
        _fail("MODEL.BACKBONE.STAGE_WIDTHS", widths, f"{len(STAGE_NAMES)} positive integers (res2..res5)")
    # GroupNorm splits each layer's channels into GN_GROUPS equal groups.
    if backbone.NORM == "GN" and any(w % backbone.GN_GROUPS for w in widths):
        _fail("MODEL.BACKBONE.STAGE_WIDTHS", widths, f"multiples of MODEL.BACKBONE.GN_GROUPS ({backbone.GN_GROUPS})")


def _at_least(cfg: CfgNode, key: str, minimum: int) -> None:
    section, value = cfg, None
    for part in key.split("."):
        section = value = section[part]
    if not value >= minimum:
        _fail(key, value, f"at least {minimum}")


def _fail(key: str, value, allowed: str) -> None:
    raise ConfigError(f"{key} {value!r} is not allowed: expected {allowed}")
