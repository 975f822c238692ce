"""Depth order between objects (SPEC section 2): the pairwise relation and the ranks built from it.

Convention everywhere: ``in_front[a, b]`` is True when object a is in front of object b.
"""
from __future__ import annotations

import numpy as np
import torch

from ..structures.pixel_counts import as_float

# float32 adds integers exactly while every partial sum stays below 2**24 (its 24-bit significand).
FLOAT32_EXACT_INT_LIMIT = 2**24
MATMUL_CHUNK_PIXELS = 2**18  # pixels per matmul: bounds the float copies of the masks


def pairwise_overlap_sums(weights: torch.Tensor, supports: torch.Tensor) -> torch.Tensor:
    """Exact ``sums[a, b] = sum of weights[a, p] over p in supports[a] ∩ supports[b]``.

    weights:  (N, P) non-negative integer or bool values per object and pixel, 0 outside supports[a].
    supports: (N, P) bool masks.
    Returns (N, N) int64. Computed as float32 matmuls over chunks of pixels small enough that no
    sum within a chunk can reach 2**24, so every count is exact.
    """
    num_objects, num_pixels = supports.shape
    sums = torch.zeros((num_objects, num_objects), dtype=torch.long, device=supports.device)
    if weights.numel() == 0:
        return sums
    largest_weight = 1 if weights.dtype == torch.bool else max(int(weights.max()), 1)
    chunk_pixels = min(MATMUL_CHUNK_PIXELS, FLOAT32_EXACT_INT_LIMIT // largest_weight)
    # float32 even under autocast: a float16 or bfloat16 matmul would round (or overflow) the counts
    with torch.autocast(supports.device.type, enabled=False):
        for start in range(0, num_pixels, chunk_pixels):
            chunk_weights = as_float(weights[:, start : start + chunk_pixels])
            chunk_supports = as_float(supports[:, start : start + chunk_pixels])
            sums += (chunk_weights @ chunk_supports.T).long()
    return sums


def resolve_depth_order(
    amodal: torch.Tensor, visible: torch.Tensor, depth_rank: torch.Tensor, constraints: torch.Tensor
) -> torch.Tensor:
    """The ground-truth relation ``in_front`` (N, N) bool, settled per pair in SPEC priority order.

    amodal, visible: (N, H, W) bool; depth_rank: (N,) int64, 1 = front-most, 0 = unknown;
    constraints: (E, 2) int64 (front, back) object indices.
    1. both ranks known: the lower rank is in front (equal ranks leave the pair unordered);
    2. otherwise a pairwise constraint (a pair constrained both ways counts as unconstrained);
    3. otherwise the masks: with O = A_a ∩ A_b, a is in front of b iff |O ∩ V_a| > |O ∩ V_b|
       (equal counts, including no overlap, leave the pair unordered).
    """
    num_objects = amodal.shape[0]
    device = amodal.device
    constraints = constraints.reshape(-1, 2).to(device=device, dtype=torch.long)
    if constraints.numel() and (constraints.min() < 0 or constraints.max() >= num_objects):
        raise ValueError(f"depth constraints {constraints.tolist()} index outside the {num_objects} objects")

    depth_rank = depth_rank.to(device)
    known = depth_rank > 0
    ranked = known[:, None] & known[None, :]
    rank_front = ranked & (depth_rank[:, None] < depth_rank[None, :])

    constrained_front = torch.zeros((num_objects, num_objects), dtype=torch.bool, device=device)
    constrained_front[constraints[:, 0], constraints[:, 1]] = True
    constrained_front &= ~constrained_front.T
    constrained = constrained_front | constrained_front.T
    constraint_front = constrained_front & ~ranked

    off_diagonal = ~torch.eye(num_objects, dtype=torch.bool, device=device)
    needs_masks = off_diagonal & ~ranked & ~constrained
    in_front = rank_front | constraint_front
    if needs_masks.any():
        in_front |= needs_masks & order_from_visible_overlap(amodal, visible)
    return in_front


def order_from_visible_overlap(amodal: torch.Tensor, visible: torch.Tensor) -> torch.Tensor:
    """``in_front`` (N, N) bool from (N, H, W) bool masks: with O = A_a ∩ A_b, a is in front of b
    iff |O ∩ V_a| > |O ∩ V_b| (equal counts, including no overlap, leave the pair unordered)."""
    amodal, visible = on_shared_pixels(amodal, visible)
    visible_in_overlap = pairwise_overlap_sums(visible & amodal, amodal)  # [a, b]
    return visible_in_overlap > visible_in_overlap.T


def on_shared_pixels(amodal: torch.Tensor, *maps: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(N, H, W) amodal masks and per-object maps of the same shape, each flattened to (N, S) over
    the S pixels inside two or more masks: the only ones in any pair's overlap, so a pairwise sum
    over them equals the one over all pixels off the diagonal."""
    amodal = amodal.flatten(1)
    shared = (amodal.sum(dim=0, dtype=torch.int32) >= 2).nonzero().squeeze(1)  # (S,)
    return tuple(values.flatten(1).index_select(1, shared) for values in (amodal, *maps))


def depth_ranks_from_order(in_front: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N (1 = front-most) that follow ``in_front`` (N, N) bool, ties and cycles by score.

    Repeatedly ranks next, among the objects not ranked yet that no unranked object is in front of,
    the one with the highest score; when a cycle leaves no such object, the highest-score unranked
    object. Equal scores go to the lower index. The N steps run on the host (one copy of the N x N
    relation): each is a handful of operations on N values, which as device kernels cost far more
    in launches than in work. The ranks come back on the inputs' device.
    """
    num_objects = in_front.shape[0]
    front = in_front.detach().cpu().numpy().copy()  # [a, b]: a in front of b
    np.fill_diagonal(front, False)
    by_score = np.argsort(-scores.detach().cpu().double().numpy(), kind="stable")
    priority = np.empty(num_objects, dtype=np.int64)
    priority[by_score] = np.arange(num_objects)

    blockers = front.sum(axis=0)  # unranked objects in front of each object
    unranked = np.ones(num_objects, dtype=bool)
    ranks = np.zeros(num_objects, dtype=np.int64)
    for rank in range(1, num_objects + 1):
        free = unranked & (blockers == 0)
        candidates = free if free.any() else unranked
        chosen = np.where(candidates, priority, num_objects).argmin()
        ranks[chosen] = rank
        unranked[chosen] = False
        blockers -= front[chosen]
    return torch.from_numpy(ranks).to(in_front.device)
