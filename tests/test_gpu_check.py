"""scripts/gpu_check.py: the dry run exercises every section on the CPU, and without a GPU the
check says so and succeeds."""
import json
import os
import subprocess
import sys

import pytest
import torch

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(REPO_ROOT, "scripts", "gpu_check.py")


def run_check(*args):
    completed = subprocess.run([sys.executable, SCRIPT, *args], cwd=REPO_ROOT, capture_output=True, text=True,
                               timeout=900)
    return completed, json.loads(completed.stdout.strip().splitlines()[-1])


def test_dry_run_runs_every_section_and_ends_with_one_json_line():
    completed, report = run_check("--dry-run")
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert report["dry_run"] is True and report["failed"] == []
    sections = report["sections"]
    assert set(sections) == {"equivalence", "bench_maskrcnn", "train_step", "inference", "quickstart"}
    exact = sections["equivalence"]["float32"]
    assert exact["reproduced"] == exact["same_label_of_reproduced"] == exact["mean_mask_iou_of_reproduced"] == 1.0
    assert all(difference < 1e-4 for difference in exact["loss_relative_difference"].values())
    assert sections["equivalence"]["bfloat16"]["mean_box_iou"] > 0.5  # close, not equal
    assert {"float32", "amp"} <= set(sections["bench_maskrcnn"])
    assert all(sections["train_step"][head]["s_per_iter"] > 0 for head in ("SLNHead", "MaskRCNNHead"))
    assert sections["inference"]["float32_batch_1"]["images_per_s"] > 0
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
