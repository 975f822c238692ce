import math

import numpy as np
import pytest
import torch

from sln_amodal.layering import (
    NO_LAYER,
    global_layering_map,
    instance_layering_maps,
    occlusion_layers,
    occlusion_rate,
    resolve_depth_order,
    resolve_dist_saturation,
    roi_grid_pixels,
    roi_layering_targets,
    sem_dist_from_layers,
)
from sln_amodal.structures.pixel_counts import count_true
from layered_scenes import random_scene

NO_CONSTRAINTS = torch.zeros((0, 2), dtype=torch.long)


def staircase():
    """Three 6x6 squares on a 12x12 image, front-first A, B, C, each shifted by 2 pixels diagonally."""
    amodal = torch.zeros((3, 12, 12), dtype=torch.bool)
    amodal[0, 0:6, 0:6] = True
    amodal[1, 2:8, 2:8] = True
    amodal[2, 4:10, 4:10] = True
    visible = amodal.clone()
    visible[1] &= ~amodal[0]
    visible[2] &= ~(amodal[0] | amodal[1])
    in_front = resolve_depth_order(amodal, visible, torch.tensor([1, 2, 3]), NO_CONSTRAINTS)
    return amodal, visible, in_front


def test_staircase_layers_and_global_map():
    amodal, visible, in_front = staircase()
    assert in_front.tolist() == [[False, True, True], [False, False, True], [False, False, False]]
    layer_maps = instance_layering_maps(amodal, visible, in_front, num_layers=3)
    c_layers = layer_maps[2] - 1
    assert c_layers[4, 4] == 2  # under A and B
    assert c_layers[6, 6] == 1  # under B only
    assert c_layers[9, 9] == 0  # visible
    assert c_layers[0, 0] == NO_LAYER
    assert layer_maps[1, 3, 3] == 2  # B under A
    assert layer_maps[1, 7, 7] == 1  # B visible
    assert layer_maps[1, 9, 9] == 0  # outside B

    global_map = global_layering_map(amodal, num_layers=3)
    assert [global_map[p, p].item() for p in (0, 2, 4, 6, 9, 11)] == [1, 2, 3, 2, 1, 0]
    assert global_layering_map(amodal, num_layers=2)[4, 4] == 2  # three objects, clamped to K


def test_count_true_is_exact_beyond_the_uint8_range():
    masks = torch.rand((600, 3, 4), generator=torch.Generator().manual_seed(0)) < 0.9
    assert torch.equal(count_true(masks, dim=0), masks.sum(dim=0))
    assert torch.equal(count_true(masks.transpose(0, 2), dim=2), masks.sum(dim=0).T)
    assert torch.equal(count_true(masks[:0], dim=0), torch.zeros((3, 4), dtype=torch.long))


def test_count_true_counts_pixels_of_each_mask_along_a_long_dimension():
    generator = torch.Generator().manual_seed(1)
    masks = torch.rand((5, 2 * 255 + 17), generator=generator) < 0.7  # two whole blocks and a remainder
    masks[0] = True
    assert torch.equal(count_true(masks, dim=1), masks.sum(dim=1))
    assert torch.equal(count_true(masks, dim=-1), masks.sum(dim=1))
    assert count_true(masks, dim=1)[0] == masks.shape[1]
    strided = masks.T.contiguous().T  # the same values, not contiguous along the counted dimension
    assert torch.equal(count_true(strided, dim=1), masks.sum(dim=1))


def test_hidden_by_two_objects_is_clamped_when_k_is_two():
    amodal, visible, in_front = staircase()
    assert instance_layering_maps(amodal, visible, in_front, num_layers=3)[2, 4, 4] == 3
    assert instance_layering_maps(amodal, visible, in_front, num_layers=2)[2, 4, 4] == 2


def test_hidden_pixel_without_a_known_occluder_is_layer_one():
    amodal = torch.ones((1, 3, 3), dtype=torch.bool)
    visible = amodal.clone()
    visible[0, 1, 1] = False  # hidden by something that is not annotated
    nobody_in_front = torch.zeros((1, 1), dtype=torch.bool)
    layers = occlusion_layers(amodal[None], visible[None], torch.tensor([[0]]), nobody_in_front, num_layers=3)
    assert layers[0, 0, 1, 1] == 1 and layers[0, 0, 0, 0] == 0


def test_staircase_sem_dist_by_hand():
    amodal, visible, in_front = staircase()
    layer_maps = instance_layering_maps(amodal, visible, in_front, num_layers=3)
    sem_dist = sem_dist_from_layers(layer_maps, num_layers=3, tau=2.0)
    ramp = 0.5 * math.sqrt(2) / 2  # 0.5 * d / tau with d = sqrt(2)
    c_expected = {
        (9, 9): 3 - 0 - 0.5 + 0.5 * 1 / 2,  # visible, next to the outside of C
        (8, 8): 3 - 0 - 0.5 + ramp,  # visible, nearest other level is B's corner (7, 7)
        (6, 6): 3 - 1 - 0.5 + ramp,  # under B, nearest other level is the triple corner (5, 5)
        (4, 4): 3 - 2 - 0.5 + 0.5 * 1 / 2,  # under A and B, next to the outside of C
        (2, 2): 0.0,  # outside C
    }
    for (y, x), value in c_expected.items():
        assert sem_dist[2, y, x].item() == pytest.approx(value, abs=1e-6), (y, x)
    assert sem_dist[1, 2, 2].item() == pytest.approx(3 - 1 - 0.5 + 0.25, abs=1e-6)  # B under A, on B's border
    saturated = sem_dist_from_layers(layer_maps, num_layers=3, tau=1.25)
    assert saturated[2, 8, 8].item() == 3.0  # d = sqrt(2) >= tau


def test_distance_ramp_across_one_object():
    layer_maps = torch.ones((1, 9, 9), dtype=torch.long)
    sem_dist = sem_dist_from_layers(layer_maps, num_layers=3, tau=3.0)
    border_distance = [1, 2, 3, 4, 5, 4, 3, 2, 1]
    expected = [2.5 + 0.5 * min(1.0, d / 3.0) for d in border_distance]
    np.testing.assert_allclose(sem_dist[0, 4].numpy(), expected, atol=1e-6)


def brute_force_sem_dist(layer_maps: np.ndarray, num_layers: int, tau: float) -> np.ndarray:
    """SPEC section 2 literally: distances to every other grid pixel and to the grid's outside."""
    _, height, width = layer_maps.shape
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    pair_distance = np.hypot(ys[:, None] - ys[None, :], xs[:, None] - xs[None, :])
    outside_distance = np.minimum.reduce([ys + 1, height - ys, xs + 1, width - xs]).astype(float)
    result = []
    for layer_map in layer_maps.reshape(len(layer_maps), -1):
        differs = layer_map[:, None] != layer_map[None, :]
        inside_distance = np.where(differs, pair_distance, np.inf).min(axis=1)
        distance = np.minimum(inside_distance, outside_distance)
        ramp = np.minimum(1.0, distance / tau)
        sem_dist = np.where(layer_map > 0, num_layers - (layer_map - 1) - 0.5 + 0.5 * ramp, 0.0)
        result.append(sem_dist.reshape(height, width))
    return np.stack(result)


@pytest.mark.parametrize("tau", [0.5, 1.0, 1.7, 2.5, 3.5, 6.0, 40.0])
def test_sem_dist_equals_brute_force(tau):
    generator = torch.Generator().manual_seed(int(tau * 10))
    num_layers = 3
    blocky = torch.randint(0, num_layers + 1, (6, 4, 5), generator=generator)
    blocky = blocky.repeat_interleave(4, dim=1).repeat_interleave(3, dim=2)  # (6, 16, 15) regions
    noisy = torch.randint(0, num_layers + 1, (2, 16, 15), generator=generator)
    layer_maps = torch.cat([blocky, noisy])
    sem_dist = sem_dist_from_layers(layer_maps, num_layers, tau)
    expected = brute_force_sem_dist(layer_maps.numpy(), num_layers, tau)
    np.testing.assert_allclose(sem_dist.numpy(), expected, atol=1e-6)


def test_roi_grid_centres_by_hand():
    rois = torch.tensor([[0.0, 0.0, 4.0, 4.0], [-3.0, 1.0, 1.0, 9.0]])
    rows, columns, inside = roi_grid_pixels(rois, resolution=2, height=6, width=6)
    assert columns.tolist() == [[1, 3], [0, 0]]  # centres x = 1, 3 and -2, 0 (clamped)
    assert rows.tolist() == [[1, 3], [3, 5]]  # centres y = 1, 3 and 3, 7 (clamped)
    assert inside.tolist() == [[[True, True], [True, True]], [[False, True], [False, False]]]


def test_roi_targets_equal_the_image_maps_sampled_at_the_grid_centres():
    generator = torch.Generator().manual_seed(3)
    resolution, num_layers, tau = 14, 3, 1.75
    height = width = 40
    amodal, visible, depth_rank = random_scene(generator, height, 8)
    in_front = resolve_depth_order(amodal, visible, depth_rank, NO_CONSTRAINTS)
    layer_maps = instance_layering_maps(amodal, visible, in_front, num_layers).numpy()

    num_rois = 60
    gt_index = torch.randint(0, len(amodal), (num_rois,), generator=generator)
    corners = torch.rand((num_rois, 2), generator=generator, dtype=torch.float64) * 60 - 10  # partly outside
    sizes = torch.rand((num_rois, 2), generator=generator, dtype=torch.float64) * 30 + 2
    rois = torch.cat([corners, corners + sizes], dim=1)
    roi_layers, roi_sem_dist = roi_layering_targets(
        amodal, visible, in_front, rois, gt_index, resolution, num_layers, tau
    )

    centres = np.arange(resolution) + 0.5
    for r, (x1, y1, x2, y2) in enumerate(rois.numpy()):
        columns = np.floor(x1 + centres * (x2 - x1) / resolution).astype(int)
        rows = np.floor(y1 + centres * (y2 - y1) / resolution).astype(int)
        inside = ((rows >= 0) & (rows < height))[:, None] & ((columns >= 0) & (columns < width))[None, :]
        clamped = np.ix_(np.clip(rows, 0, height - 1), np.clip(columns, 0, width - 1))
        expected = np.where(inside, layer_maps[gt_index[r].item()][clamped], 0)
        np.testing.assert_array_equal(roi_layers[r].numpy(), expected)
    np.testing.assert_array_equal(
        roi_sem_dist.numpy(), sem_dist_from_layers(roi_layers, num_layers, tau).numpy()
    )
    assert (roi_layers > 0).sum() > 0 and (roi_layers == num_layers).sum() > 0


def test_empty_inputs():
    amodal = torch.zeros((0, 10, 10), dtype=torch.bool)
    in_front = torch.zeros((0, 0), dtype=torch.bool)
    assert global_layering_map(amodal, 3).tolist() == torch.zeros((10, 10), dtype=torch.long).tolist()
    assert instance_layering_maps(amodal, amodal, in_front, 3).shape == (0, 10, 10)
    layer_maps, sem_dist = roi_layering_targets(
        amodal, amodal, in_front, torch.zeros((0, 4)), torch.zeros(0, dtype=torch.long), 28, 3, 3.5
    )
    assert layer_maps.shape == sem_dist.shape == (0, 28, 28)
    assert occlusion_rate(amodal, amodal).shape == (0,)


def test_occlusion_rate_and_config_values():
    amodal, visible, _ = staircase()
    np.testing.assert_allclose(occlusion_rate(amodal, visible).numpy(), [0.0, 16 / 36, 16 / 36], atol=1e-7)
    assert resolve_dist_saturation(None, 28) == 3.5
    assert resolve_dist_saturation(2, 28) == 2.0
    with pytest.raises(ValueError, match="DIST_SATURATION"):
        resolve_dist_saturation(0, 28)
    with pytest.raises(ValueError, match="between 2 and 127"):
        sem_dist_from_layers(torch.ones((1, 4, 4), dtype=torch.long), num_layers=1, tau=1.0)
