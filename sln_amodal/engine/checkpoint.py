"""Atomic checkpoints, the random-number state needed for an exact resume, and rebuilding a
trained model from its checkpoint.

A training checkpoint is a dict holding "model" (state dict), "config" (the full config as YAML),
"categories" (the training dataset's COCO categories; label i is the i-th by id), "iteration",
and for resuming "optimizer", "scheduler", "scaler", "rng" and "loader".
"""
from __future__ import annotations

import logging
import os
import random
from typing import Any, Optional, Sequence

import numpy as np
import torch
import yaml

from ..config import CfgNode, get_default_config
from ..config.checks import check_config
from ..fileio import atomic_write, atomic_write_text
from ..modeling.build import build_model
from ..torch_files import CheckpointError, read_torch_file

logger = logging.getLogger(__name__)

LAST_CHECKPOINT_FILE = "last_checkpoint"  # holds the file name of the newest checkpoint in a run folder
# What rebuilding the trained model needs from a checkpoint.
MODEL_CHECKPOINT_FIELDS = ("model", "config", "categories")


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` through ``fileio.atomic_write``: the old file or the new one, never a partial one."""
    atomic_write(path, lambda f: torch.save(obj, f), binary=True)


def save_checkpoint(folder: str, name: str, state: dict) -> str:
    """Save ``state`` as ``folder/name`` and point ``last_checkpoint`` at it."""
    path = os.path.join(folder, name)
    atomic_torch_save(state, path)
    atomic_write_text(name, os.path.join(folder, LAST_CHECKPOINT_FILE))
    return path


def find_last_checkpoint(folder: str) -> Optional[str]:
    marker = os.path.join(folder, LAST_CHECKPOINT_FILE)
    if not os.path.isfile(marker):
        return None
    with open(marker, "r", encoding="utf-8") as f:
        path = os.path.join(folder, f.read().strip())
    return path if os.path.isfile(path) else None


def seed_all_rng(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (every CUDA device's too)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def capture_rng_state(device: torch.device) -> dict:
    """The global generators' states as tensors and plain Python values (no numpy objects, so a
    checkpoint holding them loads with ``torch.load(weights_only=True)``); on a CUDA ``device``,
    that device's generator too (only it: a resume may see another number of GPUs)."""
    algorithm, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (algorithm, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict, device: torch.device) -> None:
    """The states of ``capture_rng_state``; checkpoints from before it saved one device hold every
    visible GPU's state in a list, of which ``device``'s is taken."""
    random.setstate(state["python"])
    algorithm, keys, position, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((algorithm, keys.numpy().astype(np.uint32), position, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and device.type == "cuda":
        saved = state["cuda"]
        index = device.index if device.index is not None else torch.cuda.current_device()
        if isinstance(saved, (list, tuple)):
            saved = saved[index] if index < len(saved) else None
        if saved is not None:
            torch.cuda.set_rng_state(saved, device)


def read_checkpoint(path: str, trust: bool = False) -> dict:
    """Load a checkpoint dict onto the CPU (``modeling.weights.read_torch_file``: weights only unless ``trust``)."""
    checkpoint = read_torch_file(path, trust)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, got {type(checkpoint).__name__}")
    return checkpoint


def load_trained_model(
    path: str,
    overrides: Optional[Sequence[str]] = None,
    device: Optional[str] = None,
    config_file: Optional[str] = None,
    trust: bool = False,
) -> tuple[torch.nn.Module, CfgNode, list[dict]]:
    """Rebuild the model a training checkpoint was saved from, with its weights, in eval mode.

    The config is the checkpoint's, then ``config_file`` (YAML) and ``overrides`` (KEY VALUE) on
    top, then ``device`` as MODEL.DEVICE; with no device given, a CUDA config falls back to the CPU
    when CUDA is unavailable. ``trust``: see ``read_checkpoint``. Returns (model, config, the
    training dataset's categories).
    """
    checkpoint = read_checkpoint(path, trust)
    missing = [name for name in MODEL_CHECKPOINT_FIELDS if name not in checkpoint]
    if missing:
        raise CheckpointError(
            f"{path}: not an SLN-Amodal training checkpoint: no {', '.join(repr(m) for m in missing)} entry "
            f"(it has {', '.join(repr(k) for k in checkpoint) or 'nothing'}); a bare state dict is used with "
            "MODEL.WEIGHTS / --model PATH for training instead")
    cfg = get_default_config()
    try:
        cfg.merge_from_dict(yaml.safe_load(checkpoint["config"]) or {}, source=f"{path} (saved config)")
    except (yaml.YAMLError, AttributeError, TypeError) as err:
        raise CheckpointError(f"{path}: config: not a YAML config mapping ({err})") from err
    if config_file:
        cfg.merge_from_file(config_file)
    if overrides:
        cfg.merge_from_list(overrides)
    if device:
        cfg.MODEL.DEVICE = device
    elif cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("%s was configured for %s, which is unavailable here; using the CPU", path, cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    check_config(cfg, training=False)
    categories = checkpoint["categories"]
    if not isinstance(categories, list) or len(categories) != cfg.MODEL.NUM_CLASSES:
        raise CheckpointError(f"{path}: categories: expected a list of MODEL.NUM_CLASSES = {cfg.MODEL.NUM_CLASSES} "
                              f"COCO categories, got {categories!r:.200}")
    model = build_model(cfg, categories)
    try:
        model.load_state_dict(checkpoint["model"])
    except (RuntimeError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{path}: model: the weights do not fit the model its config builds ({err})") from err
    model.eval()
    return model, cfg, categories
