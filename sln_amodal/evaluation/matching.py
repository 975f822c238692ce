"""COCOeval's greedy detection-to-ground-truth matching, run for many groups at once.

Within a group, detections are visited by descending score; at each IoU threshold a detection
takes the still-free ground truth with the highest IoU (at least the threshold), preferring a
ground truth that is not ignored: an ignored one is taken only when no counted one qualifies.
Among equal IoUs the later ground truth wins (COCOeval scans with ``>=``). A crowd ground truth is
never used up. This is COCOeval.evaluateImg exactly; here the detection loop runs once over every
group, threshold and subset together, as numpy operations on padded arrays.

Only detections whose best IoU reaches the lowest threshold can match, so only those are visited.
Groups are binned by their ground-truth count (padded to a power of two) and sorted by how many
detections they visit, so step k of the loop works on a prefix of the groups with no waste.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .inputs import Groups

# COCOeval caps every threshold just below 1 so that a perfect detection matches at IoU 1.0.
MAX_THRESHOLD = 1 - 1e-10
# Elements per working array (groups x thresholds x padded ground truth), per subset, for one chunk.
CHUNK_ELEMENTS = 1 << 20


@dataclass
class _Chunk:
    ious: np.ndarray  # (n, C, Gp) IoU of each visited detection, -1 in the padding
    crowd: np.ndarray  # (n, Gp) bool
    gt_start: np.ndarray  # (n,) first ground-truth index of each group
    detection: np.ndarray  # (n, C) global index of each visited detection, -1 in the padding
    active: np.ndarray  # (C,) groups with more than k visited detections (a prefix)


class GreedyMatcher:
    """Matches once-computed IoUs under any number of ignore settings ("subsets")."""

    def __init__(self, ious: list[np.ndarray | None], groups: Groups, gt_crowd: np.ndarray,
                 iou_thresholds: np.ndarray, num_detections: int):
        self.thresholds = np.minimum(np.asarray(iou_thresholds, dtype=np.float64), MAX_THRESHOLD)
        self.num_detections = num_detections
        visits = []  # (group, rows of the detections that can match at the lowest threshold)
        for p, group_iou in enumerate(ious):
            if group_iou is not None:
                rows = np.flatnonzero((group_iou >= self.thresholds.min()).any(axis=1))
                if rows.size:
                    visits.append((p, rows))
        self.chunks = []
        padded_size = [1 << int(np.ceil(np.log2(groups.gt_count[p]))) for p, _ in visits]
        for size in sorted(set(padded_size)):
            in_bin = sorted((v for v, s in zip(visits, padded_size) if s == size), key=lambda v: -len(v[1]))
            self.chunks += self._chunks(in_bin, size, ious, groups, gt_crowd)

    def _chunks(self, visits, padded_size, ious, groups, gt_crowd) -> list[_Chunk]:
        chunks = []
        start = 0
        while start < len(visits):
            longest = len(visits[start][1])  # visits are sorted longest first
            per_group = padded_size * max(len(self.thresholds), longest)
            stop = min(len(visits), start + max(1, CHUNK_ELEMENTS // per_group))
            chunks.append(self._chunk(visits[start:stop], padded_size, ious, groups, gt_crowd))
            start = stop
        return chunks

    @staticmethod
    def _chunk(visits, padded_size, ious, groups, gt_crowd) -> _Chunk:
        n, longest = len(visits), len(visits[0][1])
        chunk = _Chunk(
            ious=np.full((n, longest, padded_size), -1.0),
            crowd=np.zeros((n, padded_size), dtype=bool),
            gt_start=np.array([groups.gt_start[p] for p, _ in visits], dtype=np.int64),
            detection=np.full((n, longest), -1, dtype=np.int64),
            active=(np.array([len(rows) for _, rows in visits])[None, :] > np.arange(longest)[:, None]).sum(1),
        )
        for b, (p, rows) in enumerate(visits):
            num_gt = groups.gt_count[p]
            chunk.ious[b, :len(rows), :num_gt] = ious[p][rows]
            chunk.crowd[b, :num_gt] = gt_crowd[groups.gt_start[p]:groups.gt_start[p] + num_gt]
            chunk.detection[b, :len(rows)] = groups.dt_start[p] + rows
        return chunk

    def match(self, gt_ignore: np.ndarray) -> np.ndarray:
        """Matched ground-truth index (or -1) of every detection, per subset and threshold.

        ``gt_ignore``: (S, G) bool, one row of ignore flags per subset. Returns (S, T, D) int64.
        """
        num_subsets = gt_ignore.shape[0]
        matched = np.full((num_subsets, len(self.thresholds), self.num_detections), -1, dtype=np.int64)
        thresholds = self.thresholds[:, None]  # (T, 1) against (..., T, Gp)
        for chunk in self.chunks:
            padded_size = chunk.crowd.shape[1]
            slot = np.arange(padded_size)
            gt_index = np.minimum(chunk.gt_start[:, None] + slot, gt_ignore.shape[1] - 1)
            ignored = gt_ignore[:, gt_index].transpose(1, 0, 2)[:, :, None, :]  # (n, S, 1, Gp); padding never qualifies
            free_crowd = chunk.crowd[:, None, None, :]
            used = np.zeros((len(chunk.gt_start), num_subsets, len(self.thresholds), padded_size), dtype=bool)
            for k, active in enumerate(chunk.active):
                iou = chunk.ious[:active, k, None, None, :]  # (a, 1, 1, Gp)
                candidate = (iou >= thresholds) & ~used[:active]  # (a, S, T, Gp)
                counted = candidate & ~ignored[:active]
                pool = np.where(counted.any(axis=-1, keepdims=True), counted, candidate)
                # argmax over the reversed slots finds the last of equal IoUs, as COCOeval's >= scan does
                best = padded_size - 1 - np.argmax(np.where(pool, iou, -1.0)[..., ::-1], axis=-1)  # (a, S, T)
                found = pool.any(axis=-1)
                used[:active] |= (slot == best[..., None]) & found[..., None] & ~free_crowd[:active]
                gt = np.where(found, chunk.gt_start[:active, None, None] + best, -1)
                matched[:, :, chunk.detection[:active, k]] = gt.transpose(1, 2, 0)
        return matched
