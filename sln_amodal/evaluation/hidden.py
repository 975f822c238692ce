"""Hidden (invisible) parts H = A \\ V of ground truth and detections, and the IoU of two of them.

pycocotools can intersect and unite RLEs but not subtract them, so H is never formed: each mask
keeps its amodal RLE A, its visible RLE clipped to the amodal mask V' = V ∩ A (a visible pixel
outside the object's own amodal mask is not a layering claim; VRSP-Net multiplies the masks the
same way) and the pixel count |H| = |A| - |V'|. Since V' ⊆ A, every overlap with a hidden part is
an inclusion-exclusion of four intersections pycocotools counts in C:

    |H_d ∩ A_g| = |A_d ∩ A_g| - |V'_d ∩ A_g|
    |H_d ∩ H_g| = |H_d ∩ A_g| - |A_d ∩ V'_g| + |V'_d ∩ V'_g|

The IoU of two hidden parts is then pycocotools' own formula (intersection over union, or over
the detection's |H| for a crowd ground truth, 0 when nothing overlaps), float for float the number
pycocotools would give on explicitly built H masks.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from ..structures.masks import rle_areas, rle_intersection, rle_intersection_areas, rle_pairwise_intersection_areas
from .inputs import EvalInputs, ious_per_group


@dataclass
class HiddenParts:
    """N masks' hidden parts, as the RLEs that count them."""

    amodal: list[dict]
    visible: list[dict]  # visible clipped to the amodal mask
    amodal_area: np.ndarray  # (N,) int64
    visible_area: np.ndarray  # (N,) int64, |visible ∩ amodal|

    @property
    def area(self) -> np.ndarray:
        """|H| of each mask."""
        return self.amodal_area - self.visible_area

    def __getitem__(self, rows: slice | np.ndarray) -> HiddenParts:
        """The masks at ``rows``: a slice (a group) or an index array (matched objects)."""
        if isinstance(rows, slice):
            amodal, visible = self.amodal[rows], self.visible[rows]
        else:
            amodal, visible = [self.amodal[r] for r in rows], [self.visible[r] for r in rows]
        return HiddenParts(amodal, visible, self.amodal_area[rows], self.visible_area[rows])


def hidden_parts(amodal: list[dict], visible: list[dict], desc: str, progress: bool = False) -> HiddenParts:
    """The hidden parts of masks given as amodal and visible RLEs (``desc`` labels the progress bar)."""
    pairs = tqdm(zip(visible, amodal), total=len(amodal), desc=desc, unit="mask", disable=not progress)
    clipped = [rle_intersection(v, a) for v, a in pairs]
    return HiddenParts(list(amodal), clipped, rle_areas(amodal), rle_areas(clipped))


def hidden_overlaps(amodal_amodal: np.ndarray, visible_amodal: np.ndarray, amodal_visible: np.ndarray,
                    visible_visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(|H_d ∩ H_g|, |H_d ∩ A_g|) from |A_d ∩ A_g|, |V'_d ∩ A_g|, |A_d ∩ V'_g| and |V'_d ∩ V'_g|."""
    in_gt_amodal = amodal_amodal - visible_amodal
    return in_gt_amodal - amodal_visible + visible_visible, in_gt_amodal


def paired_intersections(dt: HiddenParts, gt: HiddenParts) -> tuple[np.ndarray, ...]:
    """The four (N,) intersections ``hidden_overlaps`` takes, of each dt[i] with its gt[i]."""
    counts = rle_intersection_areas(dt.amodal + dt.visible + dt.amodal + dt.visible,
                                    gt.amodal + gt.amodal + gt.visible + gt.visible)
    return tuple(counts.reshape(4, len(dt.amodal)))


def pairwise_intersections(dt: HiddenParts, gt: HiddenParts) -> tuple[np.ndarray, ...]:
    """The four (D, G) intersections ``hidden_overlaps`` takes, of every dt[i] with every gt[j]:
    one pycocotools call on the stacked masks, whose areas are known."""
    counts = rle_pairwise_intersection_areas(dt.amodal + dt.visible, gt.amodal + gt.visible,
                                             np.concatenate([dt.amodal_area, dt.visible_area]))
    d, g = len(dt.amodal), len(gt.amodal)
    return counts[:d, :g], counts[d:, :g], counts[:d, g:], counts[d:, g:]


def hidden_ious(dt: HiddenParts, gt: HiddenParts, gt_crowd: np.ndarray) -> np.ndarray:
    """(D, G) IoU of the hidden parts, as pycocotools' ``iou`` computes it for masks."""
    intersection, _ = hidden_overlaps(*pairwise_intersections(dt, gt))
    dt_area = dt.area[:, None]
    union = np.where(gt_crowd[None, :], dt_area, dt_area + gt.area[None, :] - intersection)
    return np.divide(intersection, union, out=np.zeros(intersection.shape), where=intersection > 0)


def group_hidden_ious(inputs: EvalInputs, gt: HiddenParts, dt: HiddenParts,
                      progress: bool = False) -> list[np.ndarray | None]:
    """``group_ious`` for the hidden parts: per group, the (detections x ground truth) IoU."""
    def pair_ious(dt_rows: slice, gt_rows: slice) -> np.ndarray:
        return hidden_ious(dt[dt_rows], gt[gt_rows], inputs.gt_crowd[gt_rows])

    return ious_per_group(inputs, pair_ious, "invisible mask IoU", progress)
