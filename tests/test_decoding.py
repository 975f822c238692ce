import numpy as np
import pytest
import torch

from sln_amodal.layering import (
    NO_LAYER,
    decode_detections,
    decode_sem_dist,
    instance_layering_maps,
    occlusion_rate,
    pairwise_order_from_layers,
    paste_sem_dist,
    resolve_depth_order,
    roi_layering_targets,
)
from sln_amodal.layering import decoding
from layered_scenes import random_scene

NO_CONSTRAINTS = torch.zeros((0, 2), dtype=torch.long)
THRESHOLDS = {"amodal_thresh": 0.5, "visible_margin": 0.5}  # the config defaults


def test_paste_by_hand():
    sem_dist = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    # Cells of 2 x 1 pixels; outer half-cells repeat the border cell; zero outside the box.
    pasted = paste_sem_dist(sem_dist, torch.tensor([[2.0, 1.0, 6.0, 3.0]]), height=4, width=8)
    expected = np.zeros((4, 8))
    expected[1, 2:6] = [0.0, 0.25, 0.75, 1.0]
    expected[2, 2:6] = [2.0, 2.25, 2.75, 3.0]
    np.testing.assert_allclose(pasted[0].numpy(), expected, atol=1e-6)


def test_paste_box_partly_outside_the_image():
    sem_dist = torch.tensor([[[0.0, 1.0], [2.0, 3.0]]])
    pasted = paste_sem_dist(sem_dist, torch.tensor([[-2.0, -2.0, 2.0, 2.0]]), height=4, width=4)
    # Pixel centres 0.5 and 1.5 fall at grid positions 0.75 and 1.25 (clamped to 1).
    expected = np.zeros((4, 4))
    expected[0, :2] = [0.25 * (0.25 * 0 + 0.75 * 1) + 0.75 * (0.25 * 2 + 0.75 * 3), 3 * 0.75 + 1 * 0.25]
    expected[1, :2] = [0.25 * 2 + 0.75 * 3, 3.0]
    np.testing.assert_allclose(pasted[0].numpy(), expected, atol=1e-6)


def test_paste_is_exact_for_full_image_boxes_and_constant_maps():
    generator = torch.Generator().manual_seed(0)
    sem_dist = torch.rand((3, 17, 17), generator=generator) * 3
    full = torch.tensor([[0.0, 0.0, 17.0, 17.0]]).repeat(3, 1)
    assert torch.equal(paste_sem_dist(sem_dist, full, 17, 17), sem_dist)

    constant = torch.full((1, 7, 7), 2.7)
    box = torch.tensor([[3.3, 1.9, 20.6, 12.2]])
    pasted = paste_sem_dist(constant, box, height=16, width=24)[0]
    centres_y, centres_x = torch.arange(16)[:, None] + 0.5, torch.arange(24)[None, :] + 0.5
    inside = (centres_x >= 3.3) & (centres_x < 20.6) & (centres_y >= 1.9) & (centres_y < 12.2)
    assert torch.equal(pasted, torch.where(inside, torch.tensor(2.7), torch.tensor(0.0)))


def test_decode_thresholds_and_layers_by_hand():
    sem_dist = torch.tensor([[[0.0, 0.49, 0.5, 1.49, 1.5, 2.49, 2.5, 3.0]]])
    decoded = decode_sem_dist(sem_dist, 3, **THRESHOLDS)
    assert decoded["amodal"][0, 0].tolist() == [False, False, True, True, True, True, True, True]
    assert decoded["visible"][0, 0].tolist() == [False] * 6 + [True, True]
    assert decoded["layers"][0, 0].tolist() == [NO_LAYER, NO_LAYER, 2, 2, 1, 1, 0, 0]
    np.testing.assert_allclose(decoded["occlude_rate"].numpy(), [1 - 2 / 6])


def test_decode_detections_equals_decoding_the_dense_paste():
    generator = torch.Generator().manual_seed(1)
    num_detections, height, width, num_layers = 12, 30, 45, 3
    sem_dist = torch.rand((num_detections, 7, 7), generator=generator) * (num_layers + 0.5)
    corners = torch.rand((num_detections, 2), generator=generator) * 60 - 10  # some boxes leave the image
    sizes = torch.rand((num_detections, 2), generator=generator) * 30 + 0.2
    boxes = torch.cat([corners, corners + sizes], dim=1)
    scores = torch.rand(num_detections, generator=generator)
    decoded = decode_detections(sem_dist, boxes, scores, height, width, num_layers, **THRESHOLDS)
    dense = decode_sem_dist(paste_sem_dist(sem_dist, boxes, height, width), num_layers, **THRESHOLDS)
    for key in ("amodal", "visible", "occlude_rate"):
        assert torch.equal(decoded[key], dense[key]), key
    assert torch.equal(decoded["in_front"], pairwise_order_from_layers(dense["amodal"], dense["layers"]))
    assert decoded["in_front"].any()


def test_boxes_pasted_a_few_at_a_time_give_the_same_maps(monkeypatch):
    generator = torch.Generator().manual_seed(2)
    num_detections, height, width = 9, 40, 50
    sem_dist = torch.rand((num_detections, 6, 6), generator=generator) * 3.5
    corners = torch.rand((num_detections, 2), generator=generator) * 50 - 5
    boxes = torch.cat([corners, corners + torch.rand((num_detections, 2), generator=generator) * 40 + 0.3], dim=1)
    scores = torch.rand(num_detections, generator=generator)
    at_once = decode_detections(sem_dist, boxes, scores, height, width, 3, **THRESHOLDS)
    pasted = paste_sem_dist(sem_dist, boxes, height, width)
    monkeypatch.setattr(decoding, "PASTE_CHUNK_PIXELS", 300)  # a few boxes per chunk, a large one alone
    assert torch.equal(paste_sem_dist(sem_dist, boxes, height, width), pasted)
    in_chunks = decode_detections(sem_dist, boxes, scores, height, width, 3, **THRESHOLDS)
    for key in at_once:
        assert torch.equal(in_chunks[key], at_once[key]), key


def test_decode_rejects_a_threshold_that_would_cover_the_background():
    with pytest.raises(ValueError, match="AMODAL_THRESH"):
        decode_sem_dist(torch.zeros((1, 2, 2)), 3, amodal_thresh=0.0, visible_margin=0.5)


def test_pairwise_order_compares_mean_layers_in_the_overlap():
    amodal = torch.zeros((3, 1, 6), dtype=torch.bool)
    amodal[0, 0, 0:4] = amodal[1, 0, 2:6] = True
    amodal[2, 0, 5] = True  # overlaps object 1 only, with equal layers
    layers = torch.full((3, 1, 6), NO_LAYER, dtype=torch.int8)
    layers[0, 0, 0:4] = torch.tensor([0, 0, 0, 1], dtype=torch.int8)  # mean 0.5 over O = {2, 3}
    layers[1, 0, 2:6] = torch.tensor([1, 1, 0, 0], dtype=torch.int8)  # mean 1.0 over O
    layers[2, 0, 5] = 0
    in_front = pairwise_order_from_layers(amodal, layers)
    assert in_front.nonzero().tolist() == [[0, 1]]


def test_round_trip_recovers_masks_layers_and_order():
    """Exact targets on a full-image RoI with M = image side, pasted and decoded, give the scene back.

    Every overlap pixel of a pair (a in front of b) has ℓ_a < unclamped ℓ_b, because b is covered
    there by a and by everything covering a. Clamping to K-1 keeps ℓ_a <= ℓ_b, so the mean layer of
    a is lower unless a sits at layer K-1 on the whole overlap: such clamped-tied pairs stay
    unordered (never reversed), and they are rare: with K = 2 every pair whose front object is hidden
    across the whole overlap ties (about 1 pair in 10 here), with K >= 3 none of these scenes has one.
    """
    generator = torch.Generator().manual_seed(7)
    overlapping_pairs = tied_pairs = 0
    for scene in range(40):
        side = int(torch.randint(20, 40, (1,), generator=generator))
        num_objects = int(torch.randint(2, 8, (1,), generator=generator))
        num_layers = 2 + scene % 3
        tau = side / 8 if scene % 4 else 2.0
        amodal, visible, depth_rank = random_scene(generator, side, num_objects)
        true_order = depth_rank[:, None] < depth_rank[None, :]
        in_front = resolve_depth_order(amodal, visible, depth_rank, NO_CONSTRAINTS)
        assert torch.equal(in_front, true_order)

        full_image = torch.tensor([[0.0, 0.0, side, side]]).repeat(num_objects, 1)
        layer_maps, sem_dist = roi_layering_targets(
            amodal, visible, in_front, full_image, torch.arange(num_objects), side, num_layers, tau
        )
        assert torch.equal(layer_maps, instance_layering_maps(amodal, visible, in_front, num_layers))
        scores = torch.rand(num_objects, generator=generator)
        decoded = decode_detections(sem_dist, full_image, scores, side, side, num_layers, **THRESHOLDS)
        assert torch.equal(decoded["amodal"], amodal)
        assert torch.equal(decoded["visible"], visible)
        assert torch.equal(decoded["occlude_rate"], occlusion_rate(amodal, visible))
        pasted = paste_sem_dist(sem_dist, full_image, side, side)
        layers = decode_sem_dist(pasted, num_layers, **THRESHOLDS)["layers"]
        assert torch.equal(layers.long(), layer_maps - 1)

        overlap = (amodal.flatten(1).float() @ amodal.flatten(1).float().T) > 0
        overlap.fill_diagonal_(False)
        predicted = decoded["in_front"]
        assert not (predicted & ~overlap).any()  # only overlapping pairs are ordered
        assert not (predicted & true_order.T).any()  # never reversed
        for a, b in (overlap & true_order).nonzero().tolist():
            overlapping_pairs += 1
            clamped_tie = bool((layer_maps[a][amodal[a] & amodal[b]] == num_layers).all())
            assert bool(predicted[a, b]) != clamped_tie
            tied_pairs += clamped_tie
        ranks = decoded["depth_rank"]
        assert sorted(ranks.tolist()) == list(range(1, num_objects + 1))
        front, back = predicted.nonzero().unbind(dim=1)
        assert (ranks[front] < ranks[back]).all()
    assert overlapping_pairs > 150
    assert 0 < tied_pairs <= 0.1 * overlapping_pairs


def test_no_detections():
    no_maps, no_boxes, no_scores = torch.zeros((0, 28, 28)), torch.zeros((0, 4)), torch.zeros(0)
    decoded = decode_detections(no_maps, no_boxes, no_scores, 30, 40, 3, **THRESHOLDS)
    assert decoded["amodal"].shape == decoded["visible"].shape == (0, 30, 40)
    assert decoded["occlude_rate"].shape == decoded["depth_rank"].shape == (0,)
    assert decoded["in_front"].shape == (0, 0)
