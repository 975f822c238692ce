"""The SLN mask branch: targets it trains on, losses, gradients and the decoded outputs."""
import numpy as np
import pytest
import torch

from sln_amodal.config import ConfigError, get_default_config
from sln_amodal.data.synthetic import SceneParams, generate_scene, scene_rng
from sln_amodal.layering import global_layering_map, roi_cover_levels
from sln_amodal.modeling import build_model
from sln_amodal.modeling.mask_branches.sln_global_layering import global_layering_targets
from sln_amodal.modeling.layers import conv_stack
from sln_amodal.modeling.mask_branches import INPUT_IMAGE
from sln_amodal.modeling.mask_branches.sln import image_cells, weighted_cell_mean

SHARED_OUTPUT_FIELDS = ("boxes", "labels", "scores", "amodal_masks", "visible_masks", "occlude_rate", "depth_rank")


def tiny_sln_config():
    cfg = get_default_config()
    cfg.MODEL.ROI_MASK_HEAD.NAME = "SLNHead"
    cfg.MODEL.NUM_CLASSES = 6
    cfg.MODEL.BACKBONE.DEPTH = 18
    cfg.MODEL.BACKBONE.NORM = "GN"
    cfg.MODEL.BACKBONE.TRAINABLE_LAYERS = 5
    cfg.MODEL.FPN.OUT_CHANNELS = 32
    cfg.MODEL.ROI_BOX_HEAD.FC_DIM = 64
    cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 32
    cfg.MODEL.RPN.POST_NMS_TOPK_TEST = 50
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.0
    cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 5
    cfg.MODEL.SLN.GLOBAL_CONV_DIMS = (16,)
    cfg.MODEL.SLN.INSTANCE_CONV_DIMS = (32,)
    cfg.MODEL.SLN.DECONV_DIM = 32
    cfg.MODEL.SLN.SEM_DIST_CONV_DIMS = (16,)
    cfg.INPUT.MIN_SIZE_TEST = 96
    cfg.INPUT.MAX_SIZE_TEST = 128
    return cfg


def synthetic_batch(count=2, height=96, width=128):
    params = SceneParams(height=height, width=width, min_objects=3, max_objects=4, occlusion=0.8,
                         min_object_size=0.15, max_object_size=0.35, min_visible_area=16)
    images, targets = [], []
    for index in range(count):
        image, objects = generate_scene(scene_rng(7, "train", index), params)
        amodal = torch.from_numpy(np.stack([o.amodal for o in objects])).to(torch.uint8)
        boxes = []
        for mask in amodal:
            ys, xs = torch.where(mask.bool())
            boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        images.append(torch.from_numpy(image).permute(2, 0, 1).float() / 255)
        targets.append({
            "boxes": torch.tensor(boxes, dtype=torch.float32),
            "labels": torch.tensor([o.category_id for o in objects]),
            "amodal_masks": amodal,
            "visible_masks": torch.from_numpy(np.stack([o.visible for o in objects])).to(torch.uint8),
            "depth_rank": torch.tensor([o.depth_rank for o in objects]),
            "depth_constraints": torch.zeros((0, 2), dtype=torch.int64),
        })
    return images, targets


def test_global_targets_are_g_padded_and_sampled_at_cell_centres():
    first = torch.zeros((2, 6, 8), dtype=torch.uint8)
    first[0, :4, :4] = 1
    first[1, 2:6, 2:8] = 1
    second = torch.ones((1, 4, 4), dtype=torch.uint8)
    maps = [global_layering_map(masks.bool(), 3) for masks in (first, second)]
    targets = global_layering_targets(maps, (8, 8), stride=2)
    assert targets.shape == (2, 4, 4)
    expected_first = global_layering_map(first.bool(), 3)[1::2, 1::2]  # rows 1, 3, 5 then padding
    assert targets[0, :3].tolist() == expected_first.tolist()
    assert targets[0, 3].tolist() == [0, 0, 0, 0]  # padded rows are background
    assert targets[1].tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    assert targets[0, 1, 1] == 2  # (3, 3) is covered by both objects


def test_training_step_gives_every_sln_loss_and_reaches_every_module():
    torch.manual_seed(0)
    model = build_model(tiny_sln_config())
    model.train()
    images, targets = synthetic_batch()
    losses = model(images, targets)
    for name in ("loss_global_layering", "loss_instance_layering", "loss_sem_dist", "loss_classifier",
                 "loss_objectness"):
        assert torch.isfinite(losses[name]), name
    # Near-zero predictors: the layering losses start at the entropy of K + 1 uniform classes.
    uniform = np.log(model.roi_heads.mask_branch.num_layers + 1)
    assert losses["loss_global_layering"].item() == pytest.approx(uniform, abs=0.05)
    assert losses["loss_instance_layering"].item() == pytest.approx(uniform, abs=0.05)
    sum(losses.values()).backward()
    branch = model.roi_heads.mask_branch
    for module in (branch.global_layering, branch.instance_trunk, branch.sem_dist_predictor, model.backbone):
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        assert grads and all(g is not None for g in grads)
        assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("mask_head", ["SLNHead", "MaskRCNNHead"])
def test_channels_last_changes_the_memory_order_not_the_results(mask_head):
    cfg = tiny_sln_config()
    cfg.MODEL.ROI_MASK_HEAD.NAME = mask_head
    cfg.MODEL.SLN.IMAGE_CELLS = True  # the quickstart's SLN parts, some already channels-last
    cfg.MODEL.SLN.INSTANCE_ROI_CONTEXT = "single_layer"
    torch.manual_seed(0)
    reference, model = build_model(cfg), build_model(cfg)
    model.load_state_dict(reference.state_dict())
    model = model.to(memory_format=torch.channels_last)  # what SOLVER.CHANNELS_LAST trains
    assert model.backbone.bottom_up.res5[1].conv2.weight.is_contiguous(memory_format=torch.channels_last)
    images, targets = synthetic_batch()
    losses = []
    for network in (reference, model):
        torch.manual_seed(1)  # the same anchors and RoIs sampled
        losses.append(network(images, targets))
        sum(losses[-1].values()).backward()
    for name, expected in losses[0].items():
        assert torch.allclose(losses[1][name], expected, rtol=1e-5, atol=1e-6), name
    # Summed in another order, a gradient differs by rounding (1e-6 to 1e-3 of its norm here,
    # GroupNorm amplifying it); a misread layout would differ by its whole size.
    for (name, expected), actual in zip(reference.named_parameters(), model.parameters()):
        if expected.grad is not None:
            assert (actual.grad - expected.grad).norm() <= 1e-2 * expected.grad.norm(), name
    reference.eval()
    model.eval()
    with torch.no_grad():
        for expected, actual in zip(reference(images), model(images)):
            assert torch.equal(actual["labels"], expected["labels"])
            assert torch.equal(actual["depth_rank"], expected["depth_rank"])
            for field in ("boxes", "scores", "amodal_masks", "visible_masks"):
                assert torch.allclose(actual[field].float(), expected[field].float(), atol=1e-4), field


def test_images_without_objects_train_with_zero_mask_losses():
    torch.manual_seed(0)
    model = build_model(tiny_sln_config())
    model.train()
    images, targets = synthetic_batch(count=1)
    empty = {key: value[:0] for key, value in targets[0].items()}
    losses = model(images, [empty])
    assert losses["loss_sem_dist"].item() == 0 and losses["loss_instance_layering"].item() == 0
    assert torch.isfinite(losses["loss_global_layering"])
    sum(losses.values()).backward()


def test_eval_outputs_share_the_head_independent_fields_in_original_pixels():
    torch.manual_seed(0)
    model = build_model(tiny_sln_config())
    model.eval()
    images, _ = synthetic_batch(count=2)
    images[1] = images[1][:, :80, :100]
    with torch.no_grad():
        outputs = model(images)
    for image, output in zip(images, outputs):
        assert set(SHARED_OUTPUT_FIELDS) <= set(output)
        detections = len(output["boxes"])
        assert detections == 5
        assert output["amodal_masks"].shape == (detections, *image.shape[-2:])
        assert output["amodal_masks"].dtype == torch.bool
        assert not (output["visible_masks"] & ~output["amodal_masks"]).any()
        assert sorted(output["depth_rank"].tolist()) == list(range(1, detections + 1))
        assert output["sem_dist"].shape == (detections, 28, 28)
        assert ((output["occlude_rate"] >= 0) & (output["occlude_rate"] <= 1)).all()


def test_mask_rcnn_head_gives_the_same_fields():
    torch.manual_seed(0)
    cfg = tiny_sln_config()
    cfg.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNHead"
    cfg.MODEL.ROI_MASK_HEAD.CONV_DIMS = (16,)
    cfg.MODEL.ROI_MASK_HEAD.DECONV_DIM = 16
    model = build_model(cfg)
    model.eval()
    images, _ = synthetic_batch(count=1)
    with torch.no_grad():
        output = model(images)[0]
    assert set(SHARED_OUTPUT_FIELDS) <= set(output)
    assert torch.equal(output["amodal_masks"], output["masks"][:, 0] >= 0.5)
    assert torch.equal(output["visible_masks"], output["amodal_masks"])
    # One mask per object leaves every pair unordered, so the ranks follow the scores.
    assert output["depth_rank"].tolist() == list(range(1, len(output["scores"]) + 1))


def test_roi_resolution_must_match_the_pooler():
    cfg = tiny_sln_config()
    cfg.MODEL.SLN.ROI_RESOLUTION = 32
    with pytest.raises(ConfigError, match="ROI_RESOLUTION"):
        build_model(cfg)


def test_cover_levels_count_the_amodal_masks_over_each_cell_centre():
    amodal = torch.zeros((3, 8, 8), dtype=torch.bool)
    amodal[0, 0:4, 0:6] = True
    amodal[1, 2:8, 4:8] = True
    amodal[2, 6:8, 0:2] = True  # overlaps nothing
    rois = torch.tensor([[0.0, 0.0, 8.0, 8.0], [4.0, 2.0, 6.0, 4.0], [-8.0, 0.0, 0.0, 8.0]])
    levels = roi_cover_levels(global_layering_map(amodal, 2), rois, resolution=8)
    expected = amodal.sum(0)
    assert torch.equal(levels[0], expected)
    assert (levels[1] == 2).all()  # the RoI lies inside the overlap
    assert not levels[2].any()  # every cell centre lies outside the image


def test_weighted_cell_mean_is_the_weighted_mean_feature():
    generator = torch.Generator().manual_seed(0)
    pooled = torch.randn((3, 5, 4, 4), generator=generator)
    weights = torch.rand((3, 1, 4, 4), generator=generator)
    weights[2] = 0  # no single-covered cell: a zero context, not a division by zero
    context = weighted_cell_mean(pooled, weights)
    expected = (pooled * weights).sum(dim=(2, 3)) / weights.sum(dim=(2, 3))
    assert torch.allclose(context[:2, :, 0, 0], expected[:2], atol=1e-6)
    assert torch.equal(context[2], torch.zeros((5, 1, 1)))


def test_image_cells_compare_each_cell_colour_with_the_visible_mean():
    generator = torch.Generator().manual_seed(0)
    crops = torch.randn((2, 3, 4, 4), generator=generator)
    weights = torch.rand((2, 1, 4, 4), generator=generator)
    weights[1] = 0  # nothing called visible: a zero mean colour, not a division by zero
    cells = image_cells(crops, weights)
    assert cells.shape == (2, 7, 4, 4)
    assert torch.equal(cells[:, :3], crops)
    mean = (crops[0] * weights[0]).sum(dim=(1, 2)) / weights[0].sum()
    assert torch.allclose(cells[0, 3:6], mean[:, None, None].expand(3, 4, 4), atol=1e-6)
    assert torch.allclose(cells[0, 6], (crops[0] - mean[:, None, None]).square().sum(dim=0), atol=1e-5)
    assert torch.equal(cells[1, 3:6], torch.zeros((3, 4, 4)))
    assert torch.allclose(cells[1, 6], crops[1].square().sum(dim=0))


def test_image_cells_reach_the_sem_dist_trunk_from_the_input_pixels():
    torch.manual_seed(0)
    cfg = tiny_sln_config()
    cfg.MODEL.SLN.IMAGE_CELLS = True
    model = build_model(cfg)
    model.train()
    images, targets = synthetic_batch(count=1)
    losses = model(images, targets)
    sum(losses.values()).backward()
    assert all(p.grad is not None for p in model.roi_heads.mask_branch.sem_dist_trunk.parameters())
    # The same network on other pixels inside the RoIs gives other S maps: the trunk reads the image.
    model.eval()
    branch = model.roi_heads.mask_branch
    batch, _ = model.transform(images)
    features = model.extract_features(batch)
    boxes = [targets[0]["boxes"] * batch.shape[-1] / images[0].shape[-1]]
    with torch.no_grad():
        sem_dist = branch.predict(features, boxes)[2]
        altered = branch.predict({**features, INPUT_IMAGE: features[INPUT_IMAGE].flip(-1)}, boxes)[2]
    assert not torch.allclose(sem_dist, altered)


def test_dilated_stacks_keep_the_grid_size_and_need_one_dilation_per_convolution():
    stack, channels = conv_stack(6, [4, 4], dilations=[2, 4])
    assert channels == 4 and stack(torch.zeros((1, 6, 14, 14))).shape == (1, 4, 14, 14)
    assert [layer.dilation for layer in stack if isinstance(layer, torch.nn.Conv2d)] == [(2, 2), (4, 4)]
    with pytest.raises(ValueError, match="one dilation per convolution"):
        conv_stack(6, [4, 4], dilations=[2])


def _layering_losses(overlap_cell_weight, foreign_cell_weight=1.0, **sln):
    torch.manual_seed(0)
    cfg = tiny_sln_config()
    cfg.MODEL.SLN.OVERLAP_CELL_WEIGHT = overlap_cell_weight
    cfg.MODEL.SLN.FOREIGN_CELL_WEIGHT = foreign_cell_weight
    for key, value in sln.items():
        cfg.MODEL.SLN[key] = value
    model = build_model(cfg)
    model.train()
    branch = model.roi_heads.mask_branch
    captured = {}
    original = branch.losses

    def capture(global_logits, instance_logits, sem_dist, rois, targets):
        captured.update(instance_logits=instance_logits, sem_dist=sem_dist, rois=rois, targets=targets)
        return original(global_logits, instance_logits, sem_dist, rois, targets)

    branch.losses = capture
    images, targets = synthetic_batch()
    torch.manual_seed(1)  # the same proposals and samples for every weight
    losses = model(images, targets)
    return branch, losses, captured


def _global_maps(branch, captured):
    return [global_layering_map(t["amodal_masks"].bool(), branch.num_layers) for t in captured["targets"]]


def test_overlap_and_foreign_cells_weigh_more_in_the_layering_losses():
    branch, losses, captured = _layering_losses(4.0, 2.5, INSTANCE_CONV_DILATIONS=(2,), SEM_DIST_CONV_DILATIONS=(2,),
                                                INSTANCE_ROI_CONTEXT="single_layer", DIST_SATURATION=1.0)
    layers, sem_dist_targets, cover = branch.roi_targets(
        captured["rois"], captured["targets"], _global_maps(branch, captured))
    decided = (cover >= 2) & (layers > 0)
    foreign = (cover >= 1) & (layers == 0)
    assert decided.any() and foreign.any() and (~decided & ~foreign).any()
    weights = 1.0 + 3.0 * decided.float() + 1.5 * foreign.float()
    instance = torch.nn.functional.cross_entropy(captured["instance_logits"], layers, reduction="none")
    sem_dist = torch.nn.functional.smooth_l1_loss(captured["sem_dist"], sem_dist_targets, reduction="none",
                                                  beta=branch.smooth_l1_beta)
    assert losses["loss_instance_layering"].item() == pytest.approx((instance * weights).sum().item()
                                                                    / weights.sum().item(), rel=1e-5)
    assert losses["loss_sem_dist"].item() == pytest.approx((sem_dist * weights).sum().item()
                                                           / weights.sum().item(), rel=1e-5)
    # DIST_SATURATION 1: integer levels, K on the visible cells.
    assert set(sem_dist_targets.unique().tolist()) <= {0.0, 1.0, 2.0, 3.0}


def test_unit_overlap_weight_is_the_plain_mean():
    branch, losses, captured = _layering_losses(1.0)
    layers, _, _ = branch.roi_targets(captured["rois"], captured["targets"], _global_maps(branch, captured))
    plain = torch.nn.functional.cross_entropy(captured["instance_logits"], layers)
    assert losses["loss_instance_layering"].item() == pytest.approx(plain.item(), rel=1e-5)


def test_roi_scale_trains_on_and_pastes_into_the_scaled_boxes():
    _, _, plain = _layering_losses(1.0)
    branch, _, scaled = _layering_losses(1.0, ROI_SCALE=1.5)
    for plain_boxes, scaled_boxes in zip(plain["rois"].boxes, scaled["rois"].boxes):
        centres = (plain_boxes[:, :2] + plain_boxes[:, 2:]) / 2
        assert torch.allclose((scaled_boxes[:, :2] + scaled_boxes[:, 2:]) / 2, centres, atol=1e-4)
        plain_sizes, scaled_sizes = plain_boxes[:, 2:] - plain_boxes[:, :2], scaled_boxes[:, 2:] - scaled_boxes[:, :2]
        assert torch.allclose(scaled_sizes, 1.5 * plain_sizes, atol=1e-4)
    # S at the visible level everywhere: the masks fill the scaled box, 30 x 30 pixels about the 20 x 20 box.
    resolution = branch.resolution
    detection = {"boxes": torch.tensor([[40.0, 40.0, 60.0, 60.0]]), "scores": torch.tensor([0.9]),
                 "labels": torch.tensor([1]), "sem_dist": torch.full((1, resolution, resolution), 3.0)}
    output = branch.finalize(detection, (128, 128))
    expected = torch.zeros((128, 128), dtype=torch.bool)
    expected[35:65, 35:65] = True
    assert torch.equal(output["amodal_masks"][0].bool(), expected)
    assert torch.equal(output["visible_masks"][0].bool(), expected)
    assert torch.equal(output["boxes"], detection["boxes"])  # the detection keeps its own box


def test_roi_scale_below_one_is_an_error():
    cfg = tiny_sln_config()
    cfg.MODEL.SLN.ROI_SCALE = 0.9
    with pytest.raises(ValueError, match="ROI_SCALE"):
        build_model(cfg)


def test_unknown_roi_context_is_an_error():
    cfg = tiny_sln_config()
    cfg.MODEL.SLN.INSTANCE_ROI_CONTEXT = "everything"
    with pytest.raises(ValueError, match="INSTANCE_ROI_CONTEXT"):
        build_model(cfg)
