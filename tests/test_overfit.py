"""The SLN learns: a tiny model trained for a bounded number of iterations on four synthetic images
detects and segments them, as the evaluator measures it."""
import shutil

from sln_amodal.config import get_default_config
from sln_amodal.data.dataset import build_dataset
from sln_amodal.data.loader import build_eval_loader
from sln_amodal.data.readers.amodal_coco import read_amodal_coco
from sln_amodal.data.records import DropLog
from sln_amodal.data.synthetic import SceneParams, write_synthetic_dataset
from sln_amodal.data.records import category_ids_of
from sln_amodal.engine.inference import run_inference
from sln_amodal.engine.trainer import train
from sln_amodal.evaluation import AmodalEvaluator
from sln_amodal.evaluation.detections import detections_from_results

# The layering recipe of the quickstart (overlap-weighted losses, dilated trunks, the single-layer
# RoI context, integer sem-dist levels) at tiny scale.
ITERATIONS = 450
# The learning rate drops tenfold for the last fifth. At a constant rate the end point depended on
# rounding: SOLVER.SEED 0 to 3 gave visible AP50 0.11, 0.94, 1.0 and 1.0 (the first calling 3273
# cells hidden for 691), and storing one tensor channels-last was enough to move a seed from pass to
# fail. With the drop the same four seeds give 0.91 to 1.0 (issue 12 note of 2026-12-07).
DECAY_AT = ITERATIONS * 4 // 5
TINY_SLN = [
    "MODEL.ROI_MASK_HEAD.NAME", "SLNHead",
    "MODEL.BACKBONE.DEPTH", "18", "MODEL.BACKBONE.NORM", "GN", "MODEL.BACKBONE.TRAINABLE_LAYERS", "5",
    "MODEL.FPN.OUT_CHANNELS", "32", "MODEL.ROI_BOX_HEAD.FC_DIM", "128",
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "32",
    "MODEL.ANCHOR_GENERATOR.SIZES", "[[16], [32], [64], [128], [256]]",
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "200", "MODEL.RPN.POST_NMS_TOPK_TRAIN", "100",
    "MODEL.RPN.PRE_NMS_TOPK_TEST", "200", "MODEL.RPN.POST_NMS_TOPK_TEST", "50",
    "MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO", "1", "MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO", "1",
    "MODEL.SLN.GLOBAL_CONV_DIMS", "[16]", "MODEL.SLN.INSTANCE_CONV_DIMS", "[32, 32]",
    "MODEL.SLN.DECONV_DIM", "32", "MODEL.SLN.SEM_DIST_CONV_DIMS", "[16, 16]",
    "MODEL.SLN.OVERLAP_CELL_WEIGHT", "5", "MODEL.SLN.INSTANCE_CONV_DILATIONS", "[2, 4]",
    "MODEL.SLN.SEM_DIST_CONV_DILATIONS", "[2, 4]", "MODEL.SLN.INSTANCE_ROI_CONTEXT", "single_layer",
    "MODEL.SLN.DIST_SATURATION", "1.0",
    "INPUT.MIN_SIZE_TRAIN", "[64]", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "64",
    "INPUT.MAX_SIZE_TEST", "64", "INPUT.HFLIP_PROB", "0.0",
    "DATALOADER.IMS_PER_BATCH", "4", "DATALOADER.NUM_WORKERS", "0",
    "SOLVER.BASE_LR", "0.02", "SOLVER.REFERENCE_BATCH_SIZE", "0", "SOLVER.MAX_ITER", str(ITERATIONS),
    "SOLVER.STEPS", f"[{DECAY_AT}]", "SOLVER.WARMUP_ITERS", "20", "SOLVER.CLIP_GRAD_NORM", "10.0",
    "SOLVER.CHECKPOINT_PERIOD", str(ITERATIONS), "SOLVER.VIS_PERIOD", "0", "SOLVER.LOG_PERIOD", "10",
]


def test_tiny_sln_overfits_four_synthetic_images(tmp_path):
    data = tmp_path / "data"
    params = SceneParams(height=64, width=64, min_objects=2, max_objects=3, occlusion=0.6,
                         min_object_size=0.2, max_object_size=0.35, min_visible_area=30)
    write_synthetic_dataset(str(data), seed=5, num_train=4, num_val=0, params=params, show_progress=False)
    # Evaluate on the very images it trained on.
    shutil.copy(data / "annotations" / "train.json", data / "annotations" / "val.json")
    cfg = get_default_config()
    cfg.merge_from_list(TINY_SLN)

    result = train(cfg, str(data), "none", str(tmp_path / "logs"))

    annotations = read_amodal_coco(str(data / "annotations" / "val.json"))
    cfg.MODEL.NUM_CLASSES = len(annotations.categories)
    loader = build_eval_loader(build_dataset(cfg, annotations, str(data / "images"), train=False), 2, 0)
    results, _ = run_inference(result.model, loader, "cpu", category_ids_of(annotations.categories), progress=False)
    detections = detections_from_results(results, annotations, DropLog("overfit results"))
    metrics = AmodalEvaluator(annotations, detections, cfg.EVAL).evaluate().metrics
    assert metrics["amodal"]["all"]["AP50"] >= 0.9, metrics["amodal"]["all"]
    assert metrics["visible"]["AP50"] >= 0.5, metrics["visible"]
    assert metrics["depth_order"]["matched_pairs"] > 0
    assert metrics["depth_order"]["accuracy"] >= 0.9, metrics["depth_order"]
    assert metrics["hidden_pixels"]["recall"] >= 0.8, metrics["hidden_pixels"]
