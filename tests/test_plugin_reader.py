"""A dataset reader registered from this file, outside the package: ``train --data_type`` reads its
layout through the registry (converted and cached like the built-in types), and its converter
command line comes from the same registration."""
import json
import os
import shutil

import amodal_train
from sln_amodal.data.catalog import resolve_split
from sln_amodal.data.data_types import DataType, SplitLayout, data_type_names, register_data_type
from sln_amodal.data.readers.amodal_coco import read_amodal_coco
from sln_amodal.data.synthetic import SceneParams, write_synthetic_dataset

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO_ROOT, "sln_amodal", "config", "yaml", "quickstart.yaml")
READ = []  # the sources the toy reader was called on


def read_toy(path, strict=False, log=None, image_root=None):
    """The toy format: amodal COCO JSON wrapped in {"toy": ...}."""
    READ.append(path)
    with open(path) as f:
        wrapped = json.load(f)["toy"]
    unwrapped = path + ".unwrapped.json"
    with open(unwrapped, "w") as f:
        json.dump(wrapped, f)
    return read_amodal_coco(unwrapped, strict, log)


register_data_type(DataType(
    "TOY", read_toy,
    splits={split: SplitLayout((f"labels/{split}.toy",), "pictures") for split in ("train", "val")},
))


def toy_dataset(root) -> str:
    """A synthetic dataset rewritten in the toy layout: labels/{split}.toy and pictures/."""
    synthetic = str(root / "synthetic")
    params = SceneParams(height=96, width=96, min_objects=2, max_objects=3, occlusion=0.7, min_object_size=0.15,
                         max_object_size=0.3, min_visible_area=16)
    write_synthetic_dataset(synthetic, seed=0, num_train=4, num_val=2, params=params, show_progress=False)
    toy = root / "toy"
    (toy / "labels").mkdir(parents=True)
    for split in ("train", "val"):
        with open(os.path.join(synthetic, "annotations", f"{split}.json")) as f:
            content = json.load(f)
        with open(toy / "labels" / f"{split}.toy", "w") as f:
            json.dump({"toy": content}, f)
    shutil.copytree(os.path.join(synthetic, "images"), toy / "pictures")
    return str(toy)


def test_a_reader_registered_outside_the_package_is_read_by_train(tmp_path):
    assert "TOY" in data_type_names()
    dataset = toy_dataset(tmp_path)
    annotations, image_root = resolve_split(dataset, "val", "TOY")
    assert len(annotations.records) == 2 and image_root == os.path.join(dataset, "pictures")
    run = str(tmp_path / "run")
    amodal_train.main(["train", "--dataset", dataset, "--data_type", "toy", "--model", "none", "--config", QUICKSTART,
                       "--logs", run, "SOLVER.MAX_ITER", "2", "SOLVER.STEPS", "[1]", "SOLVER.WARMUP_ITERS", "1",
                       "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.VIS_PERIOD", "0", "DATALOADER.NUM_WORKERS", "0"])
    assert os.path.exists(os.path.join(run, "model_final.pth"))
    assert READ[-1] == os.path.join(dataset, "labels", "train.toy")  # converted through the registry
    cached = os.listdir(os.path.join(dataset, ".sln_cache"))
    assert any(name.startswith("toy_train_") for name in cached)
