"""Train the SLN and the baselines on the same synthetic split, once per seed, with the same budget and
schedule; score every run with the same evaluator and write a markdown table (and JSON) of each
method's mean and spread over the seeds.

    python scripts/compare_baselines.py --out output/compare [--seeds 0 1] [--iters N] \
        [--methods sln mask_rcnn_amodal orcnn vrsp] [--dataset DIR] [--timing-rounds N] [KEY VALUE ...]

Contract:
- Methods: by default SLN, Mask R-CNN (amodal masks), ORCNN and VRSP-Net with all modules (issue 12,
  item 4); ``mask_rcnn_visible`` runs when named in --methods. Each runs at quickstart scale, from
  its ``quickstart*.yaml`` config (ResNet-18-GN from scratch, 128 x 128 images).
- Seeds: every method trains once per seed S of --seeds (default 0 1), with SOLVER.SEED (model
  initialisation) and DATALOADER.SEED (data order) set to S, after the KEY VALUE overrides.
- Budget: --iters defaults to quickstart.yaml's SOLVER.MAX_ITER. Every method gets the same schedule
  (``schedule_overrides``: warm-up, decay at 70% and 90%); at the quickstart's MAX_ITER that rule
  gives quickstart.yaml's own STEPS and WARMUP_ITERS (a test checks it), so the SLN trains its
  quickstart schedule unchanged.
- Data: --dataset is generated with the quickstart's SYNTHETIC settings when it is missing.
- VRSP-Net's shape-prior codebook is built from the training split once per seed (SOLVER.SEED seeds
  its auto-encoder and k-means, so the seed spread covers it); its time is reported apart from
  train s/iter.
- Output: OUT/<method>/seed<S>/ holds one run (train/, eval/metrics.json, eval/pr_curves.png,
  shape_prior.pth for VRSP-Net, and run.json once scored); OUT/comparison.md the table and notes;
  OUT/comparison.json every run (with its seed and metrics), each method's aggregates and the
  verdicts.
- Inference speed: measured anew in every call, after the runs are trained or read back, for all of
  them alike (``time_inference``: each model from its final checkpoint, a warm-up pass, then
  --timing-rounds passes over the decoded val images with the models taking turns batch by batch; the
  median pass counts).
  One pass at scoring time, as before, gave ORCNN 38 and 48 ms on its two seeds.
- Resuming: a run whose run.json records the same method, seed, iterations, dataset and resolved
  config (every value, after the files and overrides) is read back instead of trained again, so
  an interrupted comparison, or one run method by method into the same --out, trains each run
  once. The table covers the methods named in this call.
- Last line: one JSON object with each method's mean depth order and heavy AP, the verdicts and the
  SLN's inference time over Mask R-CNN (amodal masks)'s.
- Aggregates: mean ± spread over the seeds, spread = half the range, (max - min) / 2; one seed shows
  just the value. A value of -1 (undefined) is n/a and left out of the mean.
- Verdict: per baseline, whether the SLN's mean depth order and heavy-occlusion AP exceed the
  baseline's by more than the sum of the two spreads ("yes" / "no"; "n/a" unless both have at least
  two defined seeds).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from sln_amodal.config import load_config
from sln_amodal.data.catalog import resolve_split_from_config
from sln_amodal.data.synthetic import scene_params_from_config, write_synthetic_dataset
from sln_amodal.data.dataset import build_dataset
from sln_amodal.data.loader import build_eval_loader
from sln_amodal.data.records import category_ids_of
from sln_amodal.engine.checkpoint import atomic_torch_save, load_trained_model
from sln_amodal.engine.inference import run_inference
from sln_amodal.engine.shape_codebook import build_codebook
from sln_amodal.engine.split_evaluation import score_results, write_model_results
from sln_amodal.engine.trainer import FINAL_CHECKPOINT, train
from sln_amodal.evaluation.metrics import UNDEFINED
from sln_amodal.evaluation.report import NOT_DEFINED
from sln_amodal.fileio import atomic_write_text
from sln_amodal.modeling.mask_branches.vrsp_shape_prior import shape_prior_file_content

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(REPO_ROOT, "sln_amodal", "config", "yaml")
QUICKSTART_CONFIG = os.path.join(CONFIG_DIR, "quickstart.yaml")
DEFAULT_SEEDS = [0, 1]
DEFAULT_TIMING_ROUNDS = 5


@dataclass(frozen=True)
class Method:
    key: str
    title: str
    config: str  # file in CONFIG_DIR
    needs_codebook: bool = False
    compared_by_default: bool = True


METHODS = [
    Method("sln", "SLN", "quickstart.yaml"),
    Method("mask_rcnn_amodal", "Mask R-CNN (amodal masks)", "quickstart_mask_rcnn_amodal.yaml"),
    Method("mask_rcnn_visible", "Mask R-CNN (visible masks)", "quickstart_mask_rcnn_visible.yaml",
           compared_by_default=False),
    Method("orcnn", "ORCNN", "quickstart_orcnn.yaml"),
    Method("vrsp", "VRSP-Net (CtRef VAR SPRef SPRet FM)", "quickstart_vrsp.yaml", needs_codebook=True),
]
METHOD_BY_KEY = {m.key: m for m in METHODS}
SLN_KEY = "sln"
MASK_RCNN_KEY = "mask_rcnn_amodal"  # the reference of the inference-speed ratio
RUN_RECORD = "run.json"  # in each run's folder, once it is scored


@dataclass(frozen=True)
class Column:
    title: str
    path: tuple[str, ...]  # into one run of comparison.json
    decimals: int


INFERENCE_COLUMN = "infer ms/image"
# AP by occlusion level is amodal AP.
COLUMNS = [
    Column("amodal AP", ("metrics", "amodal", "all", "AP"), 3),
    Column("AP50", ("metrics", "amodal", "all", "AP50"), 3),
    Column("AP none", ("metrics", "amodal", "none", "AP"), 3),
    Column("AP partial", ("metrics", "amodal", "partial", "AP"), 3),
    Column("AP heavy", ("metrics", "amodal", "heavy", "AP"), 3),
    Column("visible AP", ("metrics", "visible", "AP"), 3),
    Column("invisible AP", ("metrics", "invisible", "AP"), 3),
    Column("occluded-GT AP", ("metrics", "occluded", "gt_subset_AP"), 3),
    Column("depth order", ("metrics", "depth_order", "accuracy"), 3),
    Column("overlap front", ("metrics", "overlap_visible", "front"), 3),
    Column("overlap back", ("metrics", "overlap_visible", "back"), 3),
    Column("hidden recall", ("metrics", "hidden_pixels", "recall"), 3),
    Column("matched pairs", ("metrics", "depth_order", "matched_pairs"), 1),
    Column("train s/iter", ("train_s_per_iter",), 2),
    Column(INFERENCE_COLUMN, ("infer_ms_per_image",), 0),
]
VERDICT_COLUMNS = ("depth order", "AP heavy")


def quickstart_config():
    return load_config(QUICKSTART_CONFIG)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True,
                        help="output folder (comparison.md, comparison.json, one folder per run)")
    parser.add_argument("--dataset", default=os.path.join(REPO_ROOT, "datasets", "synthetic"),
                        help="synthetic dataset folder, generated with the quickstart's SYNTHETIC settings if missing")
    parser.add_argument("--iters", type=int, default=quickstart_config().SOLVER.MAX_ITER,
                        help="training iterations of every run (default: quickstart.yaml's SOLVER.MAX_ITER)")
    parser.add_argument("--seeds", type=int, nargs="+", default=DEFAULT_SEEDS,
                        help="one run per method and seed: SOLVER.SEED and DATALOADER.SEED (default: 0 1)")
    parser.add_argument("--methods", nargs="+", choices=[m.key for m in METHODS],
                        default=[m.key for m in METHODS if m.compared_by_default])
    parser.add_argument("--timing-rounds", type=int, default=DEFAULT_TIMING_ROUNDS,
                        help="timed inference passes per model after its warm-up pass; the median is reported")
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE",
                        help="config overrides applied to every run (after the shared schedule, before the seed)")
    args = parser.parse_args(argv)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds must be distinct, got {args.seeds}")
    if args.timing_rounds < 1:
        parser.error(f"--timing-rounds must be at least 1, got {args.timing_rounds}")
    return args


def schedule_overrides(iters: int) -> list[str]:
    """The same schedule for every method: warm-up, decay at 70% and 90%, one checkpoint at the end."""
    return ["SOLVER.MAX_ITER", str(iters), "SOLVER.STEPS", f"[{int(iters * 0.7)}, {int(iters * 0.9)}]",
            "SOLVER.WARMUP_ITERS", str(min(100, iters // 5)), "SOLVER.CHECKPOINT_PERIOD", str(iters),
            "SOLVER.VIS_PERIOD", "0"]


def seed_overrides(seed: int) -> list[str]:
    return ["SOLVER.SEED", str(seed), "DATALOADER.SEED", str(seed)]


def ensure_dataset(path: str) -> None:
    if os.path.exists(os.path.join(path, "annotations", "train.json")):
        return
    cfg = quickstart_config()  # its SYNTHETIC section extends synthetic_easy.yaml
    print(f"[compare] generating the synthetic dataset in {path}")
    write_synthetic_dataset(path, cfg.SYNTHETIC.SEED, cfg.SYNTHETIC.NUM_TRAIN, cfg.SYNTHETIC.NUM_VAL,
                            scene_params_from_config(cfg))


def build_method_codebook(cfg, dataset: str, path: str) -> float:
    """Write the VRSP-Net codebook of the training split to ``path``; returns the seconds it took."""
    started = time.perf_counter()
    annotations, _ = resolve_split_from_config(cfg, dataset, cfg.DATASETS.TRAIN_SPLIT)
    prior, _ = build_codebook(cfg, annotations)
    atomic_torch_save(shape_prior_file_content(prior, annotations.categories), path)
    return time.perf_counter() - started


def run_folder(out: str, method: Method, seed: int) -> str:
    return os.path.join(out, method.key, f"seed{seed}")


def finished_run(folder: str, run: dict) -> dict | None:
    """The run recorded in ``folder`` by an earlier invocation with the same method, seed, iterations,
    dataset and resolved config (a hash of every value), or None (then it is trained again)."""
    path = os.path.join(folder, RUN_RECORD)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        recorded = json.load(f)
    return recorded if all(recorded.get(key) == value for key, value in run.items()) else None


def run_method(method: Method, seed: int, args: argparse.Namespace) -> dict:
    """Train, run and score one (method, seed); returns its entry of comparison.json's runs. A run
    that an interrupted or partial comparison already finished in the same folder is read back."""
    folder = run_folder(args.out, method, seed)
    config = os.path.join(CONFIG_DIR, method.config)
    overrides = schedule_overrides(args.iters) + args.overrides + seed_overrides(seed)
    scheduled = load_config(config, overrides)
    resolved = hashlib.sha256(scheduled.dump().encode()).hexdigest()
    run = {"key": method.key, "method": method.title, "config": method.config, "seed": seed, "iters": args.iters,
           "dataset": os.path.abspath(args.dataset), "config_sha256": resolved}
    recorded = finished_run(folder, run)
    if recorded is not None:
        print(f"[compare] {method.title}, seed {seed}: finished earlier, read from {folder}")
        return recorded
    if method.needs_codebook:
        codebook = os.path.join(folder, "shape_prior.pth")
        run["codebook_s"] = build_method_codebook(scheduled, args.dataset, codebook)
        overrides += ["MODEL.VRSP.SHAPE_PRIOR.FILE", codebook]
    cfg = load_config(config, overrides)

    print(f"[compare] {method.title}, seed {seed}: training {args.iters} iterations")
    started = time.perf_counter()
    result = train(cfg, args.dataset, "none", os.path.join(folder, "train"))
    run["train_s_per_iter"] = (time.perf_counter() - started) / args.iters

    annotations, image_root = resolve_split_from_config(cfg, args.dataset, cfg.DATASETS.VAL_SPLIT)
    eval_dir = os.path.join(folder, "eval")
    results_path, annotations = write_model_results(result.model.eval(), cfg, annotations.categories, annotations,
                                                    image_root, eval_dir)
    score_results(cfg, annotations, results_path, eval_dir)
    with open(os.path.join(eval_dir, "metrics.json")) as f:
        run["metrics"] = json.load(f)
    atomic_write_text(json.dumps(run, indent=1), os.path.join(folder, RUN_RECORD))
    return run


@dataclass
class TimedModel:
    run: dict
    model: torch.nn.Module
    device: torch.device
    category_ids: list[int]
    batches: list  # the val split's eval batches, decoded once so that image reading is not timed
    num_images: int


def load_for_timing(run: dict, args: argparse.Namespace) -> TimedModel:
    folder = run_folder(args.out, METHOD_BY_KEY[run["key"]], run["seed"])
    model, cfg, categories = load_trained_model(os.path.join(folder, "train", FINAL_CHECKPOINT))
    annotations, image_root = resolve_split_from_config(cfg, args.dataset, cfg.DATASETS.VAL_SPLIT)
    loader = build_eval_loader(build_dataset(cfg, annotations, image_root, train=False),
                               cfg.DATALOADER.IMS_PER_BATCH, num_workers=0)
    return TimedModel(run, model, next(model.parameters()).device, category_ids_of(categories), list(loader),
                      len(annotations.records))


def time_inference(runs: list[dict], args: argparse.Namespace) -> None:
    """Set every run's ``infer_ms_per_image``, measured in this call for all runs alike: each trained
    model passes over the val split once to warm up, then ``--timing-rounds`` times; the median pass
    counts. Within a round the models take turns batch by batch, so a change in the machine's speed
    reaches them all alike (with whole passes in turn, one call gave the SLN 1.09x and the next 1.19x
    Mask R-CNN's time, same code and models). A pass is what ``run_inference`` does (model forward,
    masks pasted and RLE-encoded)."""
    timed = [load_for_timing(run, args) for run in runs]
    seconds = [[] for _ in timed]
    for round_index in tqdm(range(args.timing_rounds + 1), desc="inference timing", unit="round"):
        round_seconds = [0.0] * len(timed)
        for batch_index in range(max(len(entry.batches) for entry in timed)):
            for slot, entry in enumerate(timed):
                batch = entry.batches[batch_index : batch_index + 1]
                started = time.perf_counter()
                run_inference(entry.model, batch, entry.device, entry.category_ids, progress=False)
                round_seconds[slot] += time.perf_counter() - started
        if round_index > 0:  # round 0 warms up
            for passes, elapsed in zip(seconds, round_seconds):
                passes.append(elapsed)
    for entry, passes in zip(timed, seconds):
        entry.run["infer_ms_per_image"] = 1000 * statistics.median(passes) / entry.num_images


def inference_ratio(methods: list[dict]) -> float | None:
    """The SLN's mean inference ms/image over Mask R-CNN (amodal masks)'s, when both were compared."""
    means = {m["key"]: m["columns"][INFERENCE_COLUMN]["mean"] for m in methods}
    if SLN_KEY not in means or MASK_RCNN_KEY not in means:
        return None
    return means[SLN_KEY] / means[MASK_RCNN_KEY]


def lookup(tree: dict, path: tuple[str, ...]) -> float:
    for key in path:
        tree = tree[key]
    return tree


def spread_summary(values: list[float]) -> dict:
    """Mean and spread (half the range) of the defined values; ``defined``: how many there were."""
    defined = [v for v in values if v != UNDEFINED]
    if not defined:
        return {"mean": UNDEFINED, "spread": UNDEFINED, "defined": 0}
    return {"mean": sum(defined) / len(defined), "spread": (max(defined) - min(defined)) / 2, "defined": len(defined)}


def aggregate_method(method: Method, runs: list[dict]) -> dict:
    """One method's entry of comparison.json's methods: every column summarised over its seeds."""
    return {"key": method.key, "method": method.title, "seeds": [run["seed"] for run in runs],
            "columns": {c.title: spread_summary([lookup(run, c.path) for run in runs]) for c in COLUMNS}}


def format_cell(summary: dict, decimals: int, num_seeds: int) -> str:
    if summary["defined"] == 0:
        return NOT_DEFINED
    text = f"{summary['mean']:.{decimals}f}"
    if num_seeds > 1:
        text += f" ± {summary['spread']:.{decimals}f}"
    if summary["defined"] < num_seeds:  # the mean is over fewer seeds than the other cells'
        text += f" ({summary['defined']} of {num_seeds} seeds)"
    return text


def markdown_table(methods: list[dict]) -> str:
    header = ["method", *[c.title for c in COLUMNS]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for method in methods:
        cells = [format_cell(method["columns"][c.title], c.decimals, len(method["seeds"])) for c in COLUMNS]
        lines.append("| " + " | ".join([method["method"], *cells]) + " |")
    return "\n".join(lines)


def beats_beyond_spread(sln: dict, baseline: dict) -> str:
    """"yes" when the SLN's mean exceeds the baseline's by more than the sum of their spreads, "no"
    when not, "n/a" when either has fewer than two defined seeds (no spread to judge by)."""
    if sln["defined"] < 2 or baseline["defined"] < 2:
        return NOT_DEFINED
    return "yes" if sln["mean"] - baseline["mean"] > sln["spread"] + baseline["spread"] else "no"


def verdicts(methods: list[dict]) -> dict:
    """{baseline title: {verdict column: "yes" / "no" / "n/a"}}; empty without the SLN."""
    sln = next((m for m in methods if m["key"] == SLN_KEY), None)
    if sln is None:
        return {}
    return {m["method"]: {title: beats_beyond_spread(sln["columns"][title], m["columns"][title])
                          for title in VERDICT_COLUMNS}
            for m in methods if m is not sln}


def notes(args: argparse.Namespace, runs: list[dict], verdict: dict, ratio: float | None, seconds: float) -> list[str]:
    pairs = runs[0]["metrics"]["depth_order"]["pairs"]  # a property of the val split, the same for every run
    lines = [
        f"Synthetic val split of {args.dataset}; every method trained {args.iters} iterations from scratch once per "
        f"seed ({', '.join(map(str, args.seeds))}; SOLVER.SEED sets the model initialisation, DATALOADER.SEED the "
        "data order), with the same schedule (quickstart scale, ResNet-18-GN, 128 x 128).",
        "Cells: mean ± spread over the seeds, spread = half the range, (max - min) / 2 (one seed: the value). "
        f"{NOT_DEFINED}: undefined (-1 in metrics.json), left out of the mean; \"(k of n seeds)\" marks a mean "
        "over the seeds where it is defined.",
        "AP none / partial / heavy: amodal AP by occlusion level. Invisible AP: the hidden parts (amodal minus "
        "visible) over occluded GT. Overlap front / back: share of a matched GT pair's overlap that the front / "
        "back object's detection calls visible (ideal 1 / 0). Hidden recall: share of the matched objects' GT "
        f"hidden pixels called hidden. Matched pairs: of the {pairs} overlapping, ordered GT pairs.",
    ]
    codebook_s = [run["codebook_s"] for run in runs if "codebook_s" in run]
    if codebook_s:
        lines.append(f"VRSP-Net's codebook took {sum(codebook_s) / len(codebook_s):.0f} s per seed to build "
                     "(not in train s/iter).")
    timing = ("Infer ms/image: each model's median pass over the val split's images (decoded beforehand), all "
              "measured in this call, the models taking turns batch by batch; a warm-up pass, then timed passes: "
              f"{args.timing_rounds}")
    if ratio is not None:
        timing += f"; SLN / Mask R-CNN (amodal masks): {ratio:.2f}x"
    lines.append(timing + ".")
    if verdict:
        answers = "; ".join(f"{title} {' / '.join(answer.values())}" for title, answer in verdict.items())
        lines.append(f"SLN ahead by more than the sum of the two spreads ({' / '.join(VERDICT_COLUMNS)}): {answers}.")
    lines.append(f"Whole comparison: {seconds:.0f} s.")
    return lines


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    ensure_dataset(args.dataset)
    started = time.perf_counter()
    chosen = [m for m in METHODS if m.key in args.methods]
    runs_by_method = {m.key: [run_method(m, seed, args) for seed in args.seeds] for m in chosen}
    runs = [run for m in chosen for run in runs_by_method[m.key]]
    time_inference(runs, args)
    methods = [aggregate_method(m, runs_by_method[m.key]) for m in chosen]
    verdict = verdicts(methods)
    ratio = inference_ratio(methods)
    lines = notes(args, runs, verdict, ratio, time.perf_counter() - started)
    text = "\n".join(["# Baseline comparison", "", markdown_table(methods), "", *lines, ""])
    os.makedirs(args.out, exist_ok=True)
    atomic_write_text(text, os.path.join(args.out, "comparison.md"))
    summary = {"runs": runs, "methods": methods, "verdicts": verdict, "sln_vs_mask_rcnn_inference": ratio}
    atomic_write_text(json.dumps(summary, indent=1), os.path.join(args.out, "comparison.json"))
    print(text)
    print(f"wrote {os.path.join(args.out, 'comparison.md')}")
    print(json.dumps({"methods": {m["key"]: {title: m["columns"][title]["mean"] for title in VERDICT_COLUMNS}
                                  for m in methods},
                      "verdicts": verdict, "sln_vs_mask_rcnn_inference": ratio}))


if __name__ == "__main__":
    main()
