"""The training engine on a tiny SLN and a tiny synthetic dataset, on the CPU: exact resume, two-process
DDP with gloo, the non-finite loss stop, TensorBoard events, and ``amodal_train.py train``."""
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.multiprocessing as mp
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sln_amodal.config import load_config
from sln_amodal.data.synthetic import write_synthetic_dataset
from sln_amodal.engine.checkpoint import (LAST_CHECKPOINT_FILE, CheckpointError, load_trained_model, read_checkpoint,
                                          seed_all_rng)
from sln_amodal.engine.trainer import FINAL_CHECKPOINT, train
from sln_amodal.modeling.build import build_model
from testing import BASE_LR, SCENE, TINY, WARMUP_FACTOR, WARMUP_ITERS, tiny_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TRAIN_IMAGES = 6
# Makes the first update explode the weights, so the second forward pass is not finite.
EXPLODING = ["SOLVER.BASE_LR", "1.0e+30", "SOLVER.WARMUP_ITERS", "0", "SOLVER.VIS_PERIOD", "0"]


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    """Results are bitwise comparable only at one thread count; conftest sets one thread per test,
    after the module fixtures below have trained."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_dataset(str(root), seed=0, num_train=NUM_TRAIN_IMAGES, num_val=0, params=SCENE, show_progress=False)
    return str(root)


@pytest.fixture(scope="module")
def straight_run(dataset_dir, tmp_path_factory):
    """4 iterations in one go (checkpoints at 2 and at the end)."""
    logs = str(tmp_path_factory.mktemp("straight"))
    result = train(tiny_config("SOLVER.MAX_ITER", "4"), dataset_dir, "none", logs)
    assert result.iteration == 4 and result.checkpoint == os.path.join(logs, FINAL_CHECKPOINT)
    return logs


def run_cli(*args):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread, as in this process, for bitwise-equal results
    return subprocess.run([sys.executable, "amodal_train.py", "train", *map(str, args)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def assert_same_tensors(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name


def assert_same_optimizer_state(actual: dict, expected: dict):
    assert actual.keys() == expected.keys()
    for index in expected:
        assert_same_tensors(actual[index], expected[index])


def test_resume_with_last_equals_straight_run(dataset_dir, straight_run, tmp_path):
    logs = str(tmp_path / "run")
    first = train(tiny_config("SOLVER.MAX_ITER", "2"), dataset_dir, "none", logs)
    assert first.iteration == 2
    halfway, straight_halfway = read_checkpoint(first.checkpoint), read_checkpoint(
        os.path.join(straight_run, "model_0000002.pth"))
    assert_same_tensors(halfway["model"], straight_halfway["model"])

    # One loader worker this time: the data order must not depend on the worker count.
    second = train(tiny_config("SOLVER.MAX_ITER", "4", "DATALOADER.NUM_WORKERS", "1"), dataset_dir, "last", logs)
    assert second.iteration == 4
    resumed = read_checkpoint(second.checkpoint)
    straight = read_checkpoint(os.path.join(straight_run, FINAL_CHECKPOINT))
    assert resumed["iteration"] == straight["iteration"] == 4
    assert resumed["loader"] == straight["loader"]
    assert resumed["scheduler"] == straight["scheduler"]
    assert_same_tensors(resumed["model"], straight["model"])
    assert_same_optimizer_state(resumed["optimizer"]["state"], straight["optimizer"]["state"])
    assert not torch.equal(resumed["model"]["roi_heads.box_predictor.cls_score.weight"],
                           halfway["model"]["roi_heads.box_predictor.cls_score.weight"])

    # Resuming a finished run trains nothing and writes nothing.
    again = train(tiny_config("SOLVER.MAX_ITER", "4"), dataset_dir, "last", logs)
    assert again.iteration == 4 and again.checkpoint is None


def test_non_finite_loss_keeps_only_sound_checkpoints_and_resume_applies_new_solver_values(dataset_dir, tmp_path):
    logs = tmp_path / "run"
    train(tiny_config("SOLVER.MAX_ITER", "1"), dataset_dir, "none", str(logs))
    saved = {name: (logs / name).read_bytes() for name in (FINAL_CHECKPOINT, LAST_CHECKPOINT_FILE)}
    stale = logs / f"{FINAL_CHECKPOINT}.tmp.999999"  # what a checkpoint write killed midway leaves
    stale.write_bytes(b"partial checkpoint")

    # The resumed run takes the command line's exploding learning rate: update 2 blows the weights
    # up, iteration 3's loss is not finite, and the checkpoint due after update 2 is never written.
    completed = run_cli("--dataset", dataset_dir, "--model", "last", "--logs", logs, *TINY, *EXPLODING,
                        "SOLVER.MAX_ITER", "3", "SOLVER.CHECKPOINT_PERIOD", "1")
    assert completed.returncode != 0
    assert "error: iteration 3: non-finite loss" in completed.stderr and "loss_sem_dist" in completed.stderr
    assert "model_0000002.pth holds the weights that gave this loss and was not written" in completed.stderr
    assert "Traceback" not in completed.stderr
    assert f"removed {stale}" in completed.stderr and not stale.exists()
    assert sorted(name for name in os.listdir(logs) if ".pth" in name) == [FINAL_CHECKPOINT]
    for name, content in saved.items():
        assert (logs / name).read_bytes() == content, name

    # Resuming again with a sound rate trains with that rate, and config.yaml says so.
    lower_lr = BASE_LR / 2
    result = train(tiny_config("SOLVER.MAX_ITER", "2", "SOLVER.BASE_LR", str(lower_lr)), dataset_dir, "last",
                   str(logs))
    groups = read_checkpoint(result.checkpoint)["optimizer"]["param_groups"]
    assert groups[0]["initial_lr"] == groups[0]["lr"] == lower_lr  # iteration 2 ends the warm-up
    assert load_config(str(logs / "config.yaml")).SOLVER.BASE_LR == lower_lr


def test_resume_follows_the_new_schedule_and_refuses_a_new_seed(dataset_dir, tmp_path):
    logs = tmp_path / "run"
    train(tiny_config("SOLVER.MAX_ITER", "1"), dataset_dir, "none", str(logs))  # STEPS far away: no decay
    first_config = (logs / "config.yaml").read_text()

    with pytest.raises(CheckpointError, match="SOLVER.SEED 1 differs from the checkpoint's 0"):
        train(tiny_config("SOLVER.MAX_ITER", "3", "SOLVER.SEED", "1"), dataset_dir, "last", str(logs))
    with pytest.raises(CheckpointError, match="SOLVER.OPTIMIZER AdamW differs from the checkpoint's SGD"):
        train(tiny_config("SOLVER.MAX_ITER", "3", "SOLVER.OPTIMIZER", "AdamW"), dataset_dir, "last", str(logs))
    assert (logs / "config.yaml").read_text() == first_config  # a refused resume records nothing

    # Warm-up ends at iteration 2, where the new schedule decays by the new GAMMA; the checkpoint's
    # schedule (STEPS 60000, 80000; GAMMA 0.1) would leave the rate at BASE_LR.
    result = train(tiny_config("SOLVER.MAX_ITER", "3", "SOLVER.STEPS", "[2]", "SOLVER.GAMMA", "0.5",
                               "SOLVER.WARMUP_FACTOR", "0.5"), dataset_dir, "last", str(logs))
    assert result.iteration == 3
    used = {event.step: event.value for event in
            EventAccumulator(str(logs), size_guidance={"scalars": 0}).Reload().Scalars("train/lr")}
    assert used[2] == pytest.approx(BASE_LR * (0.5 * 0.5 + 0.5))  # warm-up with the new factor, at 1 of 2
    assert used[3] == pytest.approx(BASE_LR * 0.5)  # past the new step
    checkpoint = read_checkpoint(result.checkpoint)
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == pytest.approx(BASE_LR * 0.5)
    assert checkpoint["scheduler"]["lr_lambdas"][0] == {"warmup_iters": WARMUP_ITERS, "warmup_factor": 0.5,
                                                       "steps": (2,), "gamma": 0.5}
    recorded = load_config(str(logs / "config.yaml")).SOLVER
    assert (list(recorded.STEPS), recorded.GAMMA, recorded.WARMUP_FACTOR, recorded.SEED) == ([2], 0.5, 0.5, 0)


def resume_equals_straight_run(options: list, dataset_dir: str, tmp_path):
    """Trains 2 iterations in one go and 1 + 1 with a resume, asserts equal models and optimizer
    states; returns the straight run, the resumed run's folder and its last checkpoint."""
    straight = train(tiny_config(*options, "SOLVER.MAX_ITER", "2"), dataset_dir, "none", str(tmp_path / "straight"))
    folder = tmp_path / "resumed"
    train(tiny_config(*options, "SOLVER.MAX_ITER", "1"), dataset_dir, "none", str(folder))
    resumed = train(tiny_config(*options, "SOLVER.MAX_ITER", "2"), dataset_dir, "last", str(folder))
    expected, actual = read_checkpoint(straight.checkpoint), read_checkpoint(resumed.checkpoint)
    assert_same_tensors(actual["model"], expected["model"])
    assert_same_optimizer_state(actual["optimizer"]["state"], expected["optimizer"]["state"])
    return straight, folder, actual


def test_adamw_resume_equals_straight_run_and_takes_new_betas(dataset_dir, tmp_path):
    adamw = ["SOLVER.OPTIMIZER", "AdamW", "SOLVER.BASE_LR", "0.001"]
    _, folder, resumed = resume_equals_straight_run(adamw, dataset_dir, tmp_path)
    assert "exp_avg_sq" in resumed["optimizer"]["state"][0]  # AdamW's state, not SGD's momentum
    again = train(tiny_config(*adamw, "SOLVER.MAX_ITER", "3", "SOLVER.ADAM_BETAS", "[0.8, 0.9]"), dataset_dir, "last",
                  str(folder))
    assert read_checkpoint(again.checkpoint)["optimizer"]["param_groups"][0]["betas"] == (0.8, 0.9)


def test_channels_last_training_resumes_exactly_and_its_checkpoint_loads_for_inference(dataset_dir, tmp_path):
    options = ["SOLVER.OPTIMIZER", "AdamW", "SOLVER.BASE_LR", "0.001", "SOLVER.CHANNELS_LAST", "True"]
    straight, _, _ = resume_equals_straight_run(options, dataset_dir, tmp_path)
    assert straight.model.backbone.bottom_up.res5[1].conv2.weight.is_contiguous(memory_format=torch.channels_last)
    # Inference builds the model in the usual order; the trained values load into it unchanged.
    model = load_trained_model(straight.checkpoint)[0]
    assert model.backbone.bottom_up.res5[1].conv2.weight.is_contiguous()
    assert_same_tensors(model.state_dict(), straight.model.state_dict())


def test_tensorboard_scalars_and_pictures(straight_run):
    events = EventAccumulator(straight_run, size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    tags = events.Tags()
    losses = [tag for tag in tags["scalars"] if tag.startswith("train/loss_")]
    assert {"train/loss_classifier", "train/loss_box_reg", "train/loss_objectness", "train/loss_rpn_box_reg",
            "train/loss_global_layering", "train/loss_instance_layering", "train/loss_sem_dist"} <= set(losses)
    for tag in losses + ["train/total_loss", "train/lr", "train/time_per_iter", "train/data_time"]:
        assert [event.step for event in events.Scalars(tag)] == [1, 2, 3, 4], tag
    for step in range(4):
        total = sum(events.Scalars(tag)[step].value for tag in losses)
        assert events.Scalars("train/total_loss")[step].value == pytest.approx(total, rel=1e-5)
    # Linear warm-up from WARMUP_FACTOR x BASE_LR over WARMUP_ITERS, then the base rate.
    warmup = [BASE_LR * (WARMUP_FACTOR + (1 - WARMUP_FACTOR) * i / WARMUP_ITERS) for i in range(WARMUP_ITERS)]
    expected_lr = warmup + [BASE_LR] * 2
    assert [event.value for event in events.Scalars("train/lr")] == pytest.approx(expected_lr, rel=1e-6)
    for tag in ("train/input_ground_truth", "train/prediction", "train/sem_dist"):
        assert [image.step for image in events.Images(tag)] == [2, 4], tag
    picture = events.Images("train/input_ground_truth")[0]
    assert (picture.height, picture.width) == (SCENE.height, SCENE.width)

    saved = load_config(os.path.join(straight_run, "config.yaml"))
    assert saved.MODEL.NUM_CLASSES == 6  # the synthetic dataset's shapes, not the default 90


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ddp_worker(rank, world_size, port, dataset_dir, logs, out):
    """One process of a torchrun-style job: the environment torchrun would set, then ``train``."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world_size))
    torch.set_num_threads(1)
    result = train(tiny_config("SOLVER.MAX_ITER", "3", "SOLVER.VIS_PERIOD", "0"), dataset_dir, "none", logs)
    torch.save(result.model.state_dict(), os.path.join(out, f"rank{rank}.pth"))


def test_two_process_ddp_keeps_weights_identical(dataset_dir, tmp_path):
    logs, out, world_size = str(tmp_path / "run"), str(tmp_path), 2
    mp.spawn(_ddp_worker, args=(world_size, _free_port(), dataset_dir, logs, out), nprocs=world_size, join=True)
    weights = [torch.load(os.path.join(out, f"rank{rank}.pth")) for rank in range(world_size)]
    assert_same_tensors(weights[1], weights[0])

    checkpoint = read_checkpoint(os.path.join(logs, FINAL_CHECKPOINT))
    assert_same_tensors(checkpoint["model"], weights[0])
    assert checkpoint["iteration"] == 3
    assert len(checkpoint["rng"]) == world_size
    assert checkpoint["loader"]["world_size"] == world_size
    assert len([name for name in os.listdir(logs) if name.startswith("events.out.tfevents")]) == 1

    seed_all_rng(tiny_config().SOLVER.SEED)  # rank 0's initial weights, which DDP gives every process
    initial = build_model(tiny_config("MODEL.NUM_CLASSES", "6")).state_dict()
    name = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(weights[0][name], initial[name])
