"""``python amodal_train.py evaluate`` end to end, as a subprocess on a tiny dataset folder."""
import json
import os
import subprocess
import sys


from sln_amodal.data.readers.amodal_coco import write_amodal_coco
from sln_amodal.data.records import AnnotationSet, ImageRecord, ObjectAnnotation
from sln_amodal.structures.masks import encode_mask, mask_to_bbox
from testing import box_mask

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 24, 32
SUMMARY_KEYS = ["AP", "AP50", "AP75", "AR1", "AR10", "AR100"]
BUCKETS = ["all", "none", "partial", "heavy"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def box(y0, x0, y1, x1):
    return box_mask(y0, x0, y1, x1, HEIGHT, WIDTH)


def obj(amodal, visible, category_id, depth_rank):
    return ObjectAnnotation(category_id, encode_mask(amodal), encode_mask(visible), tuple(mask_to_bbox(amodal)),
                            1.0 - visible.sum() / amodal.sum(), depth_rank=depth_rank)


def write_dataset(root):
    front, back = box(0, 0, 10, 12), box(4, 6, 16, 20)
    records = [
        ImageRecord("1.jpg", HEIGHT, WIDTH, 1, [obj(front, front, 1, 1), obj(back, back & ~front, 2, 2)]),
        ImageRecord("2.jpg", HEIGHT, WIDTH, 2, [obj(box(2, 2, 20, 30), box(2, 2, 20, 30), 1, None)]),
    ]
    categories = [{"id": 1, "name": "cup"}, {"id": 2, "name": "box"}]
    os.makedirs(root / "images")
    write_amodal_coco(AnnotationSet(categories, records), str(root / "annotations" / "val.json"))
    results = [
        {"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": encode_mask(front),
         "visible_segmentation": encode_mask(front), "bbox": mask_to_bbox(front), "depth_rank": 1},
        {"image_id": 1, "category_id": 2, "score": 0.8, "segmentation": encode_mask(back),
         "visible_segmentation": encode_mask(back & ~front), "bbox": mask_to_bbox(back), "depth_rank": 2},
        {"image_id": 2, "category_id": 2, "score": 0.7, "segmentation": encode_mask(box(0, 0, 5, 5)),
         "visible_segmentation": encode_mask(box(0, 0, 5, 5)), "bbox": [0, 0, 5, 5], "depth_rank": 1},
        {"image_id": 404, "category_id": 1, "score": 0.5, "segmentation": encode_mask(front),
         "visible_segmentation": encode_mask(front), "bbox": mask_to_bbox(front), "depth_rank": 1},
    ]
    (root / "results.json").write_text(json.dumps(results))


def test_evaluate_writes_metrics_and_curves(tmp_path):
    dataset, out = tmp_path / "dataset", tmp_path / "out"
    write_dataset(dataset)
    completed = subprocess.run(
        [sys.executable, "amodal_train.py", "evaluate", "--dataset", str(dataset),
         "--results", str(dataset / "results.json"), "--out", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["amodal", "amodal_things", "amodal_stuff", "visible", "invisible", "occluded",
                             "depth_order", "hidden_pixels", "overlap_visible", "per_class"]
    for family in ("amodal", "amodal_things", "amodal_stuff"):
        assert list(metrics[family]) == BUCKETS
        assert all(list(summary) == SUMMARY_KEYS for summary in metrics[family].values())
    assert list(metrics["visible"]) == list(metrics["invisible"]) == SUMMARY_KEYS
    assert metrics["invisible"]["AP"] > 0.99  # the back object's hidden part is found exactly
    assert list(metrics["occluded"]) == ["vrsp_AP", "gt_subset_AP"]
    assert metrics["depth_order"] == {"accuracy": 1.0, "pairs": 1, "matched_pairs": 1}
    assert metrics["hidden_pixels"] == {"recall": 1.0, "precision": 1.0, "gt_hidden": 36, "predicted_hidden": 36,
                                        "correct_hidden": 36, "matched_objects": 2}
    assert metrics["overlap_visible"] == {"front": 1.0, "back": 0.0, "pairs": 1, "overlap_pixels": 36}
    assert list(metrics["per_class"]) == ["cup", "box"]
    assert 0 < metrics["amodal"]["all"]["AP"] < 1  # image 2's object is missed
    assert metrics["amodal_stuff"]["all"]["AP"] == -1  # no stuff in this dataset
    assert (out / "pr_curves.png").read_bytes().startswith(PNG_SIGNATURE)
    assert "n/a" in completed.stdout and "Depth order: accuracy 1.000" in completed.stdout
    assert "Hidden pixels of the 2 matched objects: recall 1.000" in completed.stdout
    assert "called visible: front 1.000 (ideal 1), back 0.000 (ideal 0)" in completed.stdout
    assert "detections ignored: image not in the ground truth: 1" in completed.stdout


def test_evaluate_names_a_missing_results_file(tmp_path):
    dataset = tmp_path / "dataset"
    write_dataset(dataset)
    completed = subprocess.run(
        [sys.executable, "amodal_train.py", "evaluate", "--dataset", str(dataset),
         "--results", str(tmp_path / "missing.json"), "--out", str(tmp_path / "out")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode != 0
    assert "missing.json" in completed.stderr and "Traceback" not in completed.stderr
