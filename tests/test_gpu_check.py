"""scripts/gpu_check.py: the dry run exercises every section on the CPU, and without a GPU the
check says so and succeeds."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from sln_amodal.config import load_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "gpu_check.py")


def run_check(*args):
    completed = subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=900)
    return completed, json.loads(completed.stdout.strip().splitlines()[-1])


def load_gpu_check():
    sys.path.insert(0, os.path.dirname(SCRIPT))  # it imports bench_maskrcnn beside it
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_gpu_plan_builds_valid_configs():
    """What only the GPU run uses is parsed here: its workload configs and quickstart overrides."""
    gpu_check = load_gpu_check()
    plan = gpu_check.FULL
    for head in gpu_check.TRAIN_HEADS:
        cfg = gpu_check.workload_config(plan, head, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0")
        assert cfg.MODEL.BACKBONE.DEPTH == 50
        assert cfg.INPUT.MIN_SIZE_TRAIN == (800,) and cfg.INPUT.MAX_SIZE_TRAIN == 1333
        assert cfg.MODEL.ROI_MASK_HEAD.NAME == head
    quickstart = load_config(gpu_check.QUICKSTART_CONFIG)
    iterations = round(plan.quickstart_iteration_factor * quickstart.SOLVER.MAX_ITER)
    overrides = gpu_check.quickstart_overrides(plan, iterations, [7000, 9000])
    cfg = load_config(gpu_check.QUICKSTART_CONFIG, overrides)
    assert cfg.SOLVER.MAX_ITER == 4 * quickstart.SOLVER.MAX_ITER and cfg.SOLVER.AMP is True
    assert cfg.MODEL.DEVICE == "cuda" and cfg.SOLVER.STEPS == (7000, 9000)
    assert plan.budget_s <= 8 * 60


def test_dry_run_runs_every_section_and_ends_with_one_json_line():
    completed, report = run_check("--dry-run")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert report["dry_run"] is True and report["failed"] == []
    sections = report["sections"]
    assert set(sections) == {"equivalence", "bench_maskrcnn", "train_step", "inference", "quickstart"}
    exact = sections["equivalence"]["float32"]
    assert exact["reproduced"] == exact["same_label_of_reproduced"] == exact["mean_mask_iou_of_reproduced"] == 1.0
    assert all(difference < 1e-4 for difference in exact["loss_relative_difference"].values())
    assert sections["equivalence"]["bfloat16"]["mean_box_iou"] > 0.8  # close, not equal
    assert {"float32", "amp"} <= set(sections["bench_maskrcnn"])
    assert all(sections["train_step"][head]["s_per_iter"] > 0 for head in ("SLNHead", "MaskRCNNHead"))
    assert sections["inference"]["float32_batch_1"]["images_per_s"] > 0
    assert sections["inference"]["bfloat16_batch_2"]["detections_per_image"] > 0  # the SLN branch ran
    assert sections["quickstart"]["iterations"] >= 1 and 0 <= sections["quickstart"]["amodal_ap"] <= 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_without_a_gpu_it_says_so_and_exits_0():
    """Through the one command, scripts/gpu_check.sh (its environment set-up is a no-op here)."""
    completed = subprocess.run(["bash", os.path.join(REPO_ROOT, "scripts", "gpu_check.sh")], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=600)
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert completed.returncode == 0
    assert "no CUDA GPU on this machine" in completed.stdout
    assert report == {"gpu": None, "dry_run": False, "sections": {}, "failed": []}
