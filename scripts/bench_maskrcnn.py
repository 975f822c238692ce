"""Benchmark this project's Mask R-CNN against torchvision's with the same weights and inputs.

Measures, in one process and alternating the two models after a warm-up (ours, torchvision,
ours, ...): eval latency at batch 1 on an 800 x 1066 image, and the time of a training step
(forward + backward) at batch 2 on 512 x 512 images with the same targets and the same sampling
seed. Peak memory is measured per model and task (inference, training step) in a fresh
subprocess: the process RSS high-water mark on the CPU (torch's allocations are invisible to
tracemalloc), ``torch.cuda.max_memory_allocated`` on CUDA; a model's peak is the larger of its
two. Weights are random (seeded) and the box score threshold low, so the mask branch handles the
usual 100 detections per image.

    python scripts/bench_maskrcnn.py [--device cuda] [--amp] [--repeats 5]

The last line printed is one JSON object with the figures and the ratios ours / torchvision
(times: the fastest run of each model, medians and all runs beside them; memory: medians).
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
from contextlib import nullcontext
from functools import partial

import torch
import torch.nn.functional as F


from sln_amodal.config import get_default_config
from sln_amodal.modeling import build_model
from sln_amodal.modeling.torchvision_reference import torchvision_reference
from sln_amodal.modeling.weights import convert_torchvision_maskrcnn

INFER_SIZE = (800, 1066)  # a COCO-sized photo: the default eval resize leaves it at 800 x 1066
TRAIN_SIZE = (512, 512)
TRAIN_BATCH = 2
OBJECTS_PER_IMAGE = 6
MODELS = ("ours", "torchvision")
MEMORY_TASKS = ("infer", "train")
BYTES_PER_MB = 2**20
KB_PER_MB = 2**10  # /proc reports kB


def bench_config(score_thresh: float, infer_size: tuple[int, int] = INFER_SIZE):
    cfg = get_default_config()
    # The eval resize leaves the inference image at its size (the default one: 800 x 1066).
    cfg.INPUT.MIN_SIZE_TEST = min(infer_size)
    cfg.INPUT.MAX_SIZE_TEST = max(cfg.INPUT.MAX_SIZE_TEST, *infer_size)
    # Random weights give every one of the 91 classes about 1/91 probability, under the default 0.05.
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = score_thresh
    return cfg


def build(kind: str, cfg, weights_path: str, device: str) -> torch.nn.Module:
    """Either model with the torchvision-layout weights saved at ``weights_path``."""
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    if kind == "torchvision":
        model = torchvision_reference(cfg)
        model.load_state_dict(state)
    else:
        model = build_model(cfg)
        eps = cfg.MODEL.BACKBONE.NORM_EPS
        model.load_state_dict(convert_torchvision_maskrcnn(state, eps, eps))
    return model.to(device)


def structured_image(height: int, width: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, height // 32 + 1, width // 32 + 1, generator=g)
    return F.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)[0]


def training_batch(device: str, num_classes: int, size: tuple[int, int] = TRAIN_SIZE):
    g = torch.Generator().manual_seed(1)
    images, ours, reference = [], [], []
    height, width = size
    for index in range(TRAIN_BATCH):
        images.append(structured_image(height, width, 10 + index).to(device))
        corners = torch.rand(OBJECTS_PER_IMAGE, 2, generator=g) * torch.tensor([width * 0.6, height * 0.6])
        sizes = (torch.rand(OBJECTS_PER_IMAGE, 2, generator=g) * 0.3 + 0.1) * torch.tensor([width, height])
        boxes = torch.cat([corners, corners + sizes], dim=1).floor()
        masks = torch.zeros(OBJECTS_PER_IMAGE, height, width, dtype=torch.uint8)
        for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
            mask[y0:y1, x0:x1] = 1
        labels = torch.randint(1, num_classes + 1, (OBJECTS_PER_IMAGE,), generator=g)
        target = {"boxes": boxes.to(device), "labels": labels.to(device), "amodal_masks": masks.to(device)}
        ours.append(target)
        reference.append({**target, "masks": target["amodal_masks"]})
    return images, {"ours": ours, "torchvision": reference}


def autocast(device: str, amp: bool):
    if not amp:
        return nullcontext()
    return torch.autocast(device_type=device, dtype=torch.float16 if device == "cuda" else torch.bfloat16)


def synchronize(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_inference(model, images, device: str, amp: bool) -> int:
    model.eval()
    with torch.inference_mode(), autocast(device, amp):
        detections = model(images)
    synchronize(device)
    return len(detections[0]["boxes"])


def run_training_step(model, images, targets, device: str, amp: bool) -> None:
    model.train()
    model.zero_grad(set_to_none=True)
    torch.manual_seed(0)  # both models draw the same anchor and RoI samples
    with autocast(device, amp):
        losses = model(images, targets)
    sum(losses.values()).backward()
    synchronize(device)


def timed(fn) -> tuple[float, float]:
    """(wall-clock, process CPU) seconds of ``fn()``."""
    start_wall, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start_wall, time.process_time() - start_cpu


def alternate(step_of: dict, repeats: int, warmup: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Warm both up, then time them in turns so drifting machine load hits both alike.
    Returns per model the wall-clock and the CPU seconds of every run."""
    for _ in range(warmup):
        for kind in MODELS:
            step_of[kind]()
    wall, cpu = {kind: [] for kind in MODELS}, {kind: [] for kind in MODELS}
    for _ in range(repeats):
        for kind in MODELS:
            wall_s, cpu_s = timed(step_of[kind])
            wall[kind].append(wall_s)
            cpu[kind].append(cpu_s)
    return wall, cpu


def memory_child(kind: str, task: str, weights_path: str, args) -> dict:
    """Run in a fresh process: one inference or one training step of one model. Reports the peak
    and, as its baseline, the memory held once the model and its inputs are built."""
    cfg = bench_config(args.score_thresh, tuple(args.infer_size))
    model = build(kind, cfg, weights_path, args.device)
    if task == "infer":
        images = [structured_image(*args.infer_size, seed=0).to(args.device)]
        step = partial(run_inference, model, images, args.device, args.amp)
    else:
        images, targets = training_batch(args.device, cfg.MODEL.NUM_CLASSES, tuple(args.train_size))
        step = partial(run_training_step, model, images, targets[kind], args.device, args.amp)
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        model_mb = torch.cuda.memory_allocated() / BYTES_PER_MB
        step()
        return {"peak_mb": torch.cuda.max_memory_allocated() / BYTES_PER_MB, "model_mb": model_mb}
    model_mb = proc_status_mb("VmRSS")
    step()
    return {"peak_mb": proc_status_mb("VmHWM"), "model_mb": model_mb}


def proc_status_mb(field: str) -> float:
    """A memory figure of this process from /proc (Linux): VmRSS now, VmHWM the peak. VmHWM starts
    afresh at exec, whereas ru_maxrss would also count the parent's pages shared before exec."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / KB_PER_MB
    raise RuntimeError(f"no {field} in /proc/self/status: CPU memory figures need Linux")


def measure_memory(kind: str, task: str, weights_path: str, args) -> dict:
    command = [sys.executable, os.path.abspath(__file__), "--memory-child", kind, "--memory-task", task,
               "--weights", weights_path, "--device", args.device, "--score-thresh", str(args.score_thresh),
               "--infer-size", *map(str, args.infer_size), "--train-size", *map(str, args.train_size)]
    if args.amp:
        command.append("--amp")
    if args.threads:
        command += ["--threads", str(args.threads)]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--amp", action="store_true", help="autocast (float16 on CUDA, bfloat16 on CPU)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per model after the warm-up")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--memory-runs", type=int, default=3, help="fresh processes per model and task for memory")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--score-thresh", type=float, default=0.0, help="box score threshold at test time")
    parser.add_argument("--infer-size", type=int, nargs=2, default=INFER_SIZE, metavar=("H", "W"))
    parser.add_argument("--train-size", type=int, nargs=2, default=TRAIN_SIZE, metavar=("H", "W"),
                        help=f"images of the training step ({TRAIN_BATCH} per batch)")
    parser.add_argument("--memory-child", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--memory-task", choices=MEMORY_TASKS, help=argparse.SUPPRESS)
    parser.add_argument("--weights", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.memory_task, args.weights, args)))
        return

    cfg = bench_config(args.score_thresh, tuple(args.infer_size))
    with tempfile.TemporaryDirectory() as folder:
        weights_path = os.path.join(folder, "torchvision_layout.pth")
        torch.manual_seed(0)
        torch.save(torchvision_reference(cfg).state_dict(), weights_path)
        models = {kind: build(kind, cfg, weights_path, args.device) for kind in MODELS}

        infer_images = [structured_image(*args.infer_size, seed=0).to(args.device)]
        detections = {kind: run_inference(models[kind], infer_images, args.device, args.amp) for kind in MODELS}
        infer, infer_cpu = alternate(
            {kind: partial(run_inference, models[kind], infer_images, args.device, args.amp) for kind in MODELS},
            args.repeats,
            args.warmup,
        )
        train_images, targets = training_batch(args.device, cfg.MODEL.NUM_CLASSES, tuple(args.train_size))
        train, train_cpu = alternate(
            {
                kind: partial(run_training_step, models[kind], train_images, targets[kind], args.device, args.amp)
                for kind in MODELS
            },
            args.repeats,
            args.warmup,
        )
        del models
        # One fresh process per model and task, so neither inherits the other's allocator state;
        # RSS peaks still vary from run to run, so the processes alternate and medians are kept.
        memory = {(kind, task): [] for kind in MODELS for task in MEMORY_TASKS}
        for _ in range(args.memory_runs):
            for task in MEMORY_TASKS:
                for kind in MODELS:
                    memory[kind, task].append(measure_memory(kind, task, weights_path, args))
    task_peak = {key: statistics.median(run["peak_mb"] for run in runs) for key, runs in memory.items()}
    # What the step needs on top of the built model and inputs.
    task_working = {
        key: statistics.median(run["peak_mb"] - run["model_mb"] for run in runs) for key, runs in memory.items()
    }
    peak = {kind: max(task_peak[kind, task] for task in MEMORY_TASKS) for kind in MODELS}
    working = {kind: max(task_working[kind, task] for task in MEMORY_TASKS) for kind in MODELS}

    # Other load on the machine only ever adds time, so the fastest run is the cleanest figure;
    # the ratios use it, the medians and every run are reported beside it.
    infer_ms = {k: 1000 * min(v) for k, v in infer.items()}
    train_ms = {k: 1000 * min(v) for k, v in train.items()}
    table = [("inference ms", infer_ms), ("train step ms", train_ms), ("peak MB", peak), ("working MB", working)]
    print("times: the fastest of the alternating runs")
    for name, figures in table:
        print(f"{name:>14}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()))
    print(
        json.dumps(
            {
                "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
                "amp": args.amp,
                "threads": torch.get_num_threads(),
                "repeats": args.repeats,
                "memory_runs": args.memory_runs,
                "detections": detections,
                "infer_ms": infer_ms,
                "train_ms": train_ms,
                "infer_median_ms": {k: 1000 * statistics.median(v) for k, v in infer.items()},
                "train_median_ms": {k: 1000 * statistics.median(v) for k, v in train.items()},
                "infer_runs_ms": {k: [round(1000 * t) for t in v] for k, v in infer.items()},
                "train_runs_ms": {k: [round(1000 * t) for t in v] for k, v in train.items()},
                # CPU time of the process (all threads): on a shared CPU, time spent waiting for a
                # core does not count, so it varies far less than wall-clock time.
                "infer_cpu_ms": {k: 1000 * min(v) for k, v in infer_cpu.items()},
                "train_cpu_ms": {k: 1000 * min(v) for k, v in train_cpu.items()},
                "infer_cpu_ratio": min(infer_cpu["ours"]) / min(infer_cpu["torchvision"]),
                "train_cpu_ratio": min(train_cpu["ours"]) / min(train_cpu["torchvision"]),
                "peak_mem_mb": peak,
                "peak_mem_by_task_mb": {f"{kind}/{task}": mb for (kind, task), mb in task_peak.items()},
                "working_mem_mb": working,
                "infer_ratio": infer_ms["ours"] / infer_ms["torchvision"],
                "train_ratio": train_ms["ours"] / train_ms["torchvision"],
                "peak_mem_ratio": peak["ours"] / peak["torchvision"],
                "working_mem_ratio": working["ours"] / working["torchvision"],
            }
        )
    )


if __name__ == "__main__":
    main()
