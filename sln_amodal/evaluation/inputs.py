"""Ground truth and detections as flat arrays, grouped and ordered exactly as COCOeval orders them.

A *group* is what COCOeval matches within: one (image, category) pair, or one image when
categories are not used (``use_cats=False``). Ground truth and detections are sorted so that each
group is a contiguous slice of both:
- ground truth by (image id, category id), file order inside (COCOeval's ``_gts`` order);
- detections by (image id, group), then by descending score with ties kept in (category id, file)
  order (COCOeval's stable mergesort), and only the first ``max_detections`` of each group kept.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from ..data.records import AnnotationSet, ImageRecord
from .detections import Detections


@dataclass
class Groups:
    """P groups as slices ``[start, start + count)`` of the ground truth and detection arrays."""

    image: np.ndarray  # (P,) image index
    gt_start: np.ndarray  # (P,) int64
    gt_count: np.ndarray
    dt_start: np.ndarray
    dt_count: np.ndarray

    def __len__(self) -> int:
        return len(self.image)


@dataclass
class EvalInputs:
    records: list[ImageRecord]  # sorted by image id; image index i is records[i]
    category_ids: np.ndarray  # (K,) sorted dataset category ids; category index k is category_ids[k]
    category_names: list[str]
    use_cats: bool
    # Ground truth, (image, category, file) order.
    gt_image: np.ndarray  # (G,) image index
    gt_category: np.ndarray  # (G,) category index
    gt_object: np.ndarray  # (G,) index into its record's ``objects``
    gt_crowd: np.ndarray  # (G,) bool
    gt_stuff: np.ndarray  # (G,) bool
    gt_occlusion: np.ndarray  # (G,) float64 occlusion rate
    gt_depth_rank: np.ndarray  # (G,) int64, 1 = front-most, 0 = unknown
    gt_amodal: list[dict]
    gt_visible: list[dict]
    # Detections, (image, group, descending score) order.
    dt_image: np.ndarray  # (D,) image index
    dt_category: np.ndarray  # (D,) category index
    dt_rank: np.ndarray  # (D,) position within its group, 0 = highest score
    dt_score: np.ndarray  # (D,) float64
    dt_amodal: list[dict]
    dt_visible: list[dict]
    groups: Groups

    @property
    def num_eval_categories(self) -> int:
        """Categories precision is accumulated over: all of them, or one pooled class."""
        return len(self.category_ids) if self.use_cats else 1

    def eval_category(self, category: np.ndarray) -> np.ndarray:
        """Category index as accumulated: itself, or 0 when categories are pooled."""
        return category if self.use_cats else np.zeros_like(category)


def prepare_inputs(ground_truth: AnnotationSet, detections: Detections, max_detections: int,
                   use_cats: bool) -> EvalInputs:
    records = sorted(ground_truth.records, key=lambda r: r.image_id)
    image_ids = np.array([r.image_id for r in records], dtype=np.int64)
    duplicated = image_ids[1:][image_ids[1:] == image_ids[:-1]]
    if duplicated.size:
        raise ValueError(f"the ground truth lists image id {int(duplicated[0])} more than once")
    categories = sorted(ground_truth.categories, key=lambda c: c["id"])
    category_ids = np.array([c["id"] for c in categories], dtype=np.int64)
    category_index = {int(c): k for k, c in enumerate(category_ids)}

    objects = [(i, j, obj) for i, record in enumerate(records) for j, obj in enumerate(record.objects)]
    unknown = next((obj.category_id for _, _, obj in objects if obj.category_id not in category_index), None)
    if unknown is not None:
        raise ValueError(f"a ground-truth object has category {unknown}, which the categories do not list")
    gt_image = np.array([i for i, _, _ in objects], dtype=np.int64)
    gt_category = np.array([category_index[obj.category_id] for _, _, obj in objects], dtype=np.int64)
    gt_order = np.lexsort((gt_category, gt_image))  # stable: file order inside each (image, category)
    gt_objects = [objects[n][2] for n in gt_order]

    if not (np.isin(detections.image_ids, image_ids).all() and np.isin(detections.category_ids, category_ids).all()):
        raise ValueError("detections name images or categories the ground truth lacks; "
                         "read them with detections_from_results, which sets those aside")
    dt_image = np.searchsorted(image_ids, detections.image_ids)
    dt_category = np.searchsorted(category_ids, detections.category_ids)
    dt_group_category = dt_category if use_cats else np.zeros_like(dt_category)
    # np.lexsort is stable, so equal scores keep (category, file) order as COCOeval's mergesort does.
    dt_order = np.lexsort((dt_category, -detections.scores, dt_group_category, dt_image))
    num_group_categories = len(category_ids) if use_cats else 1
    dt_key = (dt_image * num_group_categories + dt_group_category)[dt_order]
    dt_rank = _rank_in_runs(dt_key)
    kept = dt_rank < max_detections
    dt_order, dt_key, dt_rank = dt_order[kept], dt_key[kept], dt_rank[kept]

    gt_image, gt_category = gt_image[gt_order], gt_category[gt_order]
    gt_key = gt_image * num_group_categories + (gt_category if use_cats else 0)
    keys = np.union1d(gt_key, dt_key)
    gt_start = np.searchsorted(gt_key, keys, side="left")
    dt_start = np.searchsorted(dt_key, keys, side="left")
    groups = Groups(
        image=keys // num_group_categories,
        gt_start=gt_start,
        gt_count=np.searchsorted(gt_key, keys, side="right") - gt_start,
        dt_start=dt_start,
        dt_count=np.searchsorted(dt_key, keys, side="right") - dt_start,
    )
    return EvalInputs(
        records=records,
        category_ids=category_ids,
        category_names=[str(c.get("name", c["id"])) for c in categories],
        use_cats=use_cats,
        gt_image=gt_image,
        gt_category=gt_category,
        gt_object=np.array([objects[n][1] for n in gt_order], dtype=np.int64),
        gt_crowd=np.array([obj.iscrowd for obj in gt_objects], dtype=bool),
        gt_stuff=np.array([obj.is_stuff for obj in gt_objects], dtype=bool),
        gt_occlusion=np.array([obj.occlude_rate for obj in gt_objects], dtype=np.float64),
        gt_depth_rank=np.array([obj.depth_rank or 0 for obj in gt_objects], dtype=np.int64),
        gt_amodal=[obj.amodal for obj in gt_objects],
        gt_visible=[obj.visible for obj in gt_objects],
        dt_image=dt_image[dt_order],
        dt_category=dt_category[dt_order],
        dt_rank=dt_rank,
        dt_score=detections.scores[dt_order],
        dt_amodal=[detections.amodal[n] for n in dt_order],
        dt_visible=[detections.visible[n] for n in dt_order],
        groups=groups,
    )


def group_ious(inputs: EvalInputs, masks: str, progress: bool = False) -> list[np.ndarray | None]:
    """Per group, the (detections x ground truth) mask IoU of ``masks`` ("amodal" or "visible").

    pycocotools' C code computes them on the RLEs; a crowd ground truth's IoU is the intersection
    over the detection's area, as in COCO. None where a group lacks detections or ground truth.
    """
    gt_rles = {"amodal": inputs.gt_amodal, "visible": inputs.gt_visible}[masks]
    dt_rles = {"amodal": inputs.dt_amodal, "visible": inputs.dt_visible}[masks]
    return ious_per_group(
        inputs, lambda dt_rows, gt_rows: np.asarray(mask_utils.iou(dt_rles[dt_rows], gt_rles[gt_rows],
                                                                   inputs.gt_crowd[gt_rows])),
        f"{masks} mask IoU", progress)


def ious_per_group(inputs: EvalInputs, pair_ious: Callable[[slice, slice], np.ndarray], desc: str,
                   progress: bool = False) -> list[np.ndarray | None]:
    """``pair_ious(detection rows, ground-truth rows)`` of each group that has both, None elsewhere."""
    g = inputs.groups
    ious: list[np.ndarray | None] = [None] * len(g)
    scored = np.flatnonzero((g.gt_count > 0) & (g.dt_count > 0))
    for p in tqdm(scored, desc=desc, unit="group", disable=not progress):
        gt_rows = slice(g.gt_start[p], g.gt_start[p] + g.gt_count[p])
        dt_rows = slice(g.dt_start[p], g.dt_start[p] + g.dt_count[p])
        ious[p] = pair_ious(dt_rows, gt_rows)
    return ious


def _rank_in_runs(keys: np.ndarray) -> np.ndarray:
    """0, 1, 2, ... within each run of equal values of a sorted key array."""
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    run_start = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    run_length = np.diff(np.r_[run_start, keys.size])
    return np.arange(keys.size) - np.repeat(run_start, run_length)
