"""A mask branch defined here, outside the package, and registered from this file: a config naming it
trains 2 iterations, is evaluated and draws with amodal_test.py, through the public contract of
``sln_amodal.modeling.mask_branches`` only (the package is not edited)."""
import json
import os

import numpy as np
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import amodal_test
import amodal_train
from sln_amodal.data.synthetic import SceneParams, write_synthetic_dataset
from sln_amodal.modeling import MaskBranch, register_mask_branch
from sln_amodal.modeling.mask_branches.roi_masks import class_mask_loss, mask_outputs, roi_mask_targets
from sln_amodal.modeling.poolers import roi_pooler_from_config

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICKSTART = os.path.join(REPO_ROOT, "sln_amodal", "config", "yaml", "quickstart.yaml")
TOY_PICTURE = "toy_amodal"


@register_mask_branch("TestToyAmodalVisibleBranch")
class ToyAmodalVisibleBranch(MaskBranch):
    """One 1x1 convolution on the pooled features gives an amodal and a visible map per RoI."""

    pasted_fields = ("amodal_probs", "visible_probs")
    debug_picture_names = (TOY_PICTURE,)

    def __init__(self, *, pooler, in_channels: int, mask_thresh: float):
        super().__init__()
        self.pooler = pooler
        self.mask_thresh = mask_thresh
        self.maps = torch.nn.Conv2d(in_channels, 2, 1)

    @classmethod
    def from_config(cls, cfg, backbone):
        m = cfg.MODEL.ROI_MASK_HEAD
        return {"pooler": roi_pooler_from_config(cfg, backbone, m.POOLER_RESOLUTION, m.POOLER_SAMPLING_RATIO),
                "in_channels": backbone.out_channels, "mask_thresh": m.MASK_THRESH}

    def forward(self, features, rois, image_sizes, targets=None):
        logits = F.interpolate(self.maps(self.pooler(features, rois.boxes)), scale_factor=2)  # (R, 2, M, M)
        amodal, visible = logits[:, :1], logits[:, 1:]
        if self.training:
            size, labels = logits.shape[-1], torch.cat(rois.labels)
            return {name: class_mask_loss(maps, labels, roi_mask_targets(rois, [t[key] for t in targets], size))
                    for name, maps, key in (("loss_toy_amodal", amodal, "amodal_masks"),
                                            ("loss_toy_visible", visible, "visible_masks"))}
        counts = [len(b) for b in rois.boxes]
        return [{"amodal_probs": a, "visible_probs": v}
                for a, v in zip(amodal.sigmoid().split(counts), visible.sigmoid().split(counts))]

    def finalize(self, detection, image_size):
        return mask_outputs(detection, detection["amodal_probs"][:, 0], detection["visible_probs"][:, 0],
                            self.mask_thresh)

    def debug_pictures(self, detection, target, max_rois, match_iou):
        best = detection["scores"].argsort(descending=True)[:max_rois]
        grey = (detection["amodal_probs"][best, 0].sum(dim=0).clamp(max=1) * 255).to(torch.uint8)
        return {TOY_PICTURE: np.repeat(grey.cpu().numpy()[..., None], 3, axis=2)}


def test_a_branch_registered_outside_the_package_trains_evaluates_and_draws(tmp_path):
    data = str(tmp_path / "data")
    params = SceneParams(height=96, width=96, min_objects=2, max_objects=3, occlusion=0.7, min_object_size=0.15,
                         max_object_size=0.3, min_visible_area=16)
    write_synthetic_dataset(data, seed=0, num_train=4, num_val=2, params=params, show_progress=False)
    run = str(tmp_path / "run")
    amodal_train.main(["train", "--dataset", data, "--model", "none", "--config", QUICKSTART, "--logs", run,
                       "MODEL.ROI_MASK_HEAD.NAME", "TestToyAmodalVisibleBranch", "SOLVER.MAX_ITER", "2",
                       "SOLVER.STEPS", "[1]", "SOLVER.WARMUP_ITERS", "1", "SOLVER.CHECKPOINT_PERIOD", "2",
                       "SOLVER.VIS_PERIOD", "2", "DATALOADER.NUM_WORKERS", "0",
                       "MODEL.ROI_HEADS.SCORE_THRESH_TEST", "0.0"])
    model_file = os.path.join(run, "model_final.pth")
    assert os.path.exists(model_file)
    events = EventAccumulator(run).Reload()
    assert {"train/loss_toy_amodal", "train/loss_toy_visible"} <= set(events.Tags()["scalars"])
    assert f"train/{TOY_PICTURE}" in events.Tags()["images"]  # the branch's own picture, drawn by the trainer

    amodal_train.main(["evaluate", "--dataset", data, "--model", model_file, "--out", str(tmp_path / "eval")])
    with open(tmp_path / "eval" / "metrics.json") as f:
        metrics = json.load(f)
    assert {"amodal", "visible", "depth_order"} <= set(metrics)

    images = tmp_path / "photos"
    images.mkdir()
    for name in sorted(os.listdir(os.path.join(data, "images", "val"))):
        os.link(os.path.join(data, "images", "val", name), images / name)
    out = tmp_path / "drawn"
    amodal_test.main(["--images", str(images), "--model", model_file, "--out", str(out), "--score-thresh", "0",
                      "--debug-pictures", "--device", "cpu"])
    stems = [name[:-len(".png")] for name in sorted(os.listdir(images))]
    assert sorted(os.listdir(out)) == sorted(f"{stem}{suffix}" for stem in stems
                                             for suffix in (".json", ".png", f"_{TOY_PICTURE}.png"))
