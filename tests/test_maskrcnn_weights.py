"""Weight conversion and ``load_pretrained``: torchvision layouts, shape mismatches, offline errors."""
import copy
import logging
import os
import urllib.error

import numpy as np
import pytest
import torch
import torchvision
from torchvision.models import resnet18
from torchvision.models.detection import maskrcnn_resnet50_fpn

from testing import NUM_CLASSES, scenes, small_config
from sln_amodal.modeling import PretrainedWeightsMissing, build_model, load_pretrained
from sln_amodal.modeling import weights as weights_module
from sln_amodal.modeling.build import build_backbone
from sln_amodal.modeling.weights import convert_torchvision_maskrcnn, convert_torchvision_resnet


def randomize_batch_norm(model, seed):
    g = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            n = module.num_features
            module.weight.data.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            module.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            module.running_var.copy_(torch.rand(n, generator=g) + 0.5)


@pytest.fixture(scope="module")
def torchvision_model():
    """torchvision's Mask R-CNN as built without any weights (batch norm everywhere, all trainable)."""
    torch.manual_seed(0)
    model = maskrcnn_resnet50_fpn(
        weights=None,
        weights_backbone=None,
        num_classes=NUM_CLASSES + 1,
        min_size=256,
        max_size=320,
        rpn_post_nms_top_n_test=300,
        box_detections_per_img=25,
    )
    randomize_batch_norm(model, 0)
    return model.eval()


def batch_norm_config(num_classes=NUM_CLASSES):
    cfg = small_config()
    cfg.MODEL.NUM_CLASSES = num_classes
    cfg.MODEL.BACKBONE.NORM = "BN"  # what torchvision builds without pretrained weights
    cfg.MODEL.BACKBONE.TRAINABLE_LAYERS = 5
    return cfg


def test_both_layouts_load_to_the_same_model_as_torchvision(torchvision_model, tmp_path):
    torchvision_path = tmp_path / "torchvision_layout.pth"
    project_path = tmp_path / "project_layout.pth"
    training_path = tmp_path / "training_checkpoint.pth"
    torch.save(torchvision_model.state_dict(), torchvision_path)
    converted = convert_torchvision_maskrcnn(torchvision_model.state_dict(), 1e-5, 1e-5)
    torch.save(converted, project_path)
    # A training checkpoint: weights under "model" next to state that is not made of tensors.
    torch.save({"model": converted, "rng": np.random.get_state(), "iteration": 3}, training_path)

    images = scenes()[0][:1]
    with torch.no_grad():
        expected = torchvision_model(images)[0]
    for seed, path in enumerate([torchvision_path, project_path, training_path]):
        torch.manual_seed(100 + seed)  # a different initialisation each time
        model = build_model(batch_norm_config()).eval()
        report = load_pretrained(model, str(path))
        assert report.mismatched == [] and report.missing == [] and report.unexpected == []
        with torch.no_grad():
            actual = model(images)[0]
        assert len(actual["boxes"]) == len(expected["boxes"]) > 0
        assert torch.equal(actual["boxes"], expected["boxes"])
        assert torch.equal(actual["scores"], expected["scores"])
        assert torch.equal(actual["labels"], expected["labels"])
        torch.testing.assert_close(actual["masks"], expected["masks"], atol=1e-4, rtol=0)


def test_coco_weights_fold_torchvision_zero_eps_into_frozen_bn(torchvision_model, tmp_path):
    coco_like = copy.deepcopy(torchvision_model)
    for module in coco_like.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.eps = 0.0  # torchvision runs its COCO_V1 weights with eps 0
    torch.save(coco_like.state_dict(), tmp_path / "mask_rcnn_coco.pth")
    model = build_model(small_config()).eval()  # frozen BN, eps 1e-5
    report = load_pretrained(model, "coco", str(tmp_path))
    assert report.mismatched == [] and report.missing == []
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        expected = list(coco_like.backbone(x).values())
        actual = list(model.backbone(x).values())
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, atol=1e-4, rtol=1e-4)


def test_mismatched_heads_stay_initialised_and_are_logged(torchvision_model, tmp_path, caplog):
    path = tmp_path / "five_classes.pth"
    torch.save(torchvision_model.state_dict(), path)
    model = build_model(batch_norm_config(num_classes=2))
    fresh = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.WARNING, logger=weights_module.__name__):
        report = load_pretrained(model, str(path))
    mismatched = {entry.split(" ")[0] for entry in report.mismatched}
    assert mismatched == {
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.mask_branch.mask_fcn.predictor.weight",
        "roi_heads.mask_branch.mask_fcn.predictor.bias",
    }
    assert "roi_heads.box_predictor.cls_score.weight (checkpoint (5, 1024), model (3, 1024))" in caplog.text
    state = model.state_dict()
    assert all(torch.equal(state[k], fresh[k]) for k in mismatched)
    assert torch.equal(state["rpn.head.conv.weight"], torchvision_model.rpn.head.conv[0][0].weight)


def test_imagenet_resnet_loads_into_the_backbone(tmp_path):
    torch.manual_seed(1)
    classifier = resnet18(weights=None)
    randomize_batch_norm(classifier, 1)
    classifier.eval()
    torch.save(classifier.state_dict(), tmp_path / "resnet18_imagenet.pth")
    cfg = small_config()
    cfg.MODEL.BACKBONE.DEPTH = 18
    model = build_model(cfg).eval()
    report = load_pretrained(model, "imagenet", str(tmp_path))
    assert report.unexpected == [] and report.mismatched == []
    assert "backbone.lateral_convs.0.weight" in report.missing
    assert "backbone.bottom_up.stem.conv.weight" in report.loaded
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        expected = classifier.layer4(classifier.layer3(classifier.layer2(classifier.layer1(
            classifier.maxpool(classifier.relu(classifier.bn1(classifier.conv1(x))))))))
        actual = model.backbone.bottom_up(x)["res5"]
    torch.testing.assert_close(actual, expected, atol=1e-4, rtol=1e-4)


def test_offline_download_failure_names_the_file_to_fetch(tmp_path, monkeypatch):
    def offline(url, path):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(weights_module, "_download", offline)
    cfg = small_config()
    cfg.MODEL.BACKBONE.DEPTH = 18
    model = build_model(cfg)
    with pytest.raises(PretrainedWeightsMissing) as coco_error:
        load_pretrained(model, "coco", str(tmp_path))
    assert os.path.abspath(tmp_path / "mask_rcnn_coco.pth") in str(coco_error.value)
    assert "https://download.pytorch.org/models/maskrcnn_resnet50_fpn_coco" in str(coco_error.value)
    with pytest.raises(PretrainedWeightsMissing) as imagenet_error:
        load_pretrained(model, "imagenet", str(tmp_path))
    assert os.path.abspath(tmp_path / "resnet18_imagenet.pth") in str(imagenet_error.value)
    assert "resnet18-" in str(imagenet_error.value)
    with pytest.raises(PretrainedWeightsMissing, match="no_such.pth"):
        load_pretrained(model, str(tmp_path / "no_such.pth"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert load_pretrained(model, "none").path is None
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("depth", [18, 34, 50, 101])
def test_every_torchvision_resnet_key_has_a_place_in_the_backbone(depth):
    classifier = getattr(torchvision.models, f"resnet{depth}")(weights=None)
    converted = convert_torchvision_resnet(classifier.state_dict(), 1e-5, 1e-5)
    cfg = small_config()
    cfg.MODEL.BACKBONE.DEPTH = depth
    backbone = build_backbone(cfg)
    own = {f"backbone.{k}": v.shape for k, v in backbone.state_dict().items() if k.startswith("bottom_up.")}
    assert {k: v.shape for k, v in converted.items()} == own
