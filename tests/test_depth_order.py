import numpy as np
import pytest
import torch

from sln_amodal.layering import (
    depth_ranks_from_order, pairwise_order_from_layers, pairwise_overlap_sums, resolve_depth_order,
)
from sln_amodal.layering.depth_relation import order_from_visible_overlap

NO_CONSTRAINTS = torch.zeros((0, 2), dtype=torch.long)


def relation(in_front: torch.Tensor) -> set[tuple[int, int]]:
    return {tuple(pair) for pair in in_front.nonzero().tolist()}


def squares(count: int, side: int = 4) -> torch.Tensor:
    """``count`` identical side x side amodal masks, so every pair overlaps everywhere."""
    return torch.ones((count, side, side), dtype=torch.bool)


def test_equal_visible_counts_in_the_overlap_leave_a_pair_unordered():
    amodal = torch.zeros((2, 4, 6), dtype=torch.bool)
    amodal[0, :, 0:4] = True
    amodal[1, :, 2:6] = True  # overlap O = columns 2..3
    visible = amodal.clone()
    visible[0, :, 3] = False  # |O ∩ V_0| = 4 (column 2)
    visible[1, :, 2] = False  # |O ∩ V_1| = 4 (column 3)
    unknown = torch.zeros(2, dtype=torch.long)
    assert relation(resolve_depth_order(amodal, visible, unknown, NO_CONSTRAINTS)) == set()

    visible[1, 0, 3] = False  # now |O ∩ V_1| = 3 < 4
    assert relation(resolve_depth_order(amodal, visible, unknown, NO_CONSTRAINTS)) == {(0, 1)}


def test_rank_beats_constraint_beats_masks():
    amodal = squares(3)
    visible = torch.zeros_like(amodal)
    visible[0, 0:2] = True  # 8 visible pixels: the masks say 0 is in front of both others
    visible[2, 2] = True  # 4 visible pixels: the masks say 2 is in front of 1
    visible[1, 3, 0:2] = True  # 2 visible pixels
    depth_rank = torch.tensor([2, 1, 0])  # ranks known for 0 and 1 only: 1 is in front of 0
    constraints = torch.tensor([[0, 1], [2, 0]])  # (0, 1) loses to the ranks; (2, 0) beats the masks
    in_front = resolve_depth_order(amodal, visible, depth_rank, constraints)
    assert relation(in_front) == {(1, 0), (2, 0), (2, 1)}


def test_equal_ranks_are_unordered_and_masks_do_not_override_them():
    amodal = squares(2)
    visible = torch.zeros_like(amodal)
    visible[0] = True
    in_front = resolve_depth_order(amodal, visible, torch.tensor([3, 3]), NO_CONSTRAINTS)
    assert relation(in_front) == set()


def test_contradictory_constraints_fall_back_to_the_masks():
    amodal = squares(2)
    visible = torch.zeros_like(amodal)
    visible[1, 0] = True
    constraints = torch.tensor([[0, 1], [1, 0]])
    in_front = resolve_depth_order(amodal, visible, torch.zeros(2, dtype=torch.long), constraints)
    assert relation(in_front) == {(1, 0)}


def test_masks_never_order_objects_that_do_not_overlap():
    amodal = torch.zeros((2, 4, 8), dtype=torch.bool)
    amodal[0, :, :3] = True
    amodal[1, :, 5:] = True
    in_front = resolve_depth_order(amodal, amodal.clone(), torch.zeros(2, dtype=torch.long), NO_CONSTRAINTS)
    assert relation(in_front) == set()


def test_constraint_outside_the_objects_is_reported():
    with pytest.raises(ValueError, match="outside the 2 objects"):
        resolve_depth_order(squares(2), squares(2), torch.zeros(2, dtype=torch.long), torch.tensor([[0, 2]]))


def test_no_objects():
    empty = torch.zeros((0, 5, 5), dtype=torch.bool)
    in_front = resolve_depth_order(empty, empty, torch.zeros(0, dtype=torch.long), NO_CONSTRAINTS)
    assert in_front.shape == (0, 0)
    assert depth_ranks_from_order(in_front, torch.zeros(0)).shape == (0,)


def test_ranks_follow_the_order_before_the_scores():
    in_front = torch.tensor([[False, True], [False, False]])  # 0 in front of 1
    assert depth_ranks_from_order(in_front, torch.tensor([0.1, 0.9])).tolist() == [1, 2]
    unordered = torch.zeros((3, 3), dtype=torch.bool)
    assert depth_ranks_from_order(unordered, torch.tensor([0.2, 0.9, 0.5])).tolist() == [3, 1, 2]


def test_a_cycle_is_broken_by_score():
    in_front = torch.zeros((4, 4), dtype=torch.bool)
    in_front[0, 1] = in_front[1, 2] = in_front[2, 0] = True  # cycle 0 -> 1 -> 2 -> 0
    in_front[3, 0] = True
    scores = torch.tensor([0.5, 0.9, 0.1, 0.3])
    # 3 is the only object nobody is in front of; then the cycle is entered at its best score (1),
    # which frees 2 (only 1 was in front of it), and 0 comes last.
    assert depth_ranks_from_order(in_front, scores).tolist() == [4, 2, 3, 1]


def test_overlap_sums_match_numpy_for_small_and_large_weights():
    rng = np.random.default_rng(0)
    supports = rng.random((6, 300)) < 0.4
    for weight_limit in (4, 10**6):  # the second one is split into chunks of 16 pixels to stay exact
        weights = np.where(supports, rng.integers(0, weight_limit, size=(6, 300)), 0)
        expected = (weights[:, None, :] * (supports[:, None, :] & supports[None, :, :])).sum(-1)
        sums = pairwise_overlap_sums(torch.from_numpy(weights), torch.from_numpy(supports))
        assert sums.dtype == torch.long
        np.testing.assert_array_equal(sums.numpy(), expected)


def test_mask_orders_over_the_shared_pixels_equal_the_definitions_over_all_pixels():
    # Both orders are computed on the pixels inside two or more masks only; here against the
    # definitions written out over every pixel (numpy), on random overlapping rectangles.
    rng = np.random.default_rng(3)
    for count in (0, 1, 2, 9):
        amodal = np.zeros((count, 20, 30), dtype=bool)
        for mask in amodal:
            top, left = rng.integers(0, 14), rng.integers(0, 22)
            mask[top:top + rng.integers(3, 7), left:left + rng.integers(3, 9)] = True
        layers = np.where(amodal, rng.integers(0, 3, size=amodal.shape), -1).astype(np.int8)
        visible = layers == 0
        overlap = amodal[:, None] & amodal[None, :]  # [a, b, H, W]
        layer_sums = (np.clip(layers, 0, None)[:, None] * overlap).sum(axis=(2, 3))
        visible_sums = (visible[:, None] & overlap).sum(axis=(2, 3))
        np.testing.assert_array_equal(
            pairwise_order_from_layers(torch.from_numpy(amodal), torch.from_numpy(layers)).numpy(),
            layer_sums < layer_sums.T)
        np.testing.assert_array_equal(
            order_from_visible_overlap(torch.from_numpy(amodal), torch.from_numpy(visible)).numpy(),
            visible_sums > visible_sums.T)


def test_ranks_of_a_random_relation_follow_the_greedy_rule():
    rng = np.random.default_rng(4)
    for count in (1, 5, 12):
        in_front = rng.random((count, count)) < 0.3  # cycles and both-way pairs included
        scores = rng.choice([0.2, 0.5, 0.7], size=count)  # ties go to the lower index
        expected, unranked = [0] * count, set(range(count))
        for rank in range(1, count + 1):
            free = [i for i in unranked if not any(in_front[j, i] for j in unranked if j != i)]
            chosen = min(free or unranked, key=lambda i: (-scores[i], i))
            expected[chosen] = rank
            unranked.remove(chosen)
        ranks = depth_ranks_from_order(torch.from_numpy(in_front), torch.from_numpy(scores).float())
        assert ranks.dtype == torch.int64 and ranks.tolist() == expected
