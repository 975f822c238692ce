"""scripts/compare_baselines.py end to end: every method trains a couple of iterations on a tiny
synthetic split, is scored by the evaluator, and lands in one table."""
import json
import os
import sys

from sln_amodal.data.synthetic import write_synthetic_dataset
from test_training import SCENE

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts"))
import compare_baselines  # noqa: E402


def test_every_method_is_trained_scored_and_tabulated(tmp_path):
    data, out = str(tmp_path / "data"), str(tmp_path / "compare")
    write_synthetic_dataset(data, seed=2, num_train=4, num_val=2, params=SCENE, show_progress=False)
    compare_baselines.main([
        "--out", out, "--dataset", data, "--iters", "2",
        "MODEL.VRSP.SHAPE_PRIOR.TRAIN_ITERS", "10", "MODEL.VRSP.SHAPE_PRIOR.TRAIN_BATCH", "16",
        "MODEL.VRSP.SHAPE_PRIOR.NUM_CLUSTERS", "16", "DATALOADER.NUM_WORKERS", "0",
    ])
    with open(os.path.join(out, "comparison.json")) as f:
        rows = json.load(f)
    assert [row["method"] for row in rows] == [m.title for m in compare_baselines.METHODS]
    for method, row in zip(compare_baselines.METHODS, rows):
        with open(os.path.join(out, method.key, "eval", "metrics.json")) as f:
            assert json.load(f) == row["metrics"]
        assert row["iters"] == 2 and row["train_s_per_iter"] > 0 and row["infer_ms_per_image"] > 0
        assert os.path.exists(os.path.join(out, method.key, "train", "model_final.pth"))
    assert rows[-1]["codebook_s"] > 0 and os.path.exists(os.path.join(out, "vrsp", "shape_prior.pth"))

    with open(os.path.join(out, "comparison.md")) as f:
        table = [line for line in f.read().splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(rows)  # the header, then one row per method
    header = [cell.strip() for cell in table[0].strip("|").split("|")]
    assert header[:3] == ["method", "amodal AP", "AP50"] and header[-1] == "infer ms/image"
    for line, row in zip(table[1:], rows):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == row["method"] and len(cells) == len(header)
        amodal_ap = row["metrics"]["amodal"]["all"]["AP"]
        assert cells[1] == ("n/a" if amodal_ap < 0 else f"{amodal_ap:.3f}")
