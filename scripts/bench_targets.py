"""Time the SLN training targets of one image: depth order, global layering map, RoI L and S maps.

A 1024 x 1024 synthetic scene (the project's generator) with 20 overlapping random shapes in a
known depth order and 128 RoIs (jittered ground-truth boxes). Prints the median milliseconds per
image and, as the last line, one JSON object with the figures.

    .venv/bin/python scripts/bench_targets.py [--device cpu|cuda] [--repeats 20] [--threads N]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import numpy as np
import torch
from tqdm import tqdm

from sln_amodal.config import get_default_config
from sln_amodal.data.synthetic import SceneParams, generate_scene
from sln_amodal.layering import (
    global_layering_map,
    resolve_depth_order,
    resolve_dist_saturation,
    roi_layering_targets,
)
from sln_amodal.structures.masks import mask_to_bbox

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

IMAGE_SIDE = 1024
NUM_OBJECTS = 20
# Placement and sizes under which all 20 objects of the default seed stay at least partly visible.
SCENE_OCCLUSION = 0.2
MIN_OBJECT_SIZE, MAX_OBJECT_SIZE = 0.08, 0.2
MIN_VISIBLE_AREA = 1
NUM_ROIS = 128
BOX_JITTER = 0.1  # RoI corners move by up to this fraction of the box size
WARMUP_REPEATS = 3


def jittered_rois(boxes: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    gt_index = torch.randint(0, len(boxes), (NUM_ROIS,), generator=generator)
    chosen = boxes[gt_index]
    sizes = (chosen[:, 2:] - chosen[:, :2]).repeat(1, 2)
    noise = (torch.rand((NUM_ROIS, 4), generator=generator) * 2 - 1) * BOX_JITTER
    return chosen + noise * sizes, gt_index


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    sln = get_default_config().MODEL.SLN
    num_layers, resolution = sln.NUM_LAYERS, sln.ROI_RESOLUTION
    tau = resolve_dist_saturation(sln.DIST_SATURATION, resolution)

    scene = SceneParams(
        height=IMAGE_SIDE, width=IMAGE_SIDE, min_objects=NUM_OBJECTS, max_objects=NUM_OBJECTS,
        occlusion=SCENE_OCCLUSION, min_object_size=MIN_OBJECT_SIZE, max_object_size=MAX_OBJECT_SIZE,
        min_visible_area=MIN_VISIBLE_AREA,
    )
    _, objects = generate_scene(np.random.default_rng(args.seed), scene)
    amodal = torch.from_numpy(np.stack([o.amodal for o in objects]))
    visible = torch.from_numpy(np.stack([o.visible for o in objects]))
    depth_rank = torch.tensor([o.depth_rank for o in objects])
    boxes = torch.tensor([mask_to_bbox(o.amodal) for o in objects])  # xywh
    boxes[:, 2:] += boxes[:, :2]
    rois, gt_index = jittered_rois(boxes, torch.Generator().manual_seed(args.seed))
    amodal, visible, depth_rank = amodal.to(device), visible.to(device), depth_rank.to(device)
    rois, gt_index = rois.to(device), gt_index.to(device)
    constraints = torch.zeros((0, 2), dtype=torch.long, device=device)

    stages = ("depth_order", "global_map", "roi_targets")
    times = {stage: [] for stage in stages}
    for repeat in tqdm(range(WARMUP_REPEATS + args.repeats), desc="targets", unit="image"):
        marks = [time.perf_counter()]
        in_front = resolve_depth_order(amodal, visible, depth_rank, constraints)
        synchronize(device)
        marks.append(time.perf_counter())
        global_layering_map(amodal, num_layers)
        synchronize(device)
        marks.append(time.perf_counter())
        roi_layering_targets(amodal, visible, in_front, rois, gt_index, resolution, num_layers, tau)
        synchronize(device)
        marks.append(time.perf_counter())
        if repeat >= WARMUP_REPEATS:
            for stage, start, end in zip(stages, marks, marks[1:]):
                times[stage].append(1000 * (end - start))

    totals = [sum(per_stage) for per_stage in zip(*(times[stage] for stage in stages))]
    ms_per_image = statistics.median(totals)
    print(f"{ms_per_image:.2f} ms per image ({args.repeats} repeats, median)")
    print(
        json.dumps(
            {
                "ms_per_image": round(ms_per_image, 3),
                **{f"ms_{stage}": round(statistics.median(times[stage]), 3) for stage in stages},
                "image_side": IMAGE_SIDE,
                "num_objects": len(objects),
                "overlap_fraction": round(float((amodal.sum(dim=0) >= 2).float().mean()), 3),
                "num_rois": NUM_ROIS,
                "roi_resolution": resolution,
                "num_layers": num_layers,
                "tau": tau,
                "repeats": args.repeats,
                "torch_threads": torch.get_num_threads(),
                "device": str(device),
            }
        )
    )


if __name__ == "__main__":
    main()
