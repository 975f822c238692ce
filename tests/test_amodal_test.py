"""Trained-model checkpoints end to end: load_trained_model, run_inference, ``amodal_test.py`` and
``amodal_train.py evaluate --model`` on a tiny, randomly initialised SLN model (no training needed to
check formats)."""
import json
import os
import shutil
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import amodal_test
import amodal_train
from sln_amodal.config import get_default_config
from sln_amodal.data.catalog import resolve_split
from sln_amodal.data.dataset import build_dataset
from sln_amodal.data.loader import build_eval_loader
from sln_amodal.data.synthetic import SceneParams, synthetic_categories, write_synthetic_dataset
from sln_amodal.engine.checkpoint import CheckpointError, load_trained_model, save_checkpoint
from sln_amodal.data.records import category_ids_of
from sln_amodal.engine.inference import run_inference
from sln_amodal.modeling.build import build_model
from sln_amodal.structures.masks import decode_rle, mask_to_bbox
from testing import run_script

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_VAL_IMAGES = 3
RESULT_KEYS = {"image_id", "category_id", "score", "bbox", "segmentation", "visible_segmentation", "depth_rank"}
METRIC_FAMILIES = ["amodal", "amodal_things", "amodal_stuff", "visible", "invisible", "occluded", "depth_order",
                   "hidden_pixels", "overlap_visible", "per_class"]


def tiny_config():
    """The SLN at test scale: ResNet-18, thin FPN and heads, ~150 px inputs, few proposals. A score
    threshold of 0 lets the untrained model's (flat) class scores through as detections."""
    cfg = get_default_config()
    cfg.MODEL.ROI_MASK_HEAD.NAME = "SLNHead"
    cfg.MODEL.WEIGHTS = "none"
    cfg.MODEL.NUM_CLASSES = len(synthetic_categories())
    cfg.MODEL.BACKBONE.DEPTH = 18
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.SLN.GLOBAL_CONV_DIMS = (16,)
    cfg.MODEL.SLN.INSTANCE_CONV_DIMS = (32, 32)
    cfg.MODEL.SLN.DECONV_DIM = 32
    cfg.MODEL.SLN.SEM_DIST_CONV_DIMS = (16,)
    cfg.INPUT.MIN_SIZE_TRAIN = (128,)
    cfg.INPUT.MAX_SIZE_TRAIN = 160
    cfg.INPUT.MIN_SIZE_TEST = 128
    cfg.INPUT.MAX_SIZE_TEST = 160
    cfg.MODEL.RPN.PRE_NMS_TOPK_TEST = 100
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 4
    cfg.DATALOADER.IMS_PER_BATCH = 2
    return cfg


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(checkpoint path, synthetic dataset folder, config) shared by the tests of this module."""
    root = tmp_path_factory.mktemp("trained")
    cfg = tiny_config()
    torch.manual_seed(0)
    model = build_model(cfg)
    path = save_checkpoint(str(root / "run"), "model_final.pth", {
        "model": model.state_dict(), "config": cfg.dump(), "categories": synthetic_categories(), "iteration": 0,
    })
    params = SceneParams(height=96, width=128, min_objects=2, max_objects=3, occlusion=0.7, min_object_size=0.15,
                         max_object_size=0.3, min_visible_area=16)
    write_synthetic_dataset(str(root / "data"), seed=0, num_train=0, num_val=NUM_VAL_IMAGES, params=params,
                            show_progress=False)
    return path, root / "data", cfg




def test_load_trained_model_rebuilds_the_saved_model(trained):
    path, _, cfg = trained
    model, loaded_cfg, categories = load_trained_model(path, ["MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE", "7"])
    assert categories == synthetic_categories()
    assert loaded_cfg.MODEL.ROI_MASK_HEAD.NAME == "SLNHead" and loaded_cfg.MODEL.BACKBONE.DEPTH == 18
    assert loaded_cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE == 7
    assert model.roi_heads.detections_per_image == 7 and not model.training
    saved = torch.load(path, weights_only=True)["model"]
    assert saved.keys() == model.state_dict().keys()
    assert all(torch.equal(saved[k], v) for k, v in model.state_dict().items())


def test_load_trained_model_names_files_that_are_not_checkpoints(trained, tmp_path):
    path, _, _ = trained
    bare = tmp_path / "weights.pth"
    torch.save(torch.load(path, weights_only=True)["model"], bare)
    with pytest.raises(CheckpointError, match=rf"{bare}: not an SLN-Amodal training checkpoint: no 'model', 'config'"):
        load_trained_model(str(bare))
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match=rf"{text}: not a readable PyTorch checkpoint"):
        load_trained_model(str(text))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_trained_model(str(tmp_path / "missing.pth"))


def test_run_inference_covers_each_readable_image_once(trained, tmp_path):
    path, data, _ = trained
    dataset_dir = tmp_path / "data"
    shutil.copytree(data, dataset_dir)
    (dataset_dir / "images" / "val" / "000000.png").write_bytes(b"broken")
    model, cfg, categories = load_trained_model(path, ["DATALOADER.NUM_WORKERS", "0"])
    annotations, image_root = resolve_split(str(dataset_dir), "val", "AMODAL_COCO")
    loader = build_eval_loader(build_dataset(cfg, annotations, image_root, train=False), 2, 0)
    model.train()
    results, inferred = run_inference(model, loader, "cpu", category_ids_of(categories), progress=False)
    assert model.training  # the caller's mode comes back
    assert inferred == {2, 3}
    # Image 1 is unreadable: the dataset stands image 2 in for it, which is inferred once all the same.
    assert sorted({r["image_id"] for r in results}) == [2, 3]
    per_image = [sum(r["image_id"] == i for r in results) for i in (2, 3)]
    assert per_image == [cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE] * 2
    assert all(set(r) == RESULT_KEYS and r["segmentation"]["size"] == [96, 128] for r in results)


def write_test_folder(folder):
    rng = np.random.default_rng(0)
    folder.mkdir()
    Image.fromarray((rng.random((70, 90)) * 255).astype(np.uint8), mode="L").save(folder / "grey.jpg")
    Image.fromarray((rng.random((64, 100, 4)) * 255).astype(np.uint8), mode="RGBA").save(folder / "rgba.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.bmp").write_bytes(b"BM not really")


def test_amodal_test_writes_overlays_and_detections(trained, tmp_path):
    path, _, _ = trained
    images, out = tmp_path / "images", tmp_path / "out"
    write_test_folder(images)
    completed = run_script("amodal_test.py", "--images", str(images), "--model", path, "--out", str(out),
                           "--score-thresh", "0", "--sem-dist", "--device", "cpu")
    assert completed.returncode == 0, completed.stderr
    assert sorted(os.listdir(out)) == ["grey.json", "grey.png", "grey_sem_dist.png",
                                       "rgba.json", "rgba.png", "rgba_sem_dist.png"]
    assert "notes.txt: not an image file" in completed.stderr
    assert "broken.bmp" in completed.stderr
    # Log lines stand on their own lines, never glued to the progress bar's.
    lines = completed.stderr.replace("\r", "\n").splitlines()
    assert [line for line in lines if "WARNING" in line and not line.startswith("WARNING")] == []
    assert "2 images done, 1 unreadable and 1 other files skipped, 8 detections written (8 drawn" in completed.stdout
    for name, size in (("grey", (70, 90)), ("rgba", (64, 100))):
        overlay = np.asarray(Image.open(out / f"{name}.png"))
        assert overlay.shape == (*size, 3) and overlay.dtype == np.uint8
        entries = json.loads((out / f"{name}.json").read_text())
        assert len(entries) == 4
        for entry in entries:
            assert set(entry) == RESULT_KEYS | {"file_name"}
            assert entry["file_name"].startswith(name) and entry["segmentation"]["size"] == list(size)
            assert entry["category_id"] in category_ids_of(synthetic_categories())
        assert sorted(e["depth_rank"] for e in entries) == [1, 2, 3, 4]
    grey = np.asarray(Image.open(images / "grey.jpg").convert("RGB"))
    assert (np.asarray(Image.open(out / "grey.png")) != grey).any()  # at least the labels are drawn


def test_amodal_test_runs_large_photos_at_the_working_size(trained, tmp_path, monkeypatch):
    """A photo above VIS.MAX_WORKING_MEGAPIXELS reaches the model scaled down to it; boxes, masks and
    overlay come back at the photo's size. A near-zero AMODAL_THRESH makes each amodal mask fill its
    box, so mask and box must cover the same photo pixels (up to one working pixel)."""
    path, _, _ = trained
    photo_size, working = (240, 360), (120, 180)  # 0.0864 MP scaled to the 0.0217 MP cap
    images, out = tmp_path / "images", tmp_path / "out"
    images.mkdir()
    pixels = np.random.default_rng(0).random((*photo_size, 3))
    Image.fromarray((pixels * 255).astype(np.uint8)).save(images / "photo.png")
    model_inputs = []

    def load_and_watch(*args):
        model, cfg, categories = load_trained_model(*args)
        model.register_forward_pre_hook(lambda _, inputs: model_inputs.extend(tuple(i.shape) for i in inputs[0]))
        return model, cfg, categories

    monkeypatch.setattr(amodal_test, "load_trained_model", load_and_watch)
    amodal_test.main(["--images", str(images), "--model", path, "--out", str(out), "--score-thresh", "0",
                      "--device", "cpu", "VIS.MAX_WORKING_MEGAPIXELS", "0.0217",
                      "MODEL.SLN.AMODAL_THRESH", "0.000001"])
    assert model_inputs == [(3, *working)]
    assert np.asarray(Image.open(out / "photo.png")).shape == (*photo_size, 3)
    entries = json.loads((out / "photo.json").read_text())
    assert len(entries) == 4
    working_pixel = photo_size[0] / working[0]
    for entry in entries:
        assert entry["segmentation"]["size"] == entry["visible_segmentation"]["size"] == list(photo_size)
        amodal = decode_rle(entry["segmentation"])
        assert amodal.any()
        assert np.abs(np.subtract(mask_to_bbox(amodal), entry["bbox"])).max() <= working_pixel + 1


def test_amodal_test_names_a_bad_checkpoint(tmp_path):
    images = tmp_path / "images"
    write_test_folder(images)
    bad = tmp_path / "bad.pth"
    bad.write_text("nonsense")
    with pytest.raises(SystemExit) as exit_info:
        amodal_test.main(["--images", str(images), "--model", str(bad), "--out", str(tmp_path / "out")])
    assert str(exit_info.value).startswith(f"error: {bad}: not a readable PyTorch checkpoint")


def test_evaluate_runs_the_model_and_scores_it(trained, tmp_path):
    path, data, _ = trained
    out = tmp_path / "out"
    completed = run_script("amodal_train.py", "evaluate", "--dataset", str(data), "--model", path,
                           "--out", str(out), "DATALOADER.NUM_WORKERS", "0")
    assert completed.returncode == 0, completed.stderr
    results = json.loads((out / "results.json").read_text())
    assert len(results) == NUM_VAL_IMAGES * 4
    assert {r["image_id"] for r in results} == set(range(1, NUM_VAL_IMAGES + 1))
    assert all(set(r) == RESULT_KEYS for r in results)
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == METRIC_FAMILIES
    assert list(metrics["amodal"]) == ["all", "none", "partial", "heavy"]
    assert list(metrics["per_class"]) == [c["name"] for c in synthetic_categories()]
    assert (out / "pr_curves.png").is_file()
    assert f"wrote 12 detections on 3 of 3 images to {out / 'results.json'}" in completed.stdout
    assert "Depth order:" in completed.stdout


def test_evaluate_leaves_unreadable_images_out_of_scoring(trained, tmp_path, caplog):
    path, data, _ = trained
    dataset_dir = tmp_path / "data"
    shutil.copytree(data, dataset_dir)
    (dataset_dir / "images" / "val" / "000000.png").write_bytes(b"broken")
    amodal_train.main(["evaluate", "--dataset", str(dataset_dir), "--model", path, "--out", str(tmp_path / "out"),
                       "DATALOADER.NUM_WORKERS", "0"])
    assert "1 unreadable image(s) left out of scoring (their ground truth is not counted as missed): val/000000.png" \
        in caplog.text
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert {r["image_id"] for r in results} == {2, 3}


def test_evaluate_needs_exactly_one_of_model_and_results(capsys):
    parser = amodal_train.build_parser()
    for extra in (["--model", "a.pth", "--results", "r.json"], []):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["evaluate", "--dataset", "data", "--out", "out", *extra])
        assert exit_info.value.code == 2
    errors = capsys.readouterr().err
    assert "argument --results: not allowed with argument --model" in errors
    assert "one of the arguments --model --results is required" in errors


def test_diagnose_layering_tabulates_every_cell_of_the_ground_truth_rois(trained):
    path, data, cfg = trained
    sys.path.insert(0, os.path.join(REPO_ROOT, "scripts"))
    try:
        import diagnose_layering
    finally:
        sys.path.pop(0)
    report = diagnose_layering.main(["--model", path, "--dataset", str(data)])
    annotations, _ = resolve_split(str(data), "val", "AMODAL_COCO")
    num_objects = sum(len(record.objects) for record in annotations.records)
    resolution = cfg.MODEL.SLN.ROI_RESOLUTION
    assert sum(report["cells"].values()) == num_objects * resolution**2
    assert list(report["cells"]) == ["background", "visible", "hidden-1", "hidden-2"]
    for table in ("instance_classifier", "sem_dist_level"):
        for level, shares in report[table].items():
            if report["cells"][level]:
                assert sum(shares.values()) == pytest.approx(1.0, abs=2.5e-3)  # four shares rounded to 3 digits
