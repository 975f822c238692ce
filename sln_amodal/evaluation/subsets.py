"""Evaluation subsets: which ground truth counts, and which unmatched detections are left out.

A subset never changes the IoUs, only ignore flags (as COCOeval's area ranges do):
- an ignored ground truth neither counts as a positive nor as a miss, and a detection matched to
  it is ignored too;
- an unmatched detection counts as a false positive unless the subset leaves it out. Occlusion
  buckets and things/stuff never leave one out (a detection has no ground-truth occlusion rate);
  VRSP-Net's mAP(Occluded) leaves out those whose own predicted visible fraction is outside its range,
  and the invisible-mask subset those that predict no hidden part.
Crowd ground truth is always ignored, as in COCO.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .hidden import HiddenParts
from .inputs import EvalInputs

# Which ground truth a things/stuff split keeps: None keeps both.
STUFF_SPLITS = {"both": None, "things": False, "stuff": True}


@dataclass
class Subset:
    name: str
    gt_ignore: np.ndarray  # (G,) bool
    dt_ignore_unmatched: np.ndarray  # (D,) bool


def all_objects(inputs: EvalInputs) -> Subset:
    return Subset("all", inputs.gt_crowd.copy(), np.zeros(len(inputs.dt_score), dtype=bool))


def occlusion_subsets(inputs: EvalInputs, buckets: dict, split: str) -> list[Subset]:
    """amodalAPI's occlusion buckets ``{name: (low, high)}`` (inclusive) within a things/stuff split."""
    wanted_stuff = STUFF_SPLITS[split]
    outside_split = np.zeros_like(inputs.gt_crowd) if wanted_stuff is None else inputs.gt_stuff != wanted_stuff
    subsets = []
    for name, (low, high) in buckets.items():
        outside_bucket = (inputs.gt_occlusion < low) | (inputs.gt_occlusion > high)
        subsets.append(Subset(name, inputs.gt_crowd | outside_split | outside_bucket,
                              np.zeros(len(inputs.dt_score), dtype=bool)))
    return subsets


def vrsp_occluded_subset(inputs: EvalInputs, occluded_thresh: float, dt_hidden: HiddenParts) -> Subset:
    """VRSP-Net's mAP(Occluded): COCOeval with the visible fraction in place of the area.

    Its range is [0, 1 - occluded_thresh] (COCOeval's inclusive bounds). The ground truth's visible
    fraction is 1 - occlusion rate; an unmatched detection is judged by its own |visible| / |amodal|
    (visible clipped to amodal, as VRSP-Net multiplies the masks: ``dt_hidden`` holds both areas).
    A detection with an empty amodal mask has no fraction (NaN in VRSP-Net, which fails both range
    tests): it stays a false positive.
    """
    high = 1.0 - occluded_thresh
    gt_fraction = 1.0 - inputs.gt_occlusion
    amodal_area = dt_hidden.amodal_area
    dt_fraction = np.divide(dt_hidden.visible_area, amodal_area, out=np.full(len(amodal_area), np.nan),
                            where=amodal_area > 0)
    return Subset("vrsp_occluded", inputs.gt_crowd | (gt_fraction < 0) | (gt_fraction > high),
                  (dt_fraction < 0) | (dt_fraction > high))


def gt_occluded_subset(inputs: EvalInputs, occluded_thresh: float) -> Subset:
    """Ground truth occluded more than ``occluded_thresh``; every unmatched detection counts."""
    return Subset("gt_occluded", inputs.gt_crowd | (inputs.gt_occlusion <= occluded_thresh),
                  np.zeros(len(inputs.dt_score), dtype=bool))


def invisible_subset(inputs: EvalInputs, gt_hidden: HiddenParts, dt_hidden: HiddenParts) -> Subset:
    """The invisible-mask AP's subset: COCOeval with the hidden pixel count as the area, range [1, inf).

    Ground truth with an empty hidden part (unoccluded, by its masks) is ignored, and so is an
    unmatched detection that predicts no hidden part, as COCOeval ignores one outside the area
    range. Such a detection has IoU 0 with every hidden part, so it never matches at all: it makes
    no claim on occluded regions and is neither a true nor a false positive. Ignored ground truth
    has nothing a detection could overlap either, so the only ignored ground truth a detection can
    match is a crowd region, and that detection is ignored, as in COCO.
    """
    return Subset("invisible", inputs.gt_crowd | (gt_hidden.area == 0), dt_hidden.area == 0)
