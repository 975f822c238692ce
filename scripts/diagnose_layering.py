"""Where does a trained SLN put each layer level? A confusion table of its RoI-grid predictions.

    python scripts/diagnose_layering.py --model logs/run/model_final.pth --dataset datasets/synthetic

The SLN branch is run on the ground-truth boxes of the split (so detection errors do not enter),
and on each RoI grid its predictions are compared with the training targets of SPEC section 2:
the instance layering classifier's arg-max and the level of the sem-dist map (round(S), clamped to
0..K) against the target level L (0 background, 1 visible, 2..K hidden behind 1..K-1 objects).
It prints, per target level, how the cells are called and the mean predicted S, and ends with one
JSON line. A model that learnt its layers calls hidden cells hidden, not visible.
"""
from __future__ import annotations

import argparse
import json
import sys

import torch
from tqdm import tqdm


from sln_amodal.data.catalog import resolve_split_from_config
from sln_amodal.data.dataset import build_dataset
from sln_amodal.engine.checkpoint import load_trained_model
from sln_amodal.layering import resolve_depth_order, roi_layering_targets


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="training checkpoint of an SLN model")
    parser.add_argument("--dataset", required=True, help="dataset folder")
    parser.add_argument("--split", help="split to read (default: config DATASETS.VAL_SPLIT)")
    parser.add_argument("--max-images", type=int, default=0, help="stop after this many images (0: all)")
    return parser.parse_args(argv)


@torch.no_grad()
def confusion_on_gt_boxes(model, dataset, max_images: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(K+1, K+1) counts [target level, instance-classifier level], the same for the level of S, and
    (K+1,) sums of predicted S per target level."""
    branch = model.roi_heads.mask_branch
    num_levels = branch.num_layers + 1
    classifier_counts = torch.zeros((num_levels, num_levels), dtype=torch.long)
    sem_dist_counts = torch.zeros_like(classifier_counts)
    sem_dist_sums = torch.zeros(num_levels, dtype=torch.float64)
    count = len(dataset) if max_images <= 0 else min(max_images, len(dataset))
    for index in tqdm(range(count), desc="diagnose", unit="img"):
        image, target = dataset[index]
        if len(target["boxes"]) == 0:
            continue
        batch, image_sizes = model.transform([image])
        features = model.extract_features(batch)
        scale = torch.tensor(image_sizes[0], dtype=torch.float32) / torch.tensor(target["orig_size"])
        boxes = target["boxes"] * scale[[1, 0, 1, 0]]
        _, instance_logits, sem_dist = branch.predict(features, [boxes])
        sem_dist = sem_dist[torch.arange(len(boxes)), 0 if sem_dist.shape[1] == 1 else target["labels"]]
        # Targets on the network-input grid: masks resized with the image, as in training.
        amodal = torch.nn.functional.interpolate(target["amodal_masks"][None].float(), size=image_sizes[0])[0].bool()
        visible = torch.nn.functional.interpolate(target["visible_masks"][None].float(), size=image_sizes[0])[0].bool()
        in_front = resolve_depth_order(amodal, visible, target["depth_rank"], target["depth_constraints"])
        layer_targets, _ = roi_layering_targets(
            amodal, visible, in_front, boxes, torch.arange(len(boxes)), branch.resolution, branch.num_layers,
            branch.dist_saturation,
        )
        truth = layer_targets.flatten()
        called = instance_logits.argmax(dim=1).flatten()
        # The level of S in the numbering of L: round(S) = K is visible (L = 1), round(S) = 0 background.
        rounded = sem_dist.round().clamp(0, branch.num_layers).long().flatten()
        sem_dist_level = torch.where(rounded > 0, branch.num_layers + 1 - rounded, 0)
        classifier_counts += pair_counts(truth, called, num_levels)
        sem_dist_counts += pair_counts(truth, sem_dist_level, num_levels)
        sem_dist_sums += torch.bincount(truth, weights=sem_dist.flatten().double(), minlength=num_levels)
    return classifier_counts, sem_dist_counts, sem_dist_sums


def pair_counts(truth: torch.Tensor, called: torch.Tensor, num_levels: int) -> torch.Tensor:
    """(num_levels, num_levels) counts of cells [target level, predicted level]."""
    return torch.bincount(truth * num_levels + called, minlength=num_levels**2).view(num_levels, num_levels)


def level_names(num_levels: int) -> list[str]:
    return ["background", "visible"] + [f"hidden-{depth}" for depth in range(1, num_levels - 1)]


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    model, cfg, _ = load_trained_model(args.model, device="cpu")  # the dataset items are on the CPU
    if not hasattr(model.roi_heads.mask_branch, "num_layers"):
        sys.exit(f"error: {args.model}: the model's mask branch is not an SLN branch (no layer levels)")
    annotations, image_root = resolve_split_from_config(cfg, args.dataset, args.split or cfg.DATASETS.VAL_SPLIT)
    dataset = build_dataset(cfg, annotations, image_root, train=False)
    classifier, sem_dist, sums = confusion_on_gt_boxes(model, dataset, args.max_images)
    names = level_names(len(sums))
    cells = classifier.sum(dim=1)
    report = {"cells": dict(zip(names, cells.tolist())), "instance_classifier": {}, "sem_dist_level": {},
              "mean_sem_dist": dict(zip(names, (sums / cells.clamp(min=1)).round(decimals=3).tolist()))}
    print(f"{'target level':<14}{'cells':>8}  called by the classifier / by the level of S: " + " ".join(
        f"{n:>11}" for n in names) + "   mean S")
    for row, name in enumerate(names):
        shares = [(table[row] / cells[row].clamp(min=1)).round(decimals=3).tolist() for table in (classifier, sem_dist)]
        report["instance_classifier"][name] = dict(zip(names, shares[0]))
        report["sem_dist_level"][name] = dict(zip(names, shares[1]))
        for label, values in (("classifier", shares[0]), ("S level", shares[1])):
            print(f"{name if label == 'classifier' else '':<14}{cells[row].item() if label == 'classifier' else '':>8}"
                  f"  {label:>10}: " + " ".join(f"{v:>11.3f}" for v in values)
                  + (f"   {report['mean_sem_dist'][name]:.3f}" if label == "S level" else ""))
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main()
