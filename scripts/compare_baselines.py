"""Train the SLN and every baseline on the same synthetic split with the same budget and seed, score
them with the same evaluator, and write a markdown table (and JSON) of the results.

    python scripts/compare_baselines.py --out output/compare [--iters 800] [--methods sln orcnn ...] [KEY VALUE ...]

The methods run at quickstart scale (their ``quickstart*.yaml`` configs: ResNet-18-GN from scratch,
128 x 128 images); the synthetic dataset is generated into --dataset when missing. VRSP-Net's
shape-prior codebook is built first from the training split (its time is reported apart).
Everything a method writes lands in OUT/<method>/ (train/, eval/metrics.json, eval/pr_curves.png).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import dataclass

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

from amodal_train import score_results, write_model_results  # noqa: E402
from sln_amodal.config import load_config  # noqa: E402
from sln_amodal.data.catalog import resolve_split  # noqa: E402
from sln_amodal.data.synthetic import scene_params_from_config, write_synthetic_dataset  # noqa: E402
from sln_amodal.engine.checkpoint import atomic_torch_save  # noqa: E402
from sln_amodal.engine.shape_prior import build_codebook  # noqa: E402
from sln_amodal.engine.trainer import train  # noqa: E402
from sln_amodal.fileio import atomic_write_text  # noqa: E402
from sln_amodal.modeling.shape_prior import shape_prior_file_content  # noqa: E402

CONFIG_DIR = os.path.join(REPO_ROOT, "sln_amodal", "config", "yaml")


@dataclass(frozen=True)
class Method:
    key: str
    title: str
    config: str  # file in CONFIG_DIR
    needs_codebook: bool = False


METHODS = [
    Method("sln", "SLN", "quickstart.yaml"),
    Method("mask_rcnn_amodal", "Mask R-CNN (amodal masks)", "quickstart_mask_rcnn_amodal.yaml"),
    Method("mask_rcnn_visible", "Mask R-CNN (visible masks)", "quickstart_mask_rcnn_visible.yaml"),
    Method("orcnn", "ORCNN", "quickstart_orcnn.yaml"),
    Method("vrsp", "VRSP-Net (CtRef VAR SPRef SPRet FM)", "quickstart_vrsp.yaml", needs_codebook=True),
]
# (column title, metrics.json path) of the table; AP by occlusion bucket is amodal AP.
COLUMNS = [
    ("amodal AP", ("amodal", "all", "AP")),
    ("AP50", ("amodal", "all", "AP50")),
    ("AP none", ("amodal", "none", "AP")),
    ("AP partial", ("amodal", "partial", "AP")),
    ("AP heavy", ("amodal", "heavy", "AP")),
    ("visible AP", ("visible", "AP")),
    ("mAP(Occ) VRSP", ("occluded", "vrsp_AP")),
    ("occluded-GT AP", ("occluded", "gt_subset_AP")),
    ("depth order", ("depth_order", "accuracy")),
]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output folder (comparison.md, comparison.json, one folder per method)")
    parser.add_argument("--dataset", default=os.path.join(REPO_ROOT, "datasets", "synthetic"),
                        help="synthetic dataset folder, generated with the quickstart's SYNTHETIC settings if missing")
    parser.add_argument("--iters", type=int, default=800, help="training iterations of every method")
    parser.add_argument("--methods", nargs="+", choices=[m.key for m in METHODS], default=[m.key for m in METHODS])
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE",
                        help="config overrides applied to every method (after the shared schedule)")
    return parser.parse_args(argv)


def schedule_overrides(iters: int) -> list[str]:
    """The same schedule for every method: warm-up, decay at 70% and 90%, one checkpoint at the end."""
    return ["SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", f"[{int(iters * 0.7)}, {int(iters * 0.9)}]",
            "SOLVER.WARMUP_ITERS", str(min(100, iters // 5)), "SOLVER.CHECKPOINT_PERIOD", str(iters),
            "SOLVER.VIS_PERIOD", "0"]


def ensure_dataset(path: str) -> None:
    if os.path.exists(os.path.join(path, "annotations", "train.json")):
        return
    cfg = load_config(os.path.join(CONFIG_DIR, "quickstart.yaml"))
    print(f"[compare] generating the synthetic dataset in {path}")
    write_synthetic_dataset(path, cfg.SYNTHETIC.SEED, cfg.SYNTHETIC.NUM_TRAIN, cfg.SYNTHETIC.NUM_VAL,
                            scene_params_from_config(cfg))


def build_method_codebook(cfg, dataset: str, path: str) -> float:
    """Write the VRSP-Net codebook of the training split to ``path``; returns the seconds it took."""
    started = time.perf_counter()
    annotations, _ = resolve_split(dataset, cfg.DATASETS.TRAIN_SPLIT, cfg.DATASETS.DATA_TYPE)
    prior, _ = build_codebook(cfg, annotations)
    atomic_torch_save(shape_prior_file_content(prior, annotations.categories), path)
    return time.perf_counter() - started


def run_method(method: Method, args: argparse.Namespace) -> dict:
    folder = os.path.join(args.out, method.key)
    config = os.path.join(CONFIG_DIR, method.config)
    overrides = schedule_overrides(args.iters) + args.overrides
    row = {"method": method.title, "config": method.config, "iters": args.iters}
    if method.needs_codebook:
        codebook = os.path.join(folder, "shape_prior.pth")
        row["codebook_s"] = build_method_codebook(load_config(config, overrides), args.dataset, codebook)
        overrides += ["MODEL.VRSP.SHAPE_PRIOR.FILE", codebook]
    cfg = load_config(config, overrides)

    print(f"[compare] {method.title}: training {args.iters} iterations")
    started = time.perf_counter()
    result = train(cfg, args.dataset, "none", os.path.join(folder, "train"))
    row["train_s_per_iter"] = (time.perf_counter() - started) / args.iters

    model = result.model.eval()
    data = cfg.DATASETS
    annotations, image_root = resolve_split(args.dataset, data.VAL_SPLIT, data.DATA_TYPE)
    eval_dir = os.path.join(folder, "eval")
    started = time.perf_counter()
    results_path, annotations = write_model_results(model, cfg, annotations.categories, annotations, image_root,
                                                    eval_dir)
    row["infer_ms_per_image"] = 1000 * (time.perf_counter() - started) / len(annotations.records)
    score_results(cfg, annotations, results_path, eval_dir)
    with open(os.path.join(eval_dir, "metrics.json")) as f:
        row["metrics"] = json.load(f)
    return row


def lookup(metrics: dict, path: tuple[str, ...]) -> float:
    for key in path:
        metrics = metrics[key]
    return metrics


def markdown_table(rows: list[dict]) -> str:
    header = ["method", *[title for title, _ in COLUMNS], "matched pairs", "train s/iter", "infer ms/image"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        metrics = row["metrics"]
        values = [lookup(metrics, path) for _, path in COLUMNS]
        depth = metrics["depth_order"]
        lines.append("| " + " | ".join([
            row["method"],
            *("n/a" if v is None or v < 0 else f"{v:.3f}" for v in values),
            f"{depth['matched_pairs']}/{depth['pairs']}",
            f"{row['train_s_per_iter']:.2f}",
            f"{row['infer_ms_per_image']:.0f}",
        ]) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    ensure_dataset(args.dataset)
    started = time.perf_counter()
    rows = [run_method(m, args) for m in METHODS if m.key in args.methods]
    table = markdown_table(rows)
    notes = [f"Synthetic val split of {args.dataset}; every method trained {args.iters} iterations from scratch "
             f"with the same seed, data order and schedule (quickstart scale, ResNet-18-GN, 128 x 128)."]
    notes += [f"VRSP-Net's codebook took {r['codebook_s']:.0f} s to build (not in train s/iter)."
              for r in rows if "codebook_s" in r]
    notes.append(f"Whole comparison: {time.perf_counter() - started:.0f} s.")
    text = "\n".join(["# Baseline comparison", "", table, "", *notes, ""])
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(text, os.path.join(args.out, "comparison.md"))
    atomic_write_text(json.dumps(rows, indent=1), os.path.join(args.out, "comparison.json"))
    print(text)
    print(f"wrote {os.path.join(args.out, 'comparison.md')}")


if __name__ == "__main__":
    main()
