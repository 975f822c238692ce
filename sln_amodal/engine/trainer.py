"""The training loop (SPEC section 7; ``amodal_train.py train``).

SGD with momentum and weight decay, linear warm-up then step decay, optional gradient clipping and
CUDA autocast; DistributedDataParallel when started by torchrun (one process per GPU, or gloo on
CPU). Process 0 alone writes the progress bar, TensorBoard events and checkpoints. A checkpoint
holds everything an exact resume needs: weights, optimizer, schedule, gradient scaler, every
process's random-number state and the position in the data stream, so ``--model last`` continues
as if the run had never stopped; solver values given for the resumed run (a lower BASE_LR after a
non-finite stop, new STEPS or GAMMA) take effect from there on, and config.yaml records them; a
changed SOLVER.SEED is refused, since the resume restores the saved random state. A checkpoint is written
only once the weights it holds have given a finite loss on the next batch (and are finite
themselves), so a run stopped by an exploding update never leaves that update's weights behind.
"""
from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Optional

import torch
import yaml
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from ..config import CfgNode, ConfigError
from ..config.checks import check_config
from ..data.catalog import resolve_split_from_config
from ..data.dataset import SKIPPED_IMAGES_FIELD, build_dataset
from ..data.loader import build_train_loader
from ..data.records import class_names_of
from ..fileio import atomic_write_text, prepare_output_folder, remove_stale_temporaries
from ..modeling.build import build_model
from ..modeling.weights import load_pretrained
from . import distributed
from .checkpoint import (
    LAST_CHECKPOINT_FILE,
    CheckpointError,
    capture_rng_state,
    find_last_checkpoint,
    read_checkpoint,
    restore_rng_state,
    save_checkpoint,
    seed_all_rng,
)
from .events import TrainingEvents
from .host_memory import keep_freed_host_memory
from .optimizer import build_optimizer, optimizer_hyperparameters
from .schedule import WarmupStepSchedule
from .visualize import draw_overlay, overlay_style

logger = logging.getLogger(__name__)

RESUME = "last"  # --model value that resumes the newest checkpoint of the run folder
FINAL_CHECKPOINT = "model_final.pth"
PERIODIC_CHECKPOINT = "model_{iteration:07d}.pth"
CONFIG_FILE = "config.yaml"  # the resolved config of the run, in the run folder
LOG_FILE = "log.txt"
AMP_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16}


class NonFiniteLossError(RuntimeError):
    """A loss or a weight became NaN or infinite; training stopped and wrote no checkpoint holding it."""


@dataclass
class TrainResult:
    iteration: int  # iterations completed
    checkpoint: Optional[str]  # the final checkpoint (process 0 only); None when there was nothing to train
    model: nn.Module  # the trained model (not wrapped in DDP)


def train(cfg: CfgNode, dataset: str, weights: str, logs_dir: str, checkpoints_dir: str = "checkpoints",
          trust: bool = False) -> TrainResult:
    """Train on the ``cfg.DATASETS.TRAIN_SPLIT`` split of the dataset folder ``dataset``.

    ``weights``: "last" resumes the newest checkpoint in ``logs_dir`` exactly (the schedule, data
    order and random state as saved, MAX_ITER and the periods from ``cfg``); "coco", "imagenet",
    "none" or a path are loaded by ``modeling.weights.load_pretrained`` (from a checkpoint of this
    project, its weights only). ``checkpoints_dir`` holds the pretrained files; ``trust`` allows
    full unpickling of checkpoints (``modeling.weights.read_torch_file``). Under torchrun every
    process calls this; ``cfg`` is not modified. Bad config values, a resume without a checkpoint
    and an unwritable ``logs_dir`` fail before anything is read or written.
    """
    cfg = cfg.clone()
    check_config(cfg, training=True)
    if weights.lower() == RESUME:
        last_checkpoint(logs_dir)
    elif distributed.is_main_process():
        prepare_output_folder(logs_dir, "--logs")
    with distributed.process_group(cfg.MODEL.DEVICE) as device:
        keep_freed_host_memory()
        file_log = _log_to_file(os.path.join(logs_dir, LOG_FILE)) if distributed.is_main_process() else None
        try:
            return Trainer(cfg, dataset, weights, logs_dir, checkpoints_dir, device, trust).run()
        finally:
            if file_log is not None:
                logging.getLogger().removeHandler(file_log)
                file_log.close()


class Trainer:
    """One process's training: built from the config, then ``run()``; see ``train``. ``device`` is
    this process's own (``cuda:LOCAL_RANK`` under torchrun), the current CUDA device when CUDA."""

    def __init__(self, cfg: CfgNode, dataset: str, weights: str, logs_dir: str, checkpoints_dir: str, device: str,
                 trust: bool = False):
        self.rank, self.world_size = distributed.get_rank(), distributed.get_world_size()
        self.is_main = self.rank == 0
        self.logs_dir = logs_dir
        self.device = torch.device(device)
        self.trust = trust
        solver, data = cfg.SOLVER, cfg.DATASETS
        resume_path = last_checkpoint(logs_dir) if weights.lower() == RESUME else None
        if self.is_main:
            remove_stale_temporaries(logs_dir)

        with distributed.main_process_first():  # a conversion cache is written once, by process 0
            annotations, image_root = resolve_split_from_config(cfg, dataset, data.TRAIN_SPLIT)
        self.categories = annotations.categories
        cfg.MODEL.NUM_CLASSES = len(self.categories)
        logger.info("MODEL.NUM_CLASSES = %d, from the categories of %s: %s", cfg.MODEL.NUM_CLASSES, dataset,
                    ", ".join(str(c.get("name", c["id"])) for c in self.categories))
        cfg.MODEL.WEIGHTS = resume_path or weights
        self.cfg = cfg

        seed_all_rng(solver.SEED + self.rank)
        self.model = build_model(cfg, self.categories)
        if solver.CHANNELS_LAST:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.learning_rate = scaled_learning_rate(solver, cfg.DATALOADER.IMS_PER_BATCH * self.world_size)
        self.optimizer = build_optimizer(self.model, solver, self.learning_rate)
        self.schedule = WarmupStepSchedule(solver.WARMUP_ITERS, solver.WARMUP_FACTOR, solver.STEPS, solver.GAMMA)
        self.scheduler = LambdaLR(self.optimizer, self.schedule)
        self.amp_dtype = autocast_dtype(solver, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)
        self.loader = build_train_loader(
            build_dataset(cfg, annotations, image_root, train=True), cfg.DATALOADER.IMS_PER_BATCH,
            cfg.DATALOADER.NUM_WORKERS, cfg.DATALOADER.SEED, self.rank, self.world_size,
            pin_memory=self.device.type == "cuda")
        self.network = DistributedDataParallel(
            self.model, device_ids=[self.device] if self.device.type == "cuda" else None,
        ) if self.world_size > 1 else self.model

        self.events = None
        self.picture_sample = None
        self.overlay_style = overlay_style(cfg)
        if self.is_main:
            os.makedirs(logs_dir, exist_ok=True)
            self.events = TrainingEvents(logs_dir, solver.LOG_PERIOD)
            if solver.VIS_PERIOD:
                self.picture_sample = build_dataset(cfg, annotations, image_root, train=False)[0]
        # Last, so that nothing above draws from the random state a resume restores.
        self.skipped_images: set[str] = set()  # unreadable images the dataset replaced by the next readable one
        if resume_path:
            self.start_iter = self.resume(resume_path)
        else:
            load_pretrained(self.model, weights, checkpoints_dir, trust)
            self.start_iter = 0
        if self.is_main:  # only once a resume has been accepted, so a refused one leaves the run's record as it was
            atomic_write_text(cfg.dump(), os.path.join(logs_dir, CONFIG_FILE))

    def resume(self, path: str) -> int:
        """Restore the whole training state saved in ``path``; returns the iteration to continue from."""
        checkpoint = read_checkpoint(path, self.trust)
        self.refuse_changed_solver_values(path, checkpoint["config"])
        if checkpoint["categories"] != self.categories:
            raise CheckpointError(f"{path}: categories differ from the training set's; resume on the dataset "
                                  f"the run was started on, or fine-tune with --model {path}")
        saved_world_size = len(checkpoint["rng"])
        if saved_world_size != self.world_size:
            raise CheckpointError(f"{path}: rng: saved by {saved_world_size} process(es), this run has "
                                  f"{self.world_size}; an exact resume needs the same number")
        try:
            self.loader.load_state_dict(checkpoint["loader"])
        except ValueError as err:
            raise CheckpointError(f"{path}: loader: {err}") from err
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.apply_solver_values()
        self.log_changed_solver_values(path, checkpoint["config"])
        if self.scaler.is_enabled() and "scaler" in checkpoint:
            self.scaler.load_state_dict(checkpoint["scaler"])
        restore_rng_state(checkpoint["rng"][self.rank], self.device)
        logger.info("resumed %s at iteration %d", path, checkpoint["iteration"])
        return int(checkpoint["iteration"])

    def apply_solver_values(self) -> None:
        """Put this run's solver values (learning rate, momentum, weight decay, schedule) in place of
        the ones a resumed optimizer and scheduler restored; the position in the schedule is kept.
        With unchanged values every number comes out as the uninterrupted run has it.

        The schedule is built anew from the config: ``LambdaLR.load_state_dict`` writes the saved
        schedule's values into the schedule object itself, so the one built in ``__init__`` now
        holds the checkpoint's STEPS, GAMMA and warm-up."""
        solver = self.cfg.SOLVER
        groups = self.optimizer.param_groups
        for group in groups:
            group.update(initial_lr=self.learning_rate, **optimizer_hyperparameters(solver))
        self.schedule = WarmupStepSchedule(solver.WARMUP_ITERS, solver.WARMUP_FACTOR, solver.STEPS, solver.GAMMA)
        self.scheduler.base_lrs = [self.learning_rate] * len(groups)
        self.scheduler.lr_lambdas = [self.schedule] * len(groups)
        factor = self.schedule(self.scheduler.last_epoch)
        for group in groups:
            group["lr"] = self.learning_rate * factor  # LambdaLR.step's own expression
        self.scheduler._last_lr = [group["lr"] for group in groups]

    def refuse_changed_solver_values(self, path: str, saved_config: str) -> None:
        """An exact resume restores the checkpoint's random state and optimizer state, so a new
        SOLVER.SEED could not take effect and another SOLVER.OPTIMIZER could not use the saved state;
        refused rather than recorded in config.yaml and ignored."""
        saved = _saved_solver_values(saved_config)
        reasons = {"SEED": "continues the checkpoint's random state", "OPTIMIZER": "continues the checkpoint's "
                   "optimizer state"}
        # a checkpoint from before SOLVER.OPTIMIZER existed ran SGD
        saved.setdefault("OPTIMIZER", "SGD")
        for key, reason in reasons.items():
            current = getattr(self.cfg.SOLVER, key)
            if key in saved and saved[key] != current:
                raise CheckpointError(
                    f"{path}: SOLVER.{key} {current} differs from the checkpoint's {saved[key]}; a "
                    f"resume {reason}, so it cannot change: resume with SOLVER.{key} {saved[key]}, or start a new "
                    f"run in another --logs folder")

    def log_changed_solver_values(self, path: str, saved_config: str) -> None:
        saved = _saved_solver_values(saved_config)
        changed = [f"SOLVER.{key} {value!r} (the checkpoint ran with {saved[key]!r})"
                   for key, value in self.cfg.SOLVER.to_dict().items()
                   if key in saved and _as_plain(saved[key]) != _as_plain(value)]
        if changed:
            logger.info("resuming %s with this run's solver values: %s", path, ", ".join(changed))

    def run(self) -> TrainResult:
        max_iter = self.cfg.SOLVER.MAX_ITER
        if self.start_iter >= max_iter:
            logger.info("the run in %s already has %d of SOLVER.MAX_ITER %d iterations: nothing to train",
                        self.logs_dir, self.start_iter, max_iter)
            return TrainResult(self.start_iter, None, self.model)
        logger.info("training iterations %d..%d on %d process(es), %d image(s) each, learning rate %g",
                    self.start_iter + 1, max_iter, self.world_size, self.cfg.DATALOADER.IMS_PER_BATCH,
                    self.optimizer.param_groups[0]["initial_lr"])
        progress = tqdm(total=max_iter, initial=self.start_iter, desc="train", unit="it", dynamic_ncols=True,
                        disable=not self.is_main)
        batches = iter(self.loader)
        pending = None  # a checkpoint waiting for the next loss to show its weights are sound
        try:
            with logging_redirect_tqdm():
                for iteration in range(self.start_iter + 1, max_iter + 1):
                    started = time.perf_counter()
                    images, targets = self.next_batch(batches)
                    data_time = time.perf_counter() - started
                    learning_rate = self.optimizer.param_groups[0]["lr"]
                    loss_dict, losses = self.compute_losses(iteration, images, targets, self.network, pending)
                    if pending is not None:
                        save_checkpoint(self.logs_dir, *pending)
                        pending = None
                    self.update(loss_dict)
                    scalars = {**losses, "total_loss": sum(losses.values()), "lr": learning_rate,
                               "data_time": data_time, "time_per_iter": time.perf_counter() - started}
                    progress.set_postfix_str(_short_summary(scalars), refresh=False)
                    progress.update()
                    if self.is_main:
                        self.events.add_scalars(iteration, scalars)
                        if self.cfg.SOLVER.VIS_PERIOD and iteration % self.cfg.SOLVER.VIS_PERIOD == 0:
                            self.write_pictures(iteration, images[0], targets[0])
                    if iteration % self.cfg.SOLVER.CHECKPOINT_PERIOD == 0 and iteration < max_iter:
                        pending = self.checkpoint_state(PERIODIC_CHECKPOINT.format(iteration=iteration), iteration)
                if self.is_main:
                    self.events.flush(max_iter)
                final = self.save_final_checkpoint(max_iter, batches)
        finally:
            batches.close()  # stops the loader's read-ahead thread before the process can exit
            progress.close()
            if self.events is not None:
                self.events.close()
            if self.skipped_images:
                logger.warning("%d unreadable image(s) were skipped during training, the next readable image taking "
                               "each one's place: %s", len(self.skipped_images), ", ".join(sorted(self.skipped_images)))
        if final:
            logger.info("wrote %s", final)
        return TrainResult(max_iter, final, self.model)

    def next_batch(self, batches) -> tuple[list[Tensor], list[dict]]:
        images, targets = next(batches)
        for target in targets:
            self.skipped_images.update(target.get(SKIPPED_IMAGES_FIELD, ()))
        return images, targets

    def compute_losses(self, iteration: int, images: list[Tensor], targets: list[dict], network: nn.Module,
                       pending: Optional[tuple[str, dict]]) -> tuple[dict[str, Tensor], dict[str, float]]:
        """The loss tensors and their values averaged over the processes; NonFiniteLossError when one is
        not finite (``pending``, the checkpoint these weights were to be saved as, is then not written)."""
        images = [image.to(self.device, non_blocking=True) for image in images]
        targets = [target_to_device(target, self.device) for target in targets]
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            loss_dict = network(images, targets)
        names = sorted(loss_dict)
        # One reduction for all losses; every process then sees the same values and stops together.
        averaged = distributed.mean_over_processes(torch.stack([loss_dict[n].detach().float() for n in names]))
        losses = dict(zip(names, averaged.tolist()))
        if not all(math.isfinite(value) for value in losses.values()):
            found = ", ".join(f"{name} = {value:.4g}" for name, value in losses.items())
            unsaved = (f"; the checkpoint due as {pending[0]} holds the weights that gave this loss and was not "
                       "written") if pending else ""
            last = find_last_checkpoint(self.logs_dir)
            raise NonFiniteLossError(
                f"iteration {iteration}: non-finite loss ({found}); training stopped without an update{unsaved}. "
                f"The last checkpoint, {last or 'none yet'}, is intact (a checkpoint is written only once its "
                f"weights have given a finite loss). Lower SOLVER.BASE_LR, raise SOLVER.WARMUP_ITERS or set "
                f"SOLVER.CLIP_GRAD_NORM, then resume with --model {RESUME} (the new values apply from there).")
        return loss_dict, losses

    def update(self, loss_dict: dict[str, Tensor]) -> None:
        """One optimizer step on the summed losses."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(sum(loss_dict.values())).backward()
        if self.cfg.SOLVER.CLIP_GRAD_NORM > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the loss-scaled ones
            nn.utils.clip_grad_norm_(self.trainable_parameters(), self.cfg.SOLVER.CLIP_GRAD_NORM)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()

    def save_final_checkpoint(self, iteration: int, batches) -> Optional[str]:
        """The final checkpoint, written once its weights have given a finite loss on one more batch
        (forward only; the saved random and data state is from before it, so a longer resumed run
        still continues exactly)."""
        pending = self.checkpoint_state(FINAL_CHECKPOINT, iteration)
        buffers = [(buffer, buffer.clone()) for buffer in self.model.buffers()]
        images, targets = self.next_batch(batches)
        with torch.no_grad():
            self.compute_losses(iteration + 1, images, targets, self.model, pending)
        for buffer, saved in buffers:  # a train-mode forward may move batch-norm statistics
            buffer.copy_(saved)
        return save_checkpoint(self.logs_dir, *pending) if pending else None

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for group in self.optimizer.param_groups for p in group["params"]]

    def checkpoint_state(self, name: str, iteration: int) -> Optional[tuple[str, dict]]:
        """(file name, state) of a checkpoint of the current state, copied to the CPU so later updates
        leave it as it is; None on processes other than 0. Every process must call this (their RNG
        states are gathered). NonFiniteLossError when a weight is not finite."""
        rng_states = distributed.gather_objects(capture_rng_state(self.device))
        broken = [name for name, value in self.model.state_dict().items()
                  if value.is_floating_point() and not torch.isfinite(value).all()]
        if broken:
            raise NonFiniteLossError(
                f"iteration {iteration}: non-finite weights "
                f"({', '.join(broken[:5])}{', ...' if len(broken) > 5 else ''}); "
                f"training stopped without writing {name}, so the last checkpoint, "
                f"{find_last_checkpoint(self.logs_dir) or 'none yet'}, is intact. Lower SOLVER.BASE_LR or set "
                f"SOLVER.CLIP_GRAD_NORM, then resume with --model {RESUME}.")
        if not self.is_main:
            return None
        state = {
            "model": self.model.state_dict(),
            "config": self.cfg.dump(),
            "categories": self.categories,
            "iteration": iteration,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": rng_states,  # one capture_rng_state() per process, in rank order
            "loader": self.loader.state_dict(),
        }
        if self.scaler.is_enabled():
            state["scaler"] = self.scaler.state_dict()
        return name, _detached_copy(state)

    def write_pictures(self, iteration: int, image: Tensor, target: dict) -> None:
        """The current input with its ground truth, and the prediction on the fixed picture sample."""
        class_names = class_names_of(self.categories)  # in label order, whatever the file's order
        ground_truth = {**target, "scores": torch.ones(len(target["boxes"]))}
        self.events.add_picture("input_ground_truth", draw_overlay(
            image.permute(1, 2, 0), ground_truth, 0.0, class_names, self.overlay_style), iteration)
        sample_image, sample_target = self.picture_sample
        self.model.eval()
        with torch.no_grad():
            detections = {k: v.cpu() for k, v in self.model([sample_image.to(self.device)])[0].items()}
        self.model.train()
        self.events.add_picture("prediction", draw_overlay(
            sample_image.permute(1, 2, 0), detections, self.cfg.VIS.SCORE_THRESH, class_names, self.overlay_style,
            duplicate_iou=self.cfg.VIS.DUPLICATE_IOU), iteration)
        pictures = self.model.debug_pictures(detections, sample_target, self.cfg.SOLVER.VIS_ROIS,
                                             self.cfg.SOLVER.VIS_MATCH_IOU)
        for name, picture in pictures.items():
            self.events.add_picture(name, picture, iteration)


def scaled_learning_rate(solver: CfgNode, total_batch: int) -> float:
    """BASE_LR scaled by total_batch / REFERENCE_BATCH_SIZE (linear scaling rule); as is when that is 0."""
    if solver.REFERENCE_BATCH_SIZE == 0:
        return solver.BASE_LR
    return solver.BASE_LR * total_batch / solver.REFERENCE_BATCH_SIZE


def autocast_dtype(solver: CfgNode, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype of SOLVER.AMP / AMP_DTYPE on ``device``; None for full precision."""
    if solver.AMP_DTYPE not in AMP_DTYPES:
        raise ConfigError(f"SOLVER.AMP_DTYPE: expected one of {', '.join(AMP_DTYPES)}, got {solver.AMP_DTYPE!r}")
    if not solver.AMP:
        return None
    if device.type != "cuda":
        logger.warning("SOLVER.AMP is ignored on %s: mixed precision is used on CUDA only", device)
        return None
    return AMP_DTYPES[solver.AMP_DTYPE]


def last_checkpoint(logs_dir: str) -> str:
    """The checkpoint ``--model last`` resumes; FileNotFoundError (creating nothing) when there is none."""
    path = find_last_checkpoint(logs_dir) if os.path.isdir(logs_dir) else None
    if path is None:
        why = ("no such folder" if not os.path.isdir(logs_dir)
               else f"its {LAST_CHECKPOINT_FILE} file is missing or names a missing file")
        raise FileNotFoundError(f"--model {RESUME}: no checkpoint to resume in {logs_dir} ({why})")
    return path


def _detached_copy(value):
    """``value`` with every tensor copied to the CPU (dicts, lists and tuples rebuilt around them)."""
    if isinstance(value, Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: _detached_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_detached_copy(item) for item in value)
    return copy.deepcopy(value)


def _saved_solver_values(saved_config: str) -> dict:
    """The SOLVER section of a checkpoint's config text; empty when it has none."""
    saved = yaml.safe_load(saved_config)
    saved = saved.get("SOLVER") if isinstance(saved, dict) else None
    return saved if isinstance(saved, dict) else {}


def _as_plain(value):
    """Config values as YAML reads them back (tuples as lists), for comparing saved and current ones."""
    return [_as_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def target_to_device(target: dict, device: torch.device) -> dict:
    """A target dict with its tensors on ``device`` (asynchronous copies from pinned memory)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, Tensor) else v for k, v in target.items()}


def _short_summary(scalars: dict[str, float]) -> str:
    """Progress-bar text: total loss, each loss without its "loss_" prefix, learning rate."""
    losses = " ".join(f"{k.removeprefix('loss_')} {v:.3f}" for k, v in scalars.items() if k.startswith("loss_"))
    return f"loss {scalars['total_loss']:.3f} ({losses}) lr {scalars['lr']:.2e}"


def _log_to_file(path: str) -> logging.Handler:
    """Copy the log records of the run into ``path`` (appending, so a resumed run continues it)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    return handler
