"""The baselines' mask branches (Mask R-CNN amodal / visible, ORCNN, VRSP-Net and its ablations):
they train, give the shared output fields, and their parts (shape prior, rescoring) compute what
VRSP-Net defines."""
import json
import math
import os

import pytest
import torch

from testing import NUM_CLASSES, SCENE, resnet18_config, run_script, scenes, tiny_config
from sln_amodal.config import ConfigError, load_config
from sln_amodal.data.synthetic import write_synthetic_dataset
from sln_amodal.engine.checkpoint import atomic_torch_save
from sln_amodal.engine.shape_codebook import fill_codebook, train_autoencoder
from sln_amodal.engine.trainer import train
from sln_amodal.modeling import build_model
from sln_amodal.modeling.mask_branches.roi_masks import mask_outputs
from sln_amodal.modeling.mask_branches.vrsp_shape_prior import (
    ShapePrior,
    ShapePriorError,
    kmeans,
    shape_prior_file_content,
)
from sln_amodal.modeling.mask_branches.vrsp import VisibleReclassifier, binary_iou, shape_prior_factor


CATEGORIES = [{"id": i, "name": f"class{i}"} for i in range(1, NUM_CLASSES + 1)]
VRSP_FULL = {"CROSS_TASK_REFINEMENT": True, "FEATURE_MATCHING": True, "RECLASSIFICATION": True,
             "SHAPE_PRIOR_REFINEMENT": True, "SHAPE_PRIOR_RETRIEVAL": True}


def head_config(name, target_key="amodal_masks", **vrsp):
    cfg = resnet18_config(ROI_MASK_HEAD__NAME=name, ROI_MASK_HEAD__TARGET_KEY=target_key)
    cfg.MODEL.VRSP.RECLASSIFICATION_FC_DIM = 64
    cfg.MODEL.VRSP.SHAPE_PRIOR.NUM_CLUSTERS = 32
    for key, value in vrsp.items():
        cfg.MODEL.VRSP[key] = value
    return cfg


@pytest.fixture(scope="module")
def codebook_file(tmp_path_factory):
    """A codebook of random codes for the 4 test classes, with the auto-encoder of a fresh prior."""
    torch.manual_seed(3)
    prior = ShapePrior(NUM_CLASSES, 28, 8, 3, 32)
    prior.set_codebook([None] + [torch.rand(20, prior.autoencoder.embedding_dim) for _ in range(NUM_CLASSES)])
    path = str(tmp_path_factory.mktemp("prior") / "shape_prior.pth")
    atomic_torch_save(shape_prior_file_content(prior, CATEGORIES), path)
    return path


HEADS = {
    "mask_rcnn_amodal": (("MaskRCNNHead", "amodal_masks"), {}, {"loss_mask"}),
    "mask_rcnn_visible": (("MaskRCNNHead", "visible_masks"), {}, {"loss_mask"}),
    "orcnn": (("ORCNNHead",), {}, {"loss_amodal_mask", "loss_visible_mask", "loss_invisible_mask"}),
    "vrsp_parallel": (("VRSPHead",), {}, {"loss_amodal_mask", "loss_visible_mask"}),
    "vrsp_CtRef_VAR_SPRet_joint": (
        ("VRSPHead",),
        {"CROSS_TASK_REFINEMENT": True, "RECLASSIFICATION": True, "SHAPE_PRIOR_RETRIEVAL": True},
        {"loss_amodal_mask", "loss_visible_mask", "loss_amodal_refined", "loss_visible_refined",
         "loss_amodal_gt_attention", "loss_visible_gt_attention", "loss_reclassification",
         "loss_shape_reconstruction"},
    ),
    "vrsp_full": (
        ("VRSPHead",),
        VRSP_FULL,
        {"loss_amodal_mask", "loss_visible_mask", "loss_amodal_refined", "loss_visible_refined",
         "loss_amodal_gt_attention", "loss_visible_gt_attention", "loss_feature_matching",
         "loss_reclassification"},
    ),
}


@pytest.mark.parametrize("variant", list(HEADS))
def test_head_trains_and_gives_the_shared_outputs(variant, codebook_file):
    head, vrsp, mask_losses = HEADS[variant]
    cfg = head_config(*head, **vrsp)
    if vrsp.get("SHAPE_PRIOR_REFINEMENT"):
        cfg.MODEL.VRSP.SHAPE_PRIOR.FILE = codebook_file
    cfg.MODEL.VRSP.SHAPE_PRIOR.TRAIN_JOINTLY = variant.endswith("joint")
    torch.manual_seed(0)
    model = build_model(cfg)
    images, targets = scenes()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.005, momentum=0.9)
    model.train()
    for _ in range(3):
        losses = model(images, targets)
        assert set(losses) == mask_losses | {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
        assert all(math.isfinite(v.item()) for v in losses.values()), losses
        optimizer.zero_grad()
        sum(losses.values()).backward()
        missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
        assert not missing, f"parameters without a gradient: {missing}"
        optimizer.step()

    model.eval()
    with torch.no_grad():
        detections = model(images)
    for image, detection in zip(images, detections):
        count, (height, width) = len(detection["boxes"]), image.shape[-2:]
        assert count > 0
        assert detection["amodal_masks"].shape == detection["visible_masks"].shape == (count, height, width)
        assert detection["amodal_masks"].dtype == torch.bool
        assert not (detection["visible_masks"] & ~detection["amodal_masks"]).any()
        assert torch.equal(detection["depth_rank"].sort().values, torch.arange(1, count + 1))
        rate = detection["occlude_rate"]
        assert ((rate >= 0) & (rate <= 1)).all()
        assert ((detection["scores"] > 0) & (detection["scores"] <= 1)).all()
        if head[0] == "MaskRCNNHead":
            assert torch.equal(detection["amodal_masks"], detection["visible_masks"])


def test_visible_overlap_orders_the_two_mask_outputs():
    amodal = torch.zeros(2, 8, 8)
    amodal[0, 0:5, 0:5] = 1
    amodal[1, 2:8, 2:8] = 1
    visible = amodal.clone()
    visible[0, 2:5, 2:5] = 0  # object 1 covers the overlap: it is in front
    outputs = mask_outputs({"scores": torch.tensor([0.9, 0.2])}, amodal, visible, 0.5)
    assert outputs["depth_rank"].tolist() == [2, 1]
    assert outputs["occlude_rate"].tolist() == pytest.approx([9 / 25, 0.0])


def test_binary_iou_and_shape_prior_factor_on_hand_values():
    a = torch.zeros(2, 4, 4, dtype=torch.bool)
    b = torch.zeros_like(a)
    a[0, :2] = True
    b[0, 1:3] = True
    assert binary_iou(a, b).tolist() == pytest.approx([4 / 12, 0.0])
    factors = shape_prior_factor(torch.tensor([0.0, 0.5, 1.0]), 2.0)
    assert factors.tolist() == pytest.approx([1.0, math.log(1.5) / math.log(2), 0.0], abs=1e-6)


def test_rescoring_is_the_geometric_mean_of_score_and_factors(codebook_file):
    cfg = head_config("VRSPHead", RECLASSIFICATION=True, SHAPE_PRIOR_RETRIEVAL=True)
    cfg.MODEL.VRSP.SHAPE_PRIOR.FILE = codebook_file
    head = build_model(cfg).roi_heads.mask_branch.eval()
    reclassifier: VisibleReclassifier = head.reclassifier
    with torch.no_grad():
        reclassifier.classifier.weight.zero_()
        reclassifier.classifier.bias.copy_(torch.tensor([math.log(3.0), 0.0, 0.0, 0.0]))  # p(class 1) = 1/2
    amodal_logits = torch.full((1, NUM_CLASSES + 1, 28, 28), -5.0)
    amodal_logits[0, 1, :, :14] = 5.0  # the left half of the RoI
    nearest = torch.zeros(1, 1, 28, 28)
    nearest[0, 0, :, :7] = 1.0  # the retrieved shape covers half of the mask: d = 1/4
    head.shape_prior.nearest_shapes = lambda masks, labels, k: nearest
    x = torch.rand(1, 64, 14, 14)
    scores = head.rescore(torch.tensor([0.8]), x, amodal_logits, torch.zeros_like(amodal_logits), torch.tensor([1]))
    var_factor = 0.6 + 0.4 * 0.5
    spret_factor = math.log(2 - 0.25) / math.log(2)
    assert scores.item() == pytest.approx((0.8 * var_factor * spret_factor) ** (1 / 3), rel=1e-5)


def shapes_for_codebook():
    """Discs and squares of varied sizes, centred in a 28 x 28 grid: two clearly different families."""
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    distance = ((ys - 13.5) ** 2 + (xs - 13.5) ** 2).sqrt()
    discs = torch.stack([(distance <= r).float() for r in torch.linspace(6, 13, 16)])
    half = torch.maximum((ys - 13.5).abs(), (xs - 13.5).abs())
    squares = torch.stack([(half <= r).float() for r in torch.linspace(6, 13, 16)])
    return discs, squares


def test_codebook_round_trip_embeds_clusters_retrieves_and_decodes(tmp_path):
    torch.manual_seed(0)
    discs, squares = shapes_for_codebook()
    shapes, labels = torch.cat([discs, squares]), torch.tensor([1] * 16 + [2] * 16)
    prior = ShapePrior(2, 28, 8, 3, num_clusters=4)
    loss = train_autoencoder(prior.autoencoder, shapes, iterations=300, batch_size=32, learning_rate=1e-2, seed=0)
    assert loss < 0.1
    assert fill_codebook(prior, shapes, labels, 2, augment=False, iterations=20, seed=0) == [4, 4]

    decoded = prior.nearest_shapes(shapes, labels, 1)[:, 0] >= 0.5
    assert binary_iou(decoded, shapes.bool()).min() > 0.7
    # A disc looked up among the squares' codes comes back square: retrieval stays in the class.
    as_square = prior.nearest_shapes(discs[8:9], torch.tensor([2]), 1)[0, 0] >= 0.5
    assert binary_iou(as_square[None], squares.bool()).max() > binary_iou(as_square[None], discs.bool()).max()

    path = tmp_path / "prior.pth"
    atomic_torch_save(shape_prior_file_content(prior, CATEGORIES[:2]), str(path))
    loaded = ShapePrior(2, 28, 8, 3, num_clusters=4)
    loaded.load_file(str(path), CATEGORIES[:2])
    assert torch.equal(loaded.codes, prior.codes) and torch.equal(loaded.sizes, prior.sizes)
    with pytest.raises(ShapePriorError, match="categories"):
        loaded.load_file(str(path), CATEGORIES[:1] + [{"id": 9, "name": "other"}])


def test_kmeans_finds_separated_clusters_and_short_classes_fall_back_to_the_query():
    generator = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = torch.cat([c + 0.1 * torch.randn(50, 2, generator=generator) for c in centres])
    found = kmeans(points, 3, 20, generator)
    assert torch.cdist(centres, found).min(dim=1).values.max() < 0.1

    prior = ShapePrior(2, 28, 8, 3, num_clusters=4)
    codes = torch.rand(2, prior.autoencoder.embedding_dim)
    prior.set_codebook([None, codes, None])
    query = torch.rand(2, prior.autoencoder.embedding_dim)
    retrieved = prior.retrieve(query, torch.tensor([1, 2]), k=3)
    assert {tuple(r.tolist()) for r in retrieved[0, :2]} == {tuple(c.tolist()) for c in codes}
    assert torch.equal(retrieved[0, 2], query[0])  # class 1 has only 2 codes
    assert torch.equal(retrieved[1], query[1].expand(3, -1))  # class 2 has none


def test_vrsp_config_conflicts_name_the_key(codebook_file):
    with pytest.raises(ConfigError, match="MODEL.VRSP.SHAPE_PRIOR.FILE"):
        build_model(head_config("VRSPHead", SHAPE_PRIOR_REFINEMENT=True))
    cfg = head_config("VRSPHead", SHAPE_PRIOR_REFINEMENT=True)
    cfg.MODEL.VRSP.SHAPE_PRIOR.FILE = codebook_file
    cfg.MODEL.VRSP.SHAPE_PRIOR.TRAIN_JOINTLY = True
    with pytest.raises(ConfigError, match="TRAIN_JOINTLY"):
        build_model(cfg)
    with pytest.raises(ValueError, match="FEATURE_MATCHING"):
        build_model(head_config("VRSPHead", FEATURE_MATCHING=True))


def test_a_codebook_built_for_other_categories_is_refused(codebook_file):
    cfg = head_config("VRSPHead", SHAPE_PRIOR_RETRIEVAL=True)
    cfg.MODEL.VRSP.SHAPE_PRIOR.FILE = codebook_file
    build_model(cfg, CATEGORIES)
    with pytest.raises(ShapePriorError, match=r"shape_prior.pth: categories: built for \['class1'"):
        build_model(cfg, CATEGORIES[:-1] + [{"id": 9, "name": "other"}])


def test_upstream_named_configs_switch_the_documented_modules():
    folder = os.path.join(os.path.dirname(__file__), "..", "sln_amodal", "config", "yaml")
    tokens = {"CtRef": "CROSS_TASK_REFINEMENT", "VAR": "RECLASSIFICATION", "SPRef": "SHAPE_PRIOR_REFINEMENT",
              "SPRet": "SHAPE_PRIOR_RETRIEVAL", "FM": "FEATURE_MATCHING"}
    names = [f for f in os.listdir(folder) if f.startswith("vrsp_R50_FPN_parallel")]
    assert len(names) == 5
    for name in names:
        cfg = load_config(os.path.join(folder, name))
        present = set(name[: -len(".yaml")].split("_")[4:])
        assert cfg.MODEL.ROI_MASK_HEAD.NAME == "VRSPHead"
        for token, key in tokens.items():
            assert cfg.MODEL.VRSP[key] == (token in present), (name, key)


# ------------------------------------------------------------- the codebook command, end to end
def run_checked(*args) -> str:
    completed = run_script(*args)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


TINY_VRSP = ["MODEL.ROI_MASK_HEAD.NAME", "VRSPHead", "MODEL.ROI_MASK_HEAD.CONV_DIMS", "[32, 32]",
             "MODEL.ROI_MASK_HEAD.DECONV_DIM", "32", "MODEL.VRSP.RECLASSIFICATION_FC_DIM", "32",
             "MODEL.VRSP.SHAPE_PRIOR.NUM_CLUSTERS", "16", "MODEL.VRSP.SHAPE_PRIOR.TRAIN_ITERS", "30",
             "MODEL.VRSP.SHAPE_PRIOR.TRAIN_BATCH", "32", "SOLVER.MAX_ITER", "2", "SOLVER.VIS_PERIOD", "0"]


def test_codebook_command_for_both_ways_of_training_the_auto_encoder(tmp_path):
    """Joint training (CtRef VAR SPRet): train, build the codebook from the checkpoint, evaluate with
    it. Separate training: build the codebook first, then train with SPRef on it."""
    data = str(tmp_path / "data")
    write_synthetic_dataset(data, seed=1, num_train=6, num_val=2, params=SCENE, show_progress=False)
    joint = [*TINY_VRSP, "MODEL.VRSP.CROSS_TASK_REFINEMENT", "true", "MODEL.VRSP.RECLASSIFICATION", "true",
             "MODEL.VRSP.SHAPE_PRIOR_RETRIEVAL", "true", "MODEL.VRSP.SHAPE_PRIOR.TRAIN_JOINTLY", "true"]
    result = train(tiny_config(*joint), data, "none", str(tmp_path / "joint"))
    codebook = str(tmp_path / "joint_codebook.pth")
    out = run_checked("scripts/build_shape_codebook.py", "--dataset", data, "--model", result.checkpoint,
                     "--out", codebook)
    assert "wrote" in out
    prior = result.model.roi_heads.mask_branch.shape_prior
    content = torch.load(codebook, weights_only=True)
    assert all(torch.equal(content["autoencoder"][k], v) for k, v in prior.autoencoder.state_dict().items())
    assert (content["sizes"][1:] > 0).all() and (content["sizes"][1:] <= 16).all()
    run_checked("amodal_train.py", "evaluate", "--dataset", data, "--model", result.checkpoint, "--out",
               str(tmp_path / "eval"), "MODEL.VRSP.SHAPE_PRIOR.FILE", codebook)
    with open(tmp_path / "eval" / "metrics.json") as f:
        assert set(json.load(f)) >= {"amodal", "visible", "occluded", "depth_order"}

    separate = str(tmp_path / "separate_codebook.pth")
    config_overrides = [*TINY_VRSP, "MODEL.VRSP.SHAPE_PRIOR_REFINEMENT", "true"]
    out = run_checked("scripts/build_shape_codebook.py", "--dataset", data, "--out", separate, *config_overrides)
    assert "codes per class" in out
    trained = train(tiny_config(*config_overrides, "MODEL.VRSP.SHAPE_PRIOR.FILE", separate), data, "none",
                    str(tmp_path / "separate"))
    assert trained.iteration == 2 and os.path.exists(trained.checkpoint)
    branch = trained.model.roi_heads.mask_branch
    assert branch.prior_fusion is not None and branch.shape_prior.has_codebook
