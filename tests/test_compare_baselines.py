"""scripts/compare_baselines.py end to end: two methods x two seeds train a couple of iterations on a
tiny synthetic split, are scored by the evaluator and land in one table of mean ± spread; VRSP-Net
(codebook included) in one single-seed run; the defaults follow the quickstart."""
import json
import os
import sys

import pytest
import yaml

from sln_amodal.config import load_config
from sln_amodal.data.synthetic import write_synthetic_dataset
from testing import SCENE

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import compare_baselines  # noqa: E402

CHEAP = ["--iters", "2", "--timing-rounds", "1", "MODEL.VRSP.SHAPE_PRIOR.TRAIN_ITERS", "10",
         "MODEL.VRSP.SHAPE_PRIOR.TRAIN_BATCH", "16", "MODEL.VRSP.SHAPE_PRIOR.NUM_CLUSTERS", "16",
         "DATALOADER.NUM_WORKERS", "0"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("data"))
    write_synthetic_dataset(path, seed=2, num_train=4, num_val=2, params=SCENE, show_progress=False)
    return path


def read_outputs(out: str) -> tuple[dict, list[list[str]], list[str]]:
    """comparison.json, the table's rows as cells (header first) and the notes of comparison.md."""
    with open(os.path.join(out, "comparison.json")) as f:
        comparison = json.load(f)
    with open(os.path.join(out, "comparison.md")) as f:
        lines = f.read().splitlines()
    table = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines if line.startswith("| ")]
    return comparison, table, [line for line in lines if line and not line.startswith(("|", "#"))]


def expected_cell(values: list[float], decimals: int) -> str:
    """The cell of a column over two seeds, computed here from the runs' own values."""
    defined = [v for v in values if v != -1]
    if not defined:
        return "n/a"
    mean, spread = sum(defined) / len(defined), (max(defined) - min(defined)) / 2
    cell = f"{mean:.{decimals}f} ± {spread:.{decimals}f}"
    return cell if len(defined) == len(values) else f"{cell} ({len(defined)} of {len(values)} seeds)"


def test_defaults_follow_the_quickstart():
    args = compare_baselines.parse_args(["--out", "unused"])
    quickstart = load_config(compare_baselines.QUICKSTART_CONFIG)
    assert args.iters == quickstart.SOLVER.MAX_ITER and args.seeds == [0, 1]
    assert args.methods == ["sln", "mask_rcnn_amodal", "orcnn", "vrsp"]
    # The shared schedule rule reproduces the quickstart's own schedule at its budget.
    scheduled = load_config(compare_baselines.QUICKSTART_CONFIG, compare_baselines.schedule_overrides(args.iters))
    assert scheduled.SOLVER.STEPS == quickstart.SOLVER.STEPS
    assert scheduled.SOLVER.WARMUP_ITERS == quickstart.SOLVER.WARMUP_ITERS
    with pytest.raises(SystemExit):
        compare_baselines.parse_args(["--out", "unused", "--seeds", "1", "1"])


def test_two_methods_two_seeds_are_aggregated(dataset, tmp_path):
    out = str(tmp_path / "compare")
    compare_baselines.main(["--out", out, "--dataset", dataset, "--methods", "sln", "mask_rcnn_amodal",
                            "--seeds", "0", "1", *CHEAP])
    comparison, table, notes = read_outputs(out)
    runs = comparison["runs"]
    assert [(run["key"], run["seed"]) for run in runs] == [("sln", 0), ("sln", 1), ("mask_rcnn_amodal", 0),
                                                           ("mask_rcnn_amodal", 1)]
    for run in runs:
        folder = os.path.join(out, run["key"], f"seed{run['seed']}")
        with open(os.path.join(folder, "eval", "metrics.json")) as f:
            assert json.load(f) == run["metrics"]
        assert os.path.exists(os.path.join(folder, "eval", "pr_curves.png"))
        assert os.path.exists(os.path.join(folder, "train", "model_final.pth"))
        with open(os.path.join(folder, "train", "config.yaml")) as f:
            solver_seed_and_data_seed = yaml.safe_load(f)
        assert solver_seed_and_data_seed["SOLVER"]["SEED"] == run["seed"]
        assert solver_seed_and_data_seed["DATALOADER"]["SEED"] == run["seed"]
        assert run["iters"] == 2 and run["train_s_per_iter"] > 0 and run["infer_ms_per_image"] > 0

    header = table[0]
    assert header == ["method", *[c.title for c in compare_baselines.COLUMNS]]
    assert {"invisible AP", "overlap front", "overlap back", "hidden recall", "matched pairs"} <= set(header)
    assert [row[0] for row in table[1:]] == ["SLN", "Mask R-CNN (amodal masks)"]
    for row, method, pair in zip(table[1:], comparison["methods"], (runs[:2], runs[2:])):
        assert method["seeds"] == [0, 1] and len(row) == len(header)
        for column, cell in zip(compare_baselines.COLUMNS, row[1:]):
            values = [compare_baselines.lookup(run, column.path) for run in pair]
            assert cell == expected_cell(values, column.decimals), column.title
        # Timings are always defined and differ between runs: the arithmetic itself.
        first, second = (run["train_s_per_iter"] for run in pair)
        assert method["columns"]["train s/iter"] == pytest.approx(
            {"mean": (first + second) / 2, "spread": abs(first - second) / 2, "defined": 2})

    sln, baseline = comparison["methods"]
    verdict = {title: ("n/a" if min(sln["columns"][title]["defined"], baseline["columns"][title]["defined"]) < 2
                       else "yes" if sln["columns"][title]["mean"] - baseline["columns"][title]["mean"]
                       > sln["columns"][title]["spread"] + baseline["columns"][title]["spread"] else "no")
               for title in compare_baselines.VERDICT_COLUMNS}
    assert comparison["verdicts"] == {"Mask R-CNN (amodal masks)": verdict}
    assert any(line.startswith("SLN ahead") and f"Mask R-CNN (amodal masks) {' / '.join(verdict.values())}." in line
               for line in notes)
    assert any("half the range" in line for line in notes)
    ratio = sln["columns"]["infer ms/image"]["mean"] / baseline["columns"]["infer ms/image"]["mean"]
    assert comparison["sln_vs_mask_rcnn_inference"] == pytest.approx(ratio)
    assert any(line.startswith("Infer ms/image: each model's median pass") and "timed passes: 1" in line
               and f"{ratio:.2f}x" in line for line in notes)

    # A second call into the same folder reads the finished runs back instead of training again.
    model_file = os.path.join(out, "sln", "seed1", "train", "model_final.pth")
    trained_at = os.stat(model_file).st_mtime_ns
    compare_baselines.main(["--out", out, "--dataset", dataset, "--methods", "sln", "--seeds", "1", *CHEAP])
    again, table, _ = read_outputs(out)
    assert os.stat(model_file).st_mtime_ns == trained_at
    # Inference is timed anew in every call, for read-back runs too; everything else is the record.
    (reread,) = again["runs"]
    assert reread.pop("infer_ms_per_image") > 0
    assert reread == {k: v for k, v in runs[1].items() if k != "infer_ms_per_image"}
    assert [row[0] for row in table[1:]] == ["SLN"]


def test_a_finished_run_is_reused_only_with_the_same_settings(tmp_path):
    run = {"key": "sln", "config": "quickstart.yaml", "seed": 0, "iters": 2, "dataset": "/d", "config_sha256": "ab"}
    assert compare_baselines.finished_run(str(tmp_path), run) is None
    (tmp_path / compare_baselines.RUN_RECORD).write_text(json.dumps({**run, "metrics": {}}))
    assert compare_baselines.finished_run(str(tmp_path), run) == {**run, "metrics": {}}
    for changed in ({"iters": 3}, {"config_sha256": "cd"}, {"seed": 1}, {"dataset": "/e"}):
        assert compare_baselines.finished_run(str(tmp_path), {**run, **changed}) is None


def test_vrsp_builds_its_codebook_per_seed(dataset, tmp_path):
    out = str(tmp_path / "compare")
    compare_baselines.main(["--out", out, "--dataset", dataset, "--methods", "vrsp", "--seeds", "3", *CHEAP])
    comparison, table, notes = read_outputs(out)
    (run,) = comparison["runs"]
    folder = os.path.join(out, "vrsp", "seed3")
    assert run["seed"] == 3 and run["codebook_s"] > 0
    assert os.path.exists(os.path.join(folder, "shape_prior.pth"))
    assert os.path.exists(os.path.join(folder, "train", "model_final.pth"))
    (row,) = table[1:]
    amodal_ap = run["metrics"]["amodal"]["all"]["AP"]
    # One seed: the value alone.
    assert row[0] == run["method"] and row[1] == ("n/a" if amodal_ap == -1 else f"{amodal_ap:.3f}")
    assert not any("±" in cell for cell in row)
    assert comparison["verdicts"] == {} and not any(line.startswith("SLN ahead") for line in notes)
    assert comparison["sln_vs_mask_rcnn_inference"] is None and run["infer_ms_per_image"] > 0


def test_undefined_values_are_left_out_of_mean_and_spread():
    summary = compare_baselines.spread_summary([0.2, -1.0, 0.6])
    assert summary == pytest.approx({"mean": 0.4, "spread": 0.2, "defined": 2})
    assert compare_baselines.format_cell(summary, 3, 3) == "0.400 ± 0.200 (2 of 3 seeds)"
    assert compare_baselines.format_cell(compare_baselines.spread_summary([0.25]), 2, 1) == "0.25"
    undefined = compare_baselines.spread_summary([-1.0, -1.0])
    assert compare_baselines.format_cell(undefined, 3, 2) == "n/a"
    assert compare_baselines.beats_beyond_spread(summary, undefined) == "n/a"
    assert compare_baselines.beats_beyond_spread(summary, compare_baselines.spread_summary([0.1, 0.15])) == "yes"
    assert compare_baselines.beats_beyond_spread(summary, compare_baselines.spread_summary([0.1, 0.3])) == "no"
