"""Mask R-CNN building blocks against torchvision's, and the model's options on a small ResNet-18."""
import math

import pytest
import torch
from torchvision.models.detection import _utils as tv_utils
from torchvision.models.detection.anchor_utils import AnchorGenerator as TorchvisionAnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import paste_masks_in_image as torchvision_paste_masks
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign as TorchvisionMultiScaleRoIAlign
from torchvision.ops import box_iou
from torchvision.ops import roi_align as torchvision_roi_align
from torchvision.ops.poolers import LevelMapper

from testing import resnet18_config, scenes, small_config
from sln_amodal.modeling import MaskBranch, RoIBatch, build_model, register_mask_branch
from sln_amodal.modeling.anchors import AnchorGenerator
from sln_amodal.modeling.backbone import ResNet
from sln_amodal.modeling.box_coder import BoxCoder
from sln_amodal.modeling.build import build_image_transform
from sln_amodal.modeling.mask_branches.mask_rcnn import MaskRCNNHead
from sln_amodal.modeling.image_transform import paste_masks_in_image
from sln_amodal.modeling.mask_branches.roi_masks import graph_keeping_zero
from sln_amodal.modeling.matcher import Matcher
from sln_amodal.modeling.norm import FrozenBatchNorm2d, conv_norm
from sln_amodal.modeling.poolers import MultiScaleRoIAlign, assign_boxes_to_levels
from sln_amodal.modeling import roi_align as roi_align_module
from sln_amodal.modeling.roi_align import roi_align, roi_align_gradient
from sln_amodal.modeling.torchvision_reference import torchvision_reference

ANCHOR_SIZES = ((32,), (64,), (128,), (256,), (512,))
RATIOS = ((0.5, 1.0, 2.0),)


def random_boxes(g, count, width, height, min_size=1.0):
    corner = torch.rand(count, 2, generator=g) * torch.tensor([width, height])
    size = torch.rand(count, 2, generator=g) * torch.tensor([width, height]) / 2 + min_size
    return torch.cat([corner, corner + size], dim=1)


def train_step(model, images, targets):
    model.train()
    losses = model(images, targets)
    sum(losses.values()).backward()
    return losses


# --------------------------------------------------------------------------- building blocks
@pytest.mark.parametrize("batch_size", [(256, 320), (800, 1088)])
def test_anchors_match_torchvision(batch_size):
    feature_sizes = [(math.ceil(batch_size[0] / s), math.ceil(batch_size[1] / s)) for s in (4, 8, 16, 32, 64)]
    features = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
    image_list = ImageList(torch.zeros(1, 3, *batch_size), [batch_size])
    expected = TorchvisionAnchorGenerator(ANCHOR_SIZES, RATIOS * 5)(image_list, features)[0]
    actual = AnchorGenerator(ANCHOR_SIZES, RATIOS)(batch_size, feature_sizes, torch.device("cpu"))
    assert torch.equal(torch.cat(actual), expected)


def test_level_mapping_and_pooling_match_torchvision():
    g = torch.Generator().manual_seed(0)
    exact = torch.tensor([[0.0, 0.0, 224.0, 224.0], [10.0, 10.0, 122.0, 122.0], [0.0, 0.0, 600.0, 500.0]])
    boxes = torch.cat([random_boxes(g, 200, 600, 500), exact])
    expected_levels = LevelMapper(2, 5)([boxes])
    assert torch.equal(assign_boxes_to_levels(boxes, 2, 5, 224, 4), expected_levels)
    assert set(expected_levels.tolist()) == {0, 1, 2, 3}

    features = {f"p{level}": torch.randn(2, 8, 640 // 2**level, 704 // 2**level, generator=g) for level in (2, 3, 4, 5)}
    per_image = [boxes[:120], boxes[120:]]
    ours = MultiScaleRoIAlign(list(features), [4, 8, 16, 32], 7, 2, 224, 4, aligned=False)
    reference = TorchvisionMultiScaleRoIAlign(list(features), 7, 2)
    torch.testing.assert_close(ours(features, per_image), reference(features, per_image, [(600, 700), (640, 704)]))


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("num_rois", [0, 1, 2, 37])
def test_roi_align_matches_torchvision_in_output_and_gradient(threads, num_rois):
    torch.set_num_threads(threads)  # the fixture restores the count
    g = torch.Generator().manual_seed(num_rois)
    features = torch.randn(2, 8, 30, 40, generator=g, requires_grad=True)
    # Boxes reaching past every border of the 160 x 120 input (points more than a pixel outside
    # weigh nothing), and one of zero size (the legacy RoIAlign widens it to one pixel).
    boxes = random_boxes(g, num_rois, 190, 150, min_size=2.0) - 20.0
    if num_rois:
        boxes[0] = torch.tensor([50.0, 40.0, 50.0, 40.0])
    rois = torch.cat([torch.randint(0, 2, (num_rois, 1), generator=g).float(), boxes], dim=1)
    for sampling_ratio, aligned in [(1, True), (2, False), (3, True), (4, False), (0, True)]:
        expected = torchvision_roi_align(features, rois, (7, 7), 0.25, sampling_ratio, aligned)
        actual = roi_align(features, rois, (7, 7), 0.25, sampling_ratio, aligned)
        assert torch.equal(actual, expected)  # each RoI's output comes from the same kernel
        weights = torch.randn(expected.shape, generator=g)
        (expected_grad,) = torch.autograd.grad((expected * weights).sum(), features)
        (actual_grad,) = torch.autograd.grad((actual * weights).sum(), features)
        if sampling_ratio in (1, 2, 4):  # the same terms in the same order, and an exact average
            assert torch.equal(actual_grad, expected_grad)
        else:
            torch.testing.assert_close(actual_grad, expected_grad, atol=1e-5, rtol=1e-5)


def test_roi_align_gradient_is_the_same_block_by_block(monkeypatch):
    g = torch.Generator().manual_seed(5)
    features = torch.randn(3, 4, 20, 24, generator=g)
    boxes = random_boxes(g, 29, 90, 70, min_size=1.0)
    rois = torch.cat([torch.randint(0, 3, (29, 1), generator=g).float(), boxes], dim=1)
    grad_output = torch.randn(29, 4, 5, 5, generator=g)
    whole = roi_align_gradient(grad_output, rois, features.shape, 0.25, 2, True)
    per_roi = 5 * 5 * 2 * 2 * 4 * 4  # bins x points x corners x channels
    monkeypatch.setattr(roi_align_module, "_GRADIENT_BLOCK_ELEMENTS", 3 * per_roi)
    assert torch.equal(roi_align_gradient(grad_output, rois, features.shape, 0.25, 2, True), whole)
    assert whole.abs().sum() > 0


def test_matcher_matches_torchvision_including_low_quality_matches():
    g = torch.Generator().manual_seed(1)
    quality = torch.rand(5, 300, generator=g) * 0.8
    quality[2] = 0.0  # a GT that overlaps nothing keeps its (tied) best predictions
    quality[3, 17] = 0.95
    for high, low, low_quality in [(0.7, 0.3, True), (0.5, 0.5, False)]:
        expected = tv_utils.Matcher(high, low, low_quality)(quality.clone())
        assert torch.equal(Matcher(high, low, low_quality)(quality.clone()), expected)


def test_box_coder_matches_torchvision_and_inverts():
    g = torch.Generator().manual_seed(2)
    references = random_boxes(g, 50, 300, 200)
    targets = random_boxes(g, 50, 300, 200)
    weights = (10.0, 10.0, 5.0, 5.0)
    reference_coder = tv_utils.BoxCoder(weights)
    ours = BoxCoder(weights)
    deltas = ours.encode(targets, references)
    torch.testing.assert_close(deltas, reference_coder.encode_single(targets, references))
    torch.testing.assert_close(ours.decode(deltas, references)[:, 0], targets, atol=1e-3, rtol=0)
    many = torch.randn(50, 12, generator=g)
    expected = reference_coder.decode_single(many, references)
    torch.testing.assert_close(ours.decode(many, references).reshape(50, 12), expected)


def test_paste_masks_matches_torchvision():
    g = torch.Generator().manual_seed(3)
    height, width = 90, 120
    boxes = torch.cat(
        [
            random_boxes(g, 20, width, height),
            # Partly outside the image, tiny, and the whole image.
            torch.tensor([[-15.5, -7.2, 40.3, 30.9], [100.2, 70.7, 160.0, 120.0], [50.0, 50.0, 50.4, 50.3]]),
            torch.tensor([[0.0, 0.0, 120.0, 90.0]]),
        ]
    )
    masks = torch.rand(len(boxes), 1, 28, 28, generator=g)
    expected = torchvision_paste_masks(masks, boxes, (height, width))
    actual = paste_masks_in_image(masks, boxes, (height, width))
    torch.testing.assert_close(actual, expected, atol=1e-5, rtol=0)
    multi_channel = paste_masks_in_image(masks.repeat(1, 3, 1, 1), boxes, (height, width))
    assert torch.equal(multi_channel[:, 2:], actual)
    assert paste_masks_in_image(masks[:0], boxes[:0], (height, width)).shape == (0, 1, height, width)


def test_image_transform_matches_torchvision_in_eval_and_only_pads_in_training():
    cfg = small_config()
    images, _ = scenes()
    ours = build_image_transform(cfg).eval()
    reference = GeneralizedRCNNTransform(256, 320, list(cfg.MODEL.PIXEL_MEAN), list(cfg.MODEL.PIXEL_STD)).eval()
    expected = reference(images)[0]
    batch, sizes = ours(images)
    assert torch.equal(batch, expected.tensors)
    assert sizes == expected.image_sizes

    batch, sizes = ours.train()(images)
    assert sizes == [tuple(image.shape[-2:]) for image in images]
    assert batch.shape[-2] % 32 == 0 and batch.shape[-1] % 32 == 0
    assert torch.all(batch[1, :, 300:, :] == 0) and torch.all(batch[0, :, :, 320:] == 0)


# ----------------------------------------------------------------------------- whole models
def test_resnet18_fpn_trains_one_step():
    torch.manual_seed(0)
    model = build_model(resnet18_config())
    assert model.backbone.bottom_up.out_channels == {"res2": 64, "res3": 128, "res4": 256, "res5": 512}
    images, targets = scenes()
    trainable = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    losses = train_step(model, images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    params = dict(model.named_parameters())
    assert all(params[n].grad is not None for n in trainable)
    torch.optim.SGD([params[n] for n in trainable], lr=0.01).step()
    classifier = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(params[classifier], trainable[classifier])
    assert not params["backbone.bottom_up.stem.conv.weight"].requires_grad  # TRAINABLE_LAYERS = 3


def test_stage_widths_narrow_every_stage_and_train():
    torch.manual_seed(0)
    model = build_model(resnet18_config(BACKBONE__NORM="GN", BACKBONE__STAGE_WIDTHS=(32, 64, 128, 256)))
    assert model.backbone.bottom_up.out_channels == {"res2": 32, "res3": 64, "res4": 128, "res5": 256}
    assert model.backbone.bottom_up.res5[1].conv2.weight.shape == (256, 256, 3, 3)
    losses = train_step(model, *scenes())
    assert all(math.isfinite(v.item()) and v.item() > 0 for v in losses.values())
    # A bottleneck's output is 4x its 3x3 width.
    bottleneck = ResNet(50, "FrozenBN", 1e-5, 32, 3, stage_widths=(16, 32, 64, 128))
    assert bottleneck.out_channels == {"res2": 64, "res3": 128, "res4": 256, "res5": 512}
    with pytest.raises(ValueError, match="STAGE_WIDTHS"):
        torchvision_reference(resnet18_config(BACKBONE__STAGE_WIDTHS=(32, 64, 128, 256)))


def test_class_agnostic_heads_train_and_predict():
    torch.manual_seed(1)
    cfg = resnet18_config(ROI_BOX_HEAD__CLS_AGNOSTIC_BBOX_REG=True, ROI_MASK_HEAD__CLS_AGNOSTIC_MASK=True)
    model = build_model(cfg)
    assert model.roi_heads.box_predictor.bbox_pred.out_features == 4
    assert model.roi_heads.mask_branch.mask_fcn.predictor.out_channels == 1
    images, targets = scenes()
    assert all(math.isfinite(v.item()) for v in train_step(model, images, targets).values())
    model.eval()
    with torch.no_grad():
        detections = model(images)
    for image, detection in zip(images, detections):
        count = len(detection["boxes"])
        assert 0 < count <= cfg.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE
        assert detection["masks"].shape == (count, 1, *image.shape[-2:])
        assert detection["labels"].min() >= 1 and detection["labels"].max() <= cfg.MODEL.NUM_CLASSES


@pytest.mark.parametrize("bias", [False, True])
def test_frozen_batch_norm_folds_into_the_convolution_in_eval_mode(bias):
    g = torch.Generator().manual_seed(3)
    conv = torch.nn.Conv2d(8, 6, 3, stride=2, padding=1, groups=2, bias=bias)
    norm = FrozenBatchNorm2d(6, eps=1e-5)
    for buffer in (norm.weight, norm.bias, norm.running_mean):
        buffer.copy_(torch.randn(6, generator=g))
    norm.running_var.copy_(torch.rand(6, generator=g) + 0.1)
    x = torch.randn(2, 8, 9, 11, generator=g)
    expected = norm(conv(x))
    assert torch.equal(conv_norm(conv, norm, x), expected)  # training: the two steps as they are
    norm.eval()
    torch.testing.assert_close(conv_norm(conv, norm, x), expected, atol=1e-5, rtol=1e-5)
    folded = conv_norm(conv, norm, x.requires_grad_())  # the fold stays differentiable
    folded.sum().backward()
    assert conv.weight.grad is not None and x.grad is not None


@pytest.mark.parametrize("norm", ["BN", "GN"])
def test_trainable_norms_and_frozen_stages(norm):
    cfg = resnet18_config(BACKBONE__NORM=norm, BACKBONE__TRAINABLE_LAYERS=2)
    model = build_model(cfg)
    resnet = model.backbone.bottom_up
    frozen_norm = FrozenBatchNorm2d if norm == "BN" else torch.nn.GroupNorm
    trained_norm = torch.nn.BatchNorm2d if norm == "BN" else torch.nn.GroupNorm
    assert isinstance(resnet.res3[0].norm1, frozen_norm) and isinstance(resnet.res4[0].norm1, trained_norm)
    assert not any(p.requires_grad for p in resnet.res3.parameters())
    assert all(p.requires_grad for p in resnet.res4.parameters())
    images, targets = scenes()
    assert all(math.isfinite(v.item()) for v in train_step(model, images, targets).values())


def test_mask_target_key_selects_the_visible_masks():
    images, targets = scenes()
    losses = {}
    for key in ("amodal_masks", "visible_masks"):
        torch.manual_seed(2)
        model = build_model(resnet18_config(ROI_MASK_HEAD__TARGET_KEY=key)).train()
        torch.manual_seed(3)
        losses[key] = model(images, targets)
    assert losses["amodal_masks"]["loss_classifier"] == losses["visible_masks"]["loss_classifier"]
    assert losses["amodal_masks"]["loss_mask"] != losses["visible_masks"]["loss_mask"]


def test_image_without_objects_trains():
    torch.manual_seed(4)
    model = build_model(resnet18_config())
    images, targets = scenes()
    targets[1] = {
        "boxes": torch.zeros(0, 4),
        "labels": torch.zeros(0, dtype=torch.int64),
        "amodal_masks": torch.zeros(0, *images[1].shape[-2:], dtype=torch.uint8),
    }
    assert all(math.isfinite(v.item()) for v in train_step(model, images, targets).values())


def test_bad_targets_name_the_image_and_field():
    model = build_model(resnet18_config()).train()
    images, targets = scenes()
    targets[1]["boxes"][0] = torch.tensor([50.0, 50.0, 40.0, 80.0])
    targets[1]["file_name"] = "bad.jpg"
    with pytest.raises(ValueError, match=r"targets\[1\] \(image bad.jpg\): 'boxes'"):
        model(images, targets)
    with pytest.raises(ValueError, match="one target dict per image"):
        model(images)
    with pytest.raises(ValueError, match=r"images\[0\]"):
        model.eval()([torch.zeros(3, 50, 50, dtype=torch.uint8)])


@register_mask_branch("TestLayeredMaskBranch")
class LayeredMaskBranch(MaskBranch):
    """A plug-in mask branch: the standard head plus a 3-channel RoI map, as a layering head would."""

    pasted_fields = ("layer_maps",)

    def __init__(self, *, standard: MaskRCNNHead, num_classes: int):
        super().__init__()
        self.standard = standard
        self.layers = torch.nn.Conv2d(num_classes + 1, 3, 1)
        self.seen: list[RoIBatch] = []

    @classmethod
    def from_config(cls, cfg, backbone):
        return {"standard": MaskRCNNHead(**MaskRCNNHead.from_config(cfg, backbone)),
                "num_classes": cfg.MODEL.NUM_CLASSES}

    def forward(self, features, rois, image_sizes, targets=None):
        self.seen.append(rois)
        logits = self.standard.mask_fcn(self.standard.pooler(features, rois.boxes))
        if self.training:
            return {"loss_layers": self.layers(logits).square().mean()}
        maps = self.layers(logits).split([len(b) for b in rois.boxes])
        return [{"layer_maps": m, "layer_count": m.new_full((len(m),), 3.0)} for m in maps]

    def finalize(self, detection, image_size):
        amodal = detection["layer_maps"][:, 0] > 0
        return {
            **detection,
            "amodal_masks": amodal,
            "visible_masks": amodal & (detection["layer_maps"][:, 1] > 0),
            "occlude_rate": torch.zeros(len(amodal)),
            "depth_rank": torch.arange(1, len(amodal) + 1),
        }


def test_a_mask_branch_is_a_registered_mask_branch_subclass():
    with pytest.raises(ValueError, match="already registered"):
        register_mask_branch("TestLayeredMaskBranch")(LayeredMaskBranch)
    with pytest.raises(TypeError, match="MaskBranch subclass"):
        register_mask_branch("TestPlainModule")(torch.nn.Module)


class BoxMovingBranch(LayeredMaskBranch):
    """Breaks the contract: its eval outputs replace the box branch's boxes."""

    def forward(self, features, rois, image_sizes, targets=None):
        outputs = super().forward(features, rois, image_sizes, targets)
        if self.training:
            return outputs
        return [{**output, "boxes": torch.zeros(len(b), 4)} for output, b in zip(outputs, rois.boxes)]


register_mask_branch("TestBoxMovingBranch")(BoxMovingBranch)


def test_a_mask_branch_cannot_replace_boxes_or_labels():
    model = build_model(resnet18_config(ROI_MASK_HEAD__NAME="TestBoxMovingBranch")).eval()
    images, _ = scenes()
    with torch.no_grad(), pytest.raises(ValueError, match=r"returned \['boxes'\], which the box branch decides"):
        model(images)


def test_pluggable_mask_branch_gets_positives_and_its_maps_are_pasted():
    torch.manual_seed(5)
    cfg = resnet18_config(ROI_MASK_HEAD__NAME="TestLayeredMaskBranch")
    model = build_model(cfg)
    images, targets = scenes()
    losses = train_step(model, images, targets)
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_layers", "loss_objectness", "loss_rpn_box_reg"}
    rois = model.roi_heads.mask_branch.seen[-1]
    for boxes, labels, matched, target in zip(rois.boxes, rois.labels, rois.matched_gt, targets):
        assert len(boxes) > 0 and torch.equal(labels, target["labels"][matched])
        # Every positive overlaps its matched GT box at the foreground IoU threshold.
        iou = torch.diag(box_iou(boxes, target["boxes"][matched]))
        assert iou.min() >= cfg.MODEL.ROI_HEADS.FG_IOU_THRESHOLD

    model.eval()
    with torch.no_grad():
        detections = model(images)
    for image, detection in zip(images, detections):
        count = len(detection["boxes"])
        assert detection["layer_maps"].shape == (count, 3, *image.shape[-2:])
        assert torch.equal(detection["layer_count"], torch.full((count,), 3.0))
        assert detection["amodal_masks"].shape == (count, *image.shape[-2:])  # finalize ran
    assert model.roi_heads.mask_branch.seen[-1].matched_gt is None


def test_graph_keeping_zero_is_zero_and_reaches_every_tensor():
    """The loss of a batch without positive RoIs: 0, with a (zero) gradient for every parameter behind it."""
    features = torch.ones(2, 3, requires_grad=True)
    empty = torch.zeros(0, 4, requires_grad=True)
    layer = torch.nn.Linear(3, 1)
    zero = graph_keeping_zero(layer(features), empty, *layer.parameters())
    zero.backward()
    assert zero.item() == 0
    assert torch.equal(features.grad, torch.zeros(2, 3)) and torch.equal(empty.grad, torch.zeros(0, 4))
    assert all(p.grad is not None and not p.grad.any() for p in layer.parameters())
