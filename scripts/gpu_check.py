"""The GPU check: everything a lent GPU should confirm, in one run that ends with one JSON line.

Sections (each is timed and reported on its own; one that fails records its error and the rest
still run):

1. ``equivalence``: our Mask R-CNN against torchvision's with the same random weights, on the
   device, in float32 and under autocast to bfloat16 and float16: per dtype, how many of
   torchvision's top detections ours reproduces (box IoU >= 0.9), with the same label, their mean
   box and mask IoU, and the relative difference of every training loss;
2. ``bench_maskrcnn``: ``scripts/bench_maskrcnn.py`` on the device without and with ``--amp``
   (times and memory, ratios ours / torchvision);
3. ``train_step``: ResNet-50-FPN training steps at 800 x 1333, batch 4, AMP (float16 with a
   GradScaler), for the SLN and for the Mask R-CNN (amodal) head: median s/iter and peak memory.
   detectron2's R50-FPN Mask R-CNN trains at 0.261 s/iter with 16 images on 8 V100s (2 per GPU);
4. ``inference``: images/s of the SLN at batch 1 and batch 8, in float32 and under AMP;
5. ``quickstart``: the quickstart recipe (its config and data) trained for 4x its iterations on the
   device, then evaluated: its amodal AP, visible AP and depth-order accuracy.

    bash scripts/gpu_check.sh [--dry-run] [--out DIR] [--budget-s S] [--sections NAME ...]

The whole check has a time budget (470 s on the GPU, within the 8 minutes a lent device gives one
command): the subprocess sections get what is left of it, the quickstart last. With ``--out`` the
report so far is rewritten to ``OUT/gpu_check.json`` after each section, so a killed run still
leaves what it measured. Without a CUDA GPU it says so and exits 0. ``--dry-run`` runs every
section on the CPU at tiny sizes and budgets (autocast to bfloat16 where the GPU run uses float16),
so that the script is exercised by the test suite and cannot rot. The exit status is 1 when a
section failed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torchvision.ops import box_iou

from sln_amodal.config import load_config
from sln_amodal.data.dataset import build_dataset
from sln_amodal.data.loader import collate_images_targets
from sln_amodal.data.readers.amodal_coco import read_amodal_coco
from sln_amodal.data.synthetic import SHAPES, SceneParams, write_synthetic_dataset
from sln_amodal.engine.optimizer import build_optimizer
from sln_amodal.engine.trainer import target_to_device
from sln_amodal.fileio import atomic_write_text
from sln_amodal.modeling import build_model
from sln_amodal.modeling.torchvision_reference import same_weights_pair

from bench_maskrcnn import synchronize  # scripts/, this script's folder, is on sys.path

SCRIPTS = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(SCRIPTS)
QUICKSTART_CONFIG = os.path.join(REPO_ROOT, "sln_amodal", "config", "yaml", "quickstart.yaml")
AUTOCAST_DTYPES = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}
SAME_BOX_IOU = 0.9  # a torchvision detection counts as reproduced by ours at this box IoU
TOP_DETECTIONS = 20  # torchvision's highest-scoring detections per image that are compared
TRAIN_HEADS = ("SLNHead", "MaskRCNNHead")
DETECTRON2_R50_FPN_S_PER_ITER = 0.261  # 16 images on 8 V100s (detectron2 model zoo, R50-FPN 1x)
STEP_LEARNING_RATE = 1e-3  # of the timed training steps (random weights: any small rate)
QUICKSTART_GPU_WORKERS = 4  # loader processes that keep a GPU fed at 128 px
MIB = 2**20


@dataclass(frozen=True)
class Plan:
    """Sizes and budgets of one kind of run."""

    device: str
    equivalence_size: tuple[int, int]  # (H, W) of the compared images
    equivalence_overrides: tuple[str, ...]  # config KEY VALUE pairs of the compared models
    equivalence_dtypes: tuple[str, ...]  # keys of AUTOCAST_DTYPES
    bench_arguments: tuple[str, ...]  # passed on to bench_maskrcnn.py
    train_size: tuple[int, int]  # (H, W) of the training-step images
    train_batch: int
    backbone_depth: int
    amp_dtype: str  # autocast dtype of the timed training and inference (a key of AUTOCAST_DTYPES)
    warmup_steps: int
    timed_steps: int
    inference_batches: tuple[int, ...]
    quickstart_iteration_factor: float  # of the quickstart's SOLVER.MAX_ITER
    quickstart_images: tuple[int, int] | None  # (train, val) images instead of the quickstart's
    budget_s: int  # the whole check; each subprocess gets what is left of it


FULL = Plan(device="cuda", equivalence_size=(480, 640), equivalence_overrides=(),
            equivalence_dtypes=tuple(AUTOCAST_DTYPES),
            bench_arguments=("--repeats", "3", "--memory-runs", "1"), train_size=(800, 1333), train_batch=4,
            backbone_depth=50, amp_dtype="float16", warmup_steps=3, timed_steps=10, inference_batches=(1, 8),
            quickstart_iteration_factor=4.0, quickstart_images=None, budget_s=470)
DRY_RUN = Plan(device="cpu", equivalence_size=(64, 96),
               equivalence_overrides=("MODEL.BACKBONE.DEPTH", "18", "MODEL.RPN.PRE_NMS_TOPK_TEST", "200",
                                      "MODEL.RPN.POST_NMS_TOPK_TEST", "100", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200",
                                      "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100"),
               equivalence_dtypes=("float32", "bfloat16"),  # float16 autocast on a CPU is emulated, slowly
               bench_arguments=("--infer-size", "64", "96", "--train-size", "64", "64", "--repeats", "1",
                                "--warmup", "0", "--memory-runs", "1", "--score-thresh", "0.5"),
               train_size=(64, 96), train_batch=1, backbone_depth=18, amp_dtype="bfloat16", warmup_steps=0,
               timed_steps=1, inference_batches=(1, 2), quickstart_iteration_factor=0.0008, quickstart_images=(4, 2),
               budget_s=600)


def autocast(device: str, dtype: torch.dtype | None):
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype, enabled=dtype is not None)


class Deadline:
    """What is left of the check's budget, for the subprocess timeouts."""

    def __init__(self, seconds: float):
        self.end = time.monotonic() + seconds

    def left_s(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError("the check's time budget is spent")
        return left


# ---------------------------------------------------------------------------------- sections
def check_equivalence(plan: Plan, scratch: str, deadline: Deadline) -> dict:
    cfg = load_config(None, ["MODEL.NUM_CLASSES", str(len(SHAPES)), "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0",
                             "INPUT.MIN_SIZE_TEST", str(min(plan.equivalence_size)),
                             "INPUT.MAX_SIZE_TEST", str(max(1333, *plan.equivalence_size)),
                             *plan.equivalence_overrides])
    reference, ours = (model.to(plan.device) for model in same_weights_pair(cfg))
    images, targets = synthetic_batch(cfg, plan.equivalence_size, 2, os.path.join(scratch, "equivalence"))
    images = [image.to(plan.device) for image in images]
    targets = [target_to_device(target, plan.device) for target in targets]
    figures = {}
    for name in plan.equivalence_dtypes:
        dtype = AUTOCAST_DTYPES[name]
        reference.eval(), ours.eval()
        # float32 means float32: no TF32 in convolutions and matrix products for that row
        with strict_float32(dtype is None and plan.device.startswith("cuda")):
            with torch.no_grad(), autocast(plan.device, dtype):
                expected, actual = reference(images), ours(images)
            figures[name] = {**compare_detections(expected, actual),
                             **compare_losses(reference, ours, images, targets, plan.device, dtype)}
    return figures


@contextmanager
def strict_float32(enabled: bool):
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if enabled:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def compare_detections(expected: list[dict], actual: list[dict]) -> dict:
    reproduced = same_label = compared = 0
    box_ious, mask_ious = [], []
    for exp, act in zip(expected, actual):
        top = exp["scores"].argsort(descending=True)[:TOP_DETECTIONS]
        compared += len(top)
        if len(top) == 0 or len(act["boxes"]) == 0:
            continue
        ious = box_iou(exp["boxes"][top].float(), act["boxes"].float())  # (T, D)
        best_iou, best = ious.max(dim=1)
        box_ious += best_iou.tolist()
        close = best_iou >= SAME_BOX_IOU
        reproduced += int(close.sum())
        same_label += int((exp["labels"][top][close] == act["labels"][best[close]]).sum())
        for t, d in zip(top[close].tolist(), best[close].tolist()):
            a, b = exp["masks"][t] >= 0.5, act["masks"][d] >= 0.5
            union = int((a | b).sum())
            mask_ious.append(int((a & b).sum()) / union if union else 1.0)
    return {
        "compared_detections": compared,
        "reproduced": round(reproduced / compared, 4) if compared else None,
        "same_label_of_reproduced": round(same_label / reproduced, 4) if reproduced else None,
        "mean_box_iou": round(statistics.fmean(box_ious), 4) if box_ious else None,
        "mean_mask_iou_of_reproduced": round(statistics.fmean(mask_ious), 4) if mask_ious else None,
    }


def compare_losses(reference, ours, images, targets, device: str, dtype) -> dict:
    reference.train(), ours.train()
    reference_targets = [{**t, "masks": t["amodal_masks"]} for t in targets]
    losses = {}
    for kind, model, model_targets in (("torchvision", reference, reference_targets), ("ours", ours, targets)):
        torch.manual_seed(7)  # the same anchor and RoI samples for both
        with torch.no_grad(), autocast(device, dtype):
            losses[kind] = {name: float(value) for name, value in model(images, model_targets).items()}
    return {"loss_relative_difference": {
        name: round(abs(losses["ours"][name] - value) / max(abs(value), 1e-12), 6)
        for name, value in losses["torchvision"].items()}}


def run_bench_maskrcnn(plan: Plan, scratch: str, deadline: Deadline) -> dict:
    figures = {}
    for amp in (False, True):
        command = [sys.executable, os.path.join(SCRIPTS, "bench_maskrcnn.py"), "--device", plan.device,
                   *plan.bench_arguments, *(["--amp"] if amp else [])]
        report = last_json_line(run(command, deadline))
        figures["amp" if amp else "float32"] = {
            key: report[key] for key in ("infer_ms", "train_ms", "infer_ratio", "train_ratio", "peak_mem_mb")}
    return figures


def time_train_steps(plan: Plan, scratch: str, deadline: Deadline) -> dict:
    figures = {"reference_detectron2_r50_fpn_s_per_iter": DETECTRON2_R50_FPN_S_PER_ITER}
    # One batch for both heads: the data pipeline reads only the INPUT settings, which they share.
    images, targets = synthetic_batch(workload_config(plan, TRAIN_HEADS[0]), plan.train_size, plan.train_batch,
                                      scratch)
    images = [image.to(plan.device) for image in images]
    targets = [target_to_device(target, plan.device) for target in targets]
    amp_dtype = AUTOCAST_DTYPES[plan.amp_dtype]
    for head in TRAIN_HEADS:
        cfg = workload_config(plan, head)
        model = build_model(cfg).to(plan.device).train()
        optimizer = build_optimizer(model, cfg.SOLVER, STEP_LEARNING_RATE)
        scaler = torch.amp.GradScaler(plan.device, enabled=amp_dtype == torch.float16)  # as the trainer does

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast(plan.device, amp_dtype):
                loss = sum(model(images, targets).values())
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        seconds, peak = timed_runs(step, plan)
        figures[head] = {"s_per_iter": round(statistics.median(seconds), 4), "runs_s": [round(s, 4) for s in seconds],
                         "peak_memory_mib": peak, "images_per_batch": plan.train_batch,
                         "image_size": list(plan.train_size), "autocast": plan.amp_dtype}
    return figures


def time_inference(plan: Plan, scratch: str, deadline: Deadline) -> dict:
    # random weights score every class about equally, under the default threshold: keep all
    # detections, so that the SLN branch runs on DETECTIONS_PER_IMAGE of them as on a trained model
    cfg = workload_config(plan, "SLNHead", "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
    model = build_model(cfg).to(plan.device).eval()
    images, _ = synthetic_batch(cfg, plan.train_size, max(plan.inference_batches), os.path.join(scratch, "inference"))
    images = [image.to(plan.device) for image in images]
    figures = {}
    for name in ("float32", plan.amp_dtype):
        for batch in plan.inference_batches:
            detections = []

            def infer() -> None:
                with torch.inference_mode(), autocast(plan.device, AUTOCAST_DTYPES[name]):
                    detections[:] = model(images[:batch])

            seconds, peak = timed_runs(infer, plan)
            figures[f"{name}_batch_{batch}"] = {
                "images_per_s": round(batch / statistics.median(seconds), 2), "peak_memory_mib": peak,
                "detections_per_image": statistics.fmean(len(d["boxes"]) for d in detections)}
    return figures


def train_quickstart(plan: Plan, scratch: str, deadline: Deadline) -> dict:
    quickstart = load_config(QUICKSTART_CONFIG)
    iterations = max(1, round(plan.quickstart_iteration_factor * quickstart.SOLVER.MAX_ITER))
    steps = [max(1, round(plan.quickstart_iteration_factor * s)) for s in quickstart.SOLVER.STEPS]
    data, logs, out = (os.path.join(scratch, f"quickstart_{name}") for name in ("data", "logs", "eval"))
    make_data = [sys.executable, os.path.join(SCRIPTS, "make_synthetic.py"), "--out", data,
                 "--config", QUICKSTART_CONFIG]
    if plan.quickstart_images:
        make_data += ["--num-train", str(plan.quickstart_images[0]), "--num-val", str(plan.quickstart_images[1])]
    run(make_data, deadline)
    start = time.perf_counter()
    run([sys.executable, os.path.join(REPO_ROOT, "amodal_train.py"), "train", "--dataset", data, "--model", "none",
         "--config", QUICKSTART_CONFIG, "--logs", logs, *quickstart_overrides(plan, iterations, steps)], deadline)
    train_s = time.perf_counter() - start
    run([sys.executable, os.path.join(REPO_ROOT, "amodal_train.py"), "evaluate", "--dataset", data, "--model",
         os.path.join(logs, "model_final.pth"), "--out", out], deadline)
    with open(os.path.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    return {"iterations": iterations, "train_command_s": round(train_s, 1),
            "s_per_iter_with_start_up": round(train_s / iterations, 4), "amodal_ap": metrics["amodal"]["all"]["AP"],
            "visible_ap": metrics["visible"]["AP"], "depth_order": metrics["depth_order"]["accuracy"],
            "matched_pairs": metrics["depth_order"]["matched_pairs"], "pairs": metrics["depth_order"]["pairs"]}


SECTIONS = {"equivalence": check_equivalence, "bench_maskrcnn": run_bench_maskrcnn, "train_step": time_train_steps,
            "inference": time_inference, "quickstart": train_quickstart}


# ---------------------------------------------------------------------------------- helpers
def quickstart_overrides(plan: Plan, iterations: int, steps: list[int]) -> list[str]:
    """The command-line config of the quickstart run on the plan's device (AMP on CUDA)."""
    cuda = plan.device.startswith("cuda")
    return ["MODEL.DEVICE", plan.device, "SOLVER.MAX_ITER", str(iterations), "SOLVER.STEPS", json.dumps(steps),
            "SOLVER.CHECKPOINT_PERIOD", str(iterations), "SOLVER.AMP", str(cuda),
            "DATALOADER.NUM_WORKERS", str(QUICKSTART_GPU_WORKERS if cuda else 0)]


def workload_config(plan: Plan, head: str, *overrides: str):
    height, width = plan.train_size
    return load_config(None, [
        "MODEL.WEIGHTS", "none", "MODEL.DEVICE", plan.device, "MODEL.ROI_MASK_HEAD.NAME", head,
        "MODEL.NUM_CLASSES", "80", "MODEL.BACKBONE.DEPTH", str(plan.backbone_depth),
        "INPUT.MIN_SIZE_TRAIN", f"[{min(height, width)}]", "INPUT.MAX_SIZE_TRAIN", str(max(height, width)),
        "INPUT.MIN_SIZE_TEST", str(min(height, width)), "INPUT.MAX_SIZE_TEST", str(max(height, width)),
        *overrides,
    ])


def synthetic_batch(cfg, size: tuple[int, int], count: int, folder: str) -> tuple[list, list]:
    """``count`` synthetic training items at ``size`` through the real data pipeline (every target
    the SLN trains on)."""
    params = SceneParams(height=size[0], width=size[1], min_objects=3, max_objects=8, occlusion=0.5,
                         min_object_size=0.08, max_object_size=0.25, min_visible_area=16)
    write_synthetic_dataset(folder, seed=0, num_train=count, num_val=0, params=params, show_progress=False)
    annotations = read_amodal_coco(os.path.join(folder, "annotations", "train.json"))
    cfg = cfg.clone()
    cfg.INPUT.MIN_SIZE_TRAIN, cfg.INPUT.MAX_SIZE_TRAIN = (min(size),), max(size)
    cfg.INPUT.HFLIP_PROB = 0.0
    dataset = build_dataset(cfg, annotations, os.path.join(folder, "images"), train=True)
    return collate_images_targets([dataset[i] for i in range(count)])


def timed_runs(work, plan: Plan) -> tuple[list[float], float | None]:
    """Seconds of each timed run after the warm-up, and the peak CUDA memory in MiB (None on CPU)."""
    for _ in range(plan.warmup_steps):
        work()
    cuda = plan.device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(plan.timed_steps):
        synchronize(plan.device)
        start = time.perf_counter()
        work()
        synchronize(plan.device)
        seconds.append(time.perf_counter() - start)
    return seconds, round(torch.cuda.max_memory_allocated() / MIB, 1) if cuda else None


def run(command: list[str], deadline: Deadline) -> str:
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=deadline.left_s())
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command[1:3])} exited {completed.returncode}: {completed.stderr[-2000:]}")
    return completed.stdout


def last_json_line(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="every section on the CPU at tiny sizes")
    parser.add_argument("--out", help="folder for the generated data and runs (default: a temporary one)")
    parser.add_argument("--sections", nargs="+", choices=list(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--budget-s", type=float, help="time budget of the whole check (default: the plan's)")
    args = parser.parse_args(argv)
    if not args.dry_run and not torch.cuda.is_available():
        print("no CUDA GPU on this machine: nothing to check (--dry-run exercises the script on the CPU)")
        print(json.dumps({"gpu": None, "dry_run": False, "sections": {}, "failed": []}))
        return 0
    plan = DRY_RUN if args.dry_run else FULL
    deadline = Deadline(args.budget_s or plan.budget_s)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
    report = {"gpu": None if args.dry_run else torch.cuda.get_device_name(), "dry_run": args.dry_run,
              "torch": torch.__version__, "sections": {}, "seconds": {}, "failed": []}
    with tempfile.TemporaryDirectory() as scratch:
        root = args.out or scratch
        for name in args.sections:
            start = time.perf_counter()
            try:
                report["sections"][name] = SECTIONS[name](plan, os.path.join(root, name), deadline)
            except Exception as err:  # a failed section is reported; the others still run
                traceback.print_exc()
                report["sections"][name] = {"error": f"{type(err).__name__}: {err}"[:2000]}
                report["failed"].append(name)
            report["seconds"][name] = round(time.perf_counter() - start, 1)
            print(f"{name}: {json.dumps(report['sections'][name])}", flush=True)
            if args.out:  # what was measured survives a kill of the whole check
                atomic_write_text(json.dumps(report), os.path.join(args.out, "gpu_check.json"))
    print(json.dumps(report))
    return 1 if report["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
