"""Our Mask R-CNN against torchvision's with the same weights: detections, losses, gradients."""
import math

import pytest
import torch
from torchvision.models.detection.roi_heads import fastrcnn_loss, maskrcnn_loss
from torchvision.models.detection.rpn import RegionProposalNetwork as TorchvisionRPN

from testing import mask_iou, scenes, small_config
from sln_amodal.modeling.anchors import AnchorGenerator
from sln_amodal.modeling.box_coder import BoxCoder
from sln_amodal.modeling.box_head import fast_rcnn_losses
from sln_amodal.modeling.mask_branches.mask_rcnn import mask_rcnn_loss
from sln_amodal.modeling.matcher import Matcher
from sln_amodal.modeling import RoIBatch
from sln_amodal.modeling.rpn import RegionProposalNetwork, RPNHead
from sln_amodal.modeling.sampler import BalancedPositiveNegativeSampler
from sln_amodal.modeling.torchvision_reference import same_weights_pair

BETA = 1.0 / 9


@pytest.fixture(scope="module")
def models():
    return same_weights_pair(small_config())


@pytest.mark.parametrize("threads", [1, 2])
def test_eval_detections_match_torchvision(models, threads):
    torch.set_num_threads(threads)  # 2: RoIAlign spreads its RoIs over the threads (the fixture restores the count)
    reference, ours = models
    reference.eval()
    ours.eval()
    images, _ = scenes()
    with torch.no_grad():
        expected = reference(images)
        actual = ours(images)
    for image, exp, act in zip(images, expected, actual):
        assert len(exp["boxes"]) > 0
        assert len(act["boxes"]) == len(exp["boxes"])
        torch.testing.assert_close(act["boxes"], exp["boxes"], atol=1e-3, rtol=0)
        assert torch.equal(act["labels"], exp["labels"])
        torch.testing.assert_close(act["scores"], exp["scores"], atol=1e-5, rtol=0)
        assert act["masks"].shape == exp["masks"].shape == (len(exp["boxes"]), 1, *image.shape[-2:])
        assert mask_iou(act["masks"], exp["masks"]).min() > 0.99
        assert (act["masks"] - exp["masks"]).abs().max() < 1e-4


def test_training_losses_and_gradients_match_torchvision(models):
    reference, ours = models
    reference.train()
    ours.train()
    images, targets = scenes()
    reference_targets = [{**t, "masks": t["amodal_masks"]} for t in targets]
    # Same seed, same draws: both samplers call randperm in the same order.
    torch.manual_seed(7)
    expected = reference(images, reference_targets)
    torch.manual_seed(7)
    actual = ours(images, targets)
    assert set(actual) == set(expected)
    for name in expected:
        assert math.isfinite(actual[name].item())
        torch.testing.assert_close(actual[name], expected[name], atol=1e-5, rtol=1e-5)

    sum(expected.values()).backward()
    sum(actual.values()).backward()
    pairs = [
        (reference.roi_heads.mask_predictor.mask_fcn_logits.weight,
         ours.roi_heads.mask_branch.mask_fcn.predictor.weight),
        (reference.roi_heads.box_predictor.bbox_pred.weight, ours.roi_heads.box_predictor.bbox_pred.weight),
        (reference.rpn.head.cls_logits.weight, ours.rpn.head.objectness_logits.weight),
        (reference.backbone.fpn.layer_blocks[0][0].weight, ours.backbone.output_convs[0].weight),
        (reference.backbone.body.layer2[0].conv2.weight, ours.backbone.bottom_up.res3[0].conv2.weight),
    ]
    for expected_param, actual_param in pairs:
        torch.testing.assert_close(actual_param.grad, expected_param.grad, atol=1e-5, rtol=1e-4)
    assert ours.backbone.bottom_up.res2[0].conv1.weight.grad is None  # frozen like torchvision's layer1


def test_fast_rcnn_loss_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    num_rois, num_classes = 64, 5
    logits = torch.randn(num_rois, num_classes, generator=g)
    deltas = torch.randn(num_rois, 4 * num_classes, generator=g)
    labels = torch.randint(0, num_classes, (num_rois,), generator=g)
    targets = torch.randn(num_rois, 4, generator=g)
    expected = fastrcnn_loss(logits, deltas, [labels[:40], labels[40:]], [targets[:40], targets[40:]])
    actual = fast_rcnn_losses(logits, deltas, labels, targets, BETA)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-6, rtol=1e-6)


def test_mask_loss_matches_torchvision():
    g = torch.Generator().manual_seed(1)
    sizes = [(48, 64), (40, 40)]
    gt_masks = [(torch.rand(3, h, w, generator=g) > 0.5).to(torch.uint8) for h, w in sizes]
    gt_labels = [torch.tensor([1, 3, 2]), torch.tensor([4, 1, 2])]
    boxes, matched = [], []
    for h, w in sizes:
        corner = torch.rand(6, 2, generator=g) * torch.tensor([w / 2, h / 2])
        boxes.append(torch.cat([corner, corner + torch.rand(6, 2, generator=g) * 20 + 2], dim=1))
        matched.append(torch.randint(0, 3, (6,), generator=g))
    logits = torch.randn(12, 5, 28, 28, generator=g)
    expected = maskrcnn_loss(logits, boxes, gt_masks, gt_labels, matched)
    rois = RoIBatch(boxes=boxes, labels=[lab[m] for lab, m in zip(gt_labels, matched)], matched_gt=matched)
    torch.testing.assert_close(mask_rcnn_loss(logits, rois, gt_masks), expected, atol=1e-6, rtol=1e-6)


def test_rpn_loss_matches_torchvision():
    cfg = small_config().MODEL.RPN
    g = torch.Generator().manual_seed(2)
    feature_sizes, batch_size = [(64, 80), (32, 40), (16, 20), (8, 10), (4, 5)], (256, 320)
    anchor_generator = AnchorGenerator(((32,), (64,), (128,), (256,), (512,)), ((0.5, 1.0, 2.0),))
    anchors = torch.cat(anchor_generator(batch_size, feature_sizes, torch.device("cpu")))
    objectness = torch.randn(2, len(anchors), generator=g)
    deltas = torch.randn(2, len(anchors), 4, generator=g) * 0.1
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 120.0, 150.0], [100.0, 30.0, 300.0, 250.0]])},
        {"boxes": torch.tensor([[40.0, 40.0, 90.0, 200.0]])},
    ]
    ours = RegionProposalNetwork(
        ("p2", "p3", "p4", "p5", "p6"),
        anchor_generator,
        RPNHead(8, 3),
        BoxCoder(cfg.BBOX_REG_WEIGHTS),
        Matcher(cfg.FG_IOU_THRESHOLD, cfg.BG_IOU_THRESHOLD, allow_low_quality_matches=True),
        BalancedPositiveNegativeSampler(cfg.BATCH_SIZE_PER_IMAGE, cfg.POSITIVE_FRACTION),
        cfg.PRE_NMS_TOPK_TRAIN, cfg.PRE_NMS_TOPK_TEST, cfg.POST_NMS_TOPK_TRAIN, cfg.POST_NMS_TOPK_TEST,
        cfg.NMS_THRESH, cfg.SCORE_THRESH, cfg.MIN_SIZE, cfg.SMOOTH_L1_BETA,
    )
    reference = TorchvisionRPN(
        None, None, cfg.FG_IOU_THRESHOLD, cfg.BG_IOU_THRESHOLD, cfg.BATCH_SIZE_PER_IMAGE, cfg.POSITIVE_FRACTION,
        {"training": 1, "testing": 1}, {"training": 1, "testing": 1}, cfg.NMS_THRESH,
    )
    labels, matched_boxes = reference.assign_targets_to_anchors([anchors, anchors], targets)
    regression_targets = reference.box_coder.encode(matched_boxes, [anchors, anchors])
    torch.manual_seed(3)
    expected = reference.compute_loss(objectness.reshape(-1, 1), deltas.reshape(-1, 4), labels, regression_targets)
    torch.manual_seed(3)
    actual = ours.losses(anchors, objectness, deltas, targets)
    torch.testing.assert_close(actual["loss_objectness"], expected[0], atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(actual["loss_rpn_box_reg"], expected[1], atol=1e-6, rtol=1e-6)
