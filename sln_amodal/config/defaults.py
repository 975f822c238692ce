"""The one defaults module: every key a YAML file or a KEY VALUE override may set.

Numbers fixed by the paper, by torchvision's Mask R-CNN recipe or by a dataset live here as named
values; code reads them from the config and never repeats them as literals.
"""
from .config import CfgNode

_C = CfgNode()

# ------------------------------------------------------------------------------------- input
_C.INPUT = CfgNode()
# Resize keeping aspect ratio: the short side becomes one of MIN_SIZE_TRAIN (chosen at random per
# image), unless the long side would then exceed MAX_SIZE_TRAIN.
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MAX_SIZE_TRAIN = 1333
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1333
_C.INPUT.HFLIP_PROB = 0.5

# ----------------------------------------------------------------------------------- datasets
_C.DATASETS = CfgNode()
# AMODAL_COCO (the project layout: annotations/{train,val}.json) or a registered reader's type
# (sln_amodal/data/data_types.py): COCOA | D2SA | KINS | SLN built in
_C.DATASETS.DATA_TYPE = "AMODAL_COCO"
_C.DATASETS.TRAIN_SPLIT = "train"
_C.DATASETS.VAL_SPLIT = "val"
# COCOA has one record per (image, annotator); this picks which annotator's record is used.
_C.DATASETS.COCOA_ANNOTATOR = 0
# False: a corrupt image or bad annotation is skipped and counted; True: it raises at once.
_C.DATASETS.STRICT = False
# Where upstream annotations (COCOA, D2SA, KINS, SLN) are cached once converted to amodal COCO
# JSON; None means <dataset folder>/.sln_cache.
_C.DATASETS.CACHE_DIR = None

# --------------------------------------------------------------------------------- dataloader
_C.DATALOADER = CfgNode()
_C.DATALOADER.NUM_WORKERS = 2  # 0: read in the training process (training reads one batch ahead on a thread)
_C.DATALOADER.IMS_PER_BATCH = 2
_C.DATALOADER.SEED = 0

# ---------------------------------------------------------------------------------- synthetic
# The offline default dataset (scripts/make_synthetic.py, sln_amodal/data/synthetic.py).
_C.SYNTHETIC = CfgNode()
_C.SYNTHETIC.SEED = 0  # scene (seed, split, index) fixes every byte of that image and its annotations
_C.SYNTHETIC.NUM_TRAIN = 1000
_C.SYNTHETIC.NUM_VAL = 100
_C.SYNTHETIC.IMAGE_SIZE = (256, 256)  # (height, width)
_C.SYNTHETIC.MIN_OBJECTS = 2  # objects drawn per image, before hidden ones are left out
_C.SYNTHETIC.MAX_OBJECTS = 6
# 0: objects are placed anywhere (overlaps by chance); 1: each object is placed onto an earlier one.
_C.SYNTHETIC.OCCLUSION = 0.5
# Object radius as a fraction of the image's short side.
_C.SYNTHETIC.MIN_OBJECT_SIZE = 0.1
_C.SYNTHETIC.MAX_OBJECT_SIZE = 0.3
# Objects left with fewer visible pixels are not drawn at all (no object is ever fully hidden).
_C.SYNTHETIC.MIN_VISIBLE_AREA = 16
# Two objects overlap by at least this fraction of the smaller one's amodal area, or not at all (a
# placement making a thinner sliver is drawn again, up to 10 times, then left out); 0: any overlap.
_C.SYNTHETIC.MIN_OVERLAP = 0.0
# Objects hidden beyond this fraction of their amodal area are not drawn either; 1: no such rule.
_C.SYNTHETIC.MAX_OCCLUSION = 1.0
# The classes (category id = position + 1) among ellipse, rectangle, triangle, star, ring, cross.
_C.SYNTHETIC.SHAPES = ("ellipse", "rectangle", "triangle", "star", "ring", "cross")
# What each image's background and each object's fill is drawn from (one picked at random):
# backgrounds among flat, dark (flat, every channel <= 0.25), gradient, smooth_noise, photo, texture;
# fills among flat, bright (flat, every channel >= 0.4), vivid (flat, saturated, the hues of a
# scene's objects at least 52 degrees apart), stripes, checker, texture. The difficulty
# presets (yaml/synthetic_{easy,hard}.yaml) set these together.
_C.SYNTHETIC.BACKGROUNDS = ("gradient", "smooth_noise", "photo", "texture")
_C.SYNTHETIC.TEXTURES = ("flat", "stripes", "checker", "texture")
# Drop shadows: each object darkens what lies behind it (the background and the objects painted
# before it) under its own shape shifted by SHADOW_OFFSET (rows, columns) pixels, by the fraction
# SHADOW_STRENGTH (0: no shadows).
_C.SYNTHETIC.SHADOW_STRENGTH = 0.0
_C.SYNTHETIC.SHADOW_OFFSET = (2, 2)

# -------------------------------------------------------------------------------------- model
_C.MODEL = CfgNode()
_C.MODEL.DEVICE = "cpu"
# Mask R-CNN defaults below follow torchvision's maskrcnn_resnet50_fpn recipe.
# Weights to start from: coco | imagenet | none | a checkpoint path (see modeling/weights.py).
_C.MODEL.WEIGHTS = "coco"
# Foreground classes; the box and mask predictors add one background class (label 0). torchvision's
# COCO model has 91 outputs: background + 90 category slots.
_C.MODEL.NUM_CLASSES = 90
# ImageNet statistics of 0..1 RGB images, used to normalise the network input.
_C.MODEL.PIXEL_MEAN = (0.485, 0.456, 0.406)
_C.MODEL.PIXEL_STD = (0.229, 0.224, 0.225)
# The padded batch is a multiple of this (the coarsest FPN level before P6 has stride 32).
_C.MODEL.SIZE_DIVISIBILITY = 32

_C.MODEL.BACKBONE = CfgNode()
_C.MODEL.BACKBONE.DEPTH = 50  # ResNet-18/34 (basic blocks) or 50/101 (bottlenecks)
_C.MODEL.BACKBONE.NORM = "FrozenBN"  # FrozenBN | BN | GN
# FrozenBatchNorm2d's epsilon (torchvision's default); torchvision's COCO_V1 weights were trained
# with 0, which the weight converter folds into running_var (modeling/weights.py).
_C.MODEL.BACKBONE.NORM_EPS = 1e-5
_C.MODEL.BACKBONE.GN_GROUPS = 32  # groups when NORM is GN
# Trainable parts counted from the top: 0 freezes everything, 5 trains the stem too, 3 (torchvision's
# default for pretrained backbones) trains res3-res5. Frozen parts use frozen BN.
_C.MODEL.BACKBONE.TRAINABLE_LAYERS = 3
# The 3x3 convolution width of res2..res5 (a bottleneck's output is 4x that). ImageNet and COCO
# weights fit only these, the paper's; narrower stages suit small models trained from scratch.
_C.MODEL.BACKBONE.STAGE_WIDTHS = (64, 128, 256, 512)

_C.MODEL.FPN = CfgNode()
_C.MODEL.FPN.OUT_CHANNELS = 256

_C.MODEL.ANCHOR_GENERATOR = CfgNode()
# One size per FPN level P2..P6 (pixels of the network input), the same ratios (h / w) on each.
_C.MODEL.ANCHOR_GENERATOR.SIZES = ((32,), (64,), (128,), (256,), (512,))
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = ((0.5, 1.0, 2.0),)

_C.MODEL.RPN = CfgNode()
_C.MODEL.RPN.FG_IOU_THRESHOLD = 0.7  # anchors with IoU >= this are positives
_C.MODEL.RPN.BG_IOU_THRESHOLD = 0.3  # anchors with IoU < this are negatives; between: ignored
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256  # anchors sampled per image for the loss
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 2000  # per FPN level and image
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000  # per image
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
_C.MODEL.RPN.NMS_THRESH = 0.7
_C.MODEL.RPN.SCORE_THRESH = 0.0  # objectness probability a proposal must reach
_C.MODEL.RPN.MIN_SIZE = 1e-3  # proposals narrower or shorter than this (pixels) are dropped
_C.MODEL.RPN.BBOX_REG_WEIGHTS = (1.0, 1.0, 1.0, 1.0)
_C.MODEL.RPN.SMOOTH_L1_BETA = 1.0 / 9

_C.MODEL.ROI_HEADS = CfgNode()
_C.MODEL.ROI_HEADS.FG_IOU_THRESHOLD = 0.5
_C.MODEL.ROI_HEADS.BG_IOU_THRESHOLD = 0.5
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512  # proposals sampled per image for the box loss
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
# Test-time post-processing of the box predictions.
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5  # class-wise NMS
_C.MODEL.ROI_HEADS.DETECTIONS_PER_IMAGE = 100
_C.MODEL.ROI_HEADS.MIN_BOX_SIZE_TEST = 1e-2  # detections narrower or shorter than this are dropped
# RoI -> FPN level mapping of the FPN paper (eq. 1): a box of CANONICAL_BOX_SIZE^2 pixels pools
# from level CANONICAL_LEVEL (P4).
_C.MODEL.ROI_HEADS.CANONICAL_BOX_SIZE = 224
_C.MODEL.ROI_HEADS.CANONICAL_LEVEL = 4
# RoIAlign with the half-pixel offset (detectron2's ROIAlignV2) or without (torchvision).
_C.MODEL.ROI_HEADS.POOLER_ALIGNED = False

_C.MODEL.ROI_BOX_HEAD = CfgNode()
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 7
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 2
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024  # width of both fully connected layers (TwoMLPHead)
_C.MODEL.ROI_BOX_HEAD.CLS_AGNOSTIC_BBOX_REG = False  # one box per RoI instead of one per class
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 1.0 / 9

_C.MODEL.ROI_MASK_HEAD = CfgNode()
# The mask branch plugged into the RoI heads (registry in modeling/build.py): MaskRCNNHead, SLNHead,
# ORCNNHead or VRSPHead. The last two use the convolution sizes below for each of their two networks.
_C.MODEL.ROI_MASK_HEAD.NAME = "MaskRCNNHead"
# MaskRCNNHead's target: amodal_masks (the amodal Mask R-CNN baseline) or visible_masks.
_C.MODEL.ROI_MASK_HEAD.TARGET_KEY = "amodal_masks"
_C.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION = 14  # the 2x deconvolution makes 28 x 28 masks
_C.MODEL.ROI_MASK_HEAD.POOLER_SAMPLING_RATIO = 2
_C.MODEL.ROI_MASK_HEAD.CONV_DIMS = (256, 256, 256, 256)  # the 3x3 convolutions
_C.MODEL.ROI_MASK_HEAD.DECONV_DIM = 256
_C.MODEL.ROI_MASK_HEAD.CLS_AGNOSTIC_MASK = False  # one mask per RoI instead of one per class
_C.MODEL.ROI_MASK_HEAD.MASK_THRESH = 0.5  # mask probability at which a pasted mask is binarised

# Semantics Layering Network (SPEC sections 2 and 3).
_C.MODEL.SLN = CfgNode()
_C.MODEL.SLN.NUM_LAYERS = 3  # K: layer levels of the sem-dist map
# RoI grid side M on which L and S are predicted (the mask branch's output resolution).
_C.MODEL.SLN.ROI_RESOLUTION = 28
# tau of the distance ramp, in RoI grid pixels; None means ROI_RESOLUTION / 8.
_C.MODEL.SLN.DIST_SATURATION = None
# Decoding: amodal where S >= AMODAL_THRESH, visible where S >= K - VISIBLE_MARGIN.
_C.MODEL.SLN.AMODAL_THRESH = 0.5
_C.MODEL.SLN.VISIBLE_MARGIN = 0.5
# Global layering module: the FPN level it reads and its 3x3 convolutions.
_C.MODEL.SLN.GLOBAL_FEATURE = "p2"
_C.MODEL.SLN.GLOBAL_CONV_DIMS = (128, 128)
# Instance layering trunk on the RoI features (+ the RoI crop of the global layering output);
# its 2x deconvolution turns the mask pooler's 14 x 14 into the ROI_RESOLUTION grid.
_C.MODEL.SLN.INSTANCE_CONV_DIMS = (256, 256, 256, 256)
# One dilation per instance convolution (empty: none): how far each RoI cell sees.
_C.MODEL.SLN.INSTANCE_CONV_DILATIONS = ()
# "single_layer": the instance trunk also reads, at every cell, the RoI's mean feature over the
# cells the global layering calls covered once (G = 1, mostly the RoI's own object); "": nothing.
_C.MODEL.SLN.INSTANCE_ROI_CONTEXT = ""
_C.MODEL.SLN.DECONV_DIM = 256
# Sem-dist trunk on the instance features + the softmax of the instance layering logits.
_C.MODEL.SLN.SEM_DIST_CONV_DIMS = (128, 128)
_C.MODEL.SLN.SEM_DIST_CONV_DILATIONS = ()  # one per sem-dist convolution (empty: none)
# The sem-dist trunk also reads the input image on the RoI grid, the mean colour of the cells the
# instance layering calls visible, and each cell's squared colour distance to it.
_C.MODEL.SLN.IMAGE_CELLS = False
_C.MODEL.SLN.CLS_AGNOSTIC = True  # one S map per RoI (layering is class-agnostic) or one per class
_C.MODEL.SLN.SMOOTH_L1_BETA = 0.1  # of the sem-dist regression (S spans 0..K)
# Loss weights of the global layering (CE), instance layering (CE) and sem-dist (smooth-L1) terms.
_C.MODEL.SLN.GLOBAL_LOSS_WEIGHT = 1.0
_C.MODEL.SLN.INSTANCE_LOSS_WEIGHT = 1.0
_C.MODEL.SLN.SEM_DIST_LOSS_WEIGHT = 1.0
# Weight, in the instance layering and sem-dist losses, of the RoI cells of an object that another
# object's amodal mask also covers (where visible vs hidden is decided); the other cells weigh 1.
_C.MODEL.SLN.OVERLAP_CELL_WEIGHT = 1.0
# Weight of the RoI cells outside the object that another object covers (where the object's map
# must not spill onto its neighbour, whose visible part it would call its own hidden part).
_C.MODEL.SLN.FOREIGN_CELL_WEIGHT = 1.0
# Every RoI the branch reads, learns on and pastes is its box scaled by this factor about its centre
# (1: the box itself), so that S reaches the hidden parts a regressed amodal box falls short of.
_C.MODEL.SLN.ROI_SCALE = 1.0

# VRSP-Net (Xiao et al., AAAI 2021; MODEL.ROI_MASK_HEAD.NAME VRSPHead): each switch is one token of
# the upstream config names (parallel_CtRef_VAR_SPRef_SPRet_FM); all off is the "parallel" head, an
# amodal and a visible mask network side by side. The numbers are the upstream D2SA recipe's.
_C.MODEL.VRSP = CfgNode()
# CtRef: the visible network re-runs on the coarse amodal attention, the amodal one on the refined
# visible attention; in training also a pass attending to the GT masks, with these loss weights.
_C.MODEL.VRSP.CROSS_TASK_REFINEMENT = False
_C.MODEL.VRSP.GT_AMODAL_WEIGHT = 1.0
_C.MODEL.VRSP.GT_VISIBLE_WEIGHT = 1.0
# FM (needs CtRef): cosine feature matching of the coarse pass to the GT-attention pass, with these
# weights for the last convolution's and the deconvolution's features.
_C.MODEL.VRSP.FEATURE_MATCHING = False
_C.MODEL.VRSP.FEATURE_MATCHING_WEIGHTS = (0.01, 0.05)
# VAR: a 2-FC classifier on the visible-attended RoI features; loss weight, weight of its samples
# attended by the GT visible mask, and the test-time factor floor + (1 - floor) x class probability.
_C.MODEL.VRSP.RECLASSIFICATION = False
_C.MODEL.VRSP.RECLASSIFICATION_FC_DIM = 1024
_C.MODEL.VRSP.RECLASSIFICATION_WEIGHT = 0.1
_C.MODEL.VRSP.RECLASSIFICATION_GT_WEIGHT = 0.1
_C.MODEL.VRSP.RECLASSIFICATION_FLOOR = 0.6
# SPRef: the K nearest codebook shapes of the coarse amodal mask join the amodal network's input.
_C.MODEL.VRSP.SHAPE_PRIOR_REFINEMENT = False
_C.MODEL.VRSP.SHAPE_PRIOR_K = 16
# SPRet: test-time rescoring by the agreement of the amodal mask with its nearest codebook shape,
# factor relu(ln(ALPHA - d) / ln ALPHA) for a fraction d of disagreeing pixels.
_C.MODEL.VRSP.SHAPE_PRIOR_RETRIEVAL = False
_C.MODEL.VRSP.SHAPE_PRIOR_ALPHA = 2.0
# The shape prior: an auto-encoder on the mask branch's M x M amodal masks and a per-class codebook of
# its embeddings (k-means), one file per dataset written by scripts/build_shape_codebook.py.
_C.MODEL.VRSP.SHAPE_PRIOR = CfgNode()
_C.MODEL.VRSP.SHAPE_PRIOR.FILE = ""  # the codebook file; SPRef needs it, SPRet skips rescoring without it
_C.MODEL.VRSP.SHAPE_PRIOR.CHANNELS = 8  # auto-encoder width
_C.MODEL.VRSP.SHAPE_PRIOR.NUM_CONVS = 3  # stride-2 convolutions: 28 -> 4 x 4, a 128-d embedding with 8 channels
_C.MODEL.VRSP.SHAPE_PRIOR.NUM_CLUSTERS = 1024  # k-means centres per class (fewer shapes: all are kept)
_C.MODEL.VRSP.SHAPE_PRIOR.KMEANS_ITERS = 50  # Lloyd iterations at most
# Each training mask also enters the codebook rotated by 90, 180 and 270 degrees and mirrored (8 copies).
_C.MODEL.VRSP.SHAPE_PRIOR.AUGMENT = True
# Train the auto-encoder jointly with the detector (a reconstruction loss on the GT amodal masks of the
# positive RoIs, with this weight); exclusive with SPRef, whose codebook must exist before training.
_C.MODEL.VRSP.SHAPE_PRIOR.TRAIN_JOINTLY = False
_C.MODEL.VRSP.SHAPE_PRIOR.RECONSTRUCTION_WEIGHT = 1.0
# scripts/build_shape_codebook.py without --model trains the auto-encoder alone on the training set's
# GT amodal masks: Adam, these iterations, masks per batch and learning rate.
_C.MODEL.VRSP.SHAPE_PRIOR.TRAIN_ITERS = 2000
_C.MODEL.VRSP.SHAPE_PRIOR.TRAIN_BATCH = 256
_C.MODEL.VRSP.SHAPE_PRIOR.TRAIN_LR = 1e-3

# ------------------------------------------------------------------------------ visualisation
# Overlay pictures of amodal_test.py and TensorBoard (sln_amodal/engine/visualize.py).
_C.VIS = CfgNode()
_C.VIS.SCORE_THRESH = 0.5  # detections scoring below this are left out of pictures
# Of two detections in a prediction picture whose boxes overlap at more than this IoU, only the
# higher-scoring one is drawn: NMS is per class, so one object can be detected under two classes.
_C.VIS.DUPLICATE_IOU = 0.7
_C.VIS.COLOUR_SEED = 0  # fixes the colour sequence of the objects
_C.VIS.FILL_ALPHA = 0.5  # opacity of the colour filling an object's visible region
_C.VIS.HATCH_SPACING = 6  # pixels between the diagonal lines hatching an object's hidden region
_C.VIS.HATCH_WIDTH = 2  # thickness of a hatch line, pixels
_C.VIS.OUTLINE_WIDTH = 2  # thickness of the amodal and hidden-region outlines, pixels
# amodal_test.py runs the model on photos above this many megapixels scaled down to it (aspect
# kept), then resizes each detection's masks to the photo's size one at a time: the model's
# image-size masks cost about 4 bytes per pixel and detection (~94 MB for a 6000 x 4000 photo, ~8 MB
# at 2 MP). 2 MP is above what the detector itself sees (INPUT.MAX_SIZE_TEST x MIN_SIZE_TEST, about
# 1.1 MP), so the cap costs the masks little detail.
_C.VIS.MAX_WORKING_MEGAPIXELS = 2.0

# ------------------------------------------------------------------------------------- solver
# Training (sln_amodal/engine/trainer.py): SGD with momentum, linear warm-up, step decay; the numbers
# are the Mask R-CNN recipe (torchvision's references / detectron2's 1x schedule).
_C.SOLVER = CfgNode()
# Learning rate for a total batch of REFERENCE_BATCH_SIZE images; the rate used scales linearly with
# the real total batch (DATALOADER.IMS_PER_BATCH per process x processes), the rule of Goyal et al.
# (2017) that torchvision's references follow. REFERENCE_BATCH_SIZE 0 uses BASE_LR as it is.
_C.SOLVER.BASE_LR = 0.02
_C.SOLVER.REFERENCE_BATCH_SIZE = 16  # the recipe's 8 GPUs x 2 images
# SGD (with MOMENTUM) is the Mask R-CNN recipe; AdamW (with ADAM_BETAS) converges faster from scratch.
_C.SOLVER.OPTIMIZER = "SGD"
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.ADAM_BETAS = (0.9, 0.999)
_C.SOLVER.WEIGHT_DECAY = 1e-4
_C.SOLVER.MAX_ITER = 90000
# The learning rate is multiplied by GAMMA at each of these iterations.
_C.SOLVER.STEPS = (60000, 80000)
_C.SOLVER.GAMMA = 0.1
# The learning rate ramps linearly from WARMUP_FACTOR x its value to its value over WARMUP_ITERS.
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
# Gradients are rescaled so their global L2 norm is at most this; 0 turns clipping off.
_C.SOLVER.CLIP_GRAD_NORM = 0.0
# Mixed precision (CUDA only): autocast to AMP_DTYPE; float16 adds a GradScaler, bfloat16 needs none.
_C.SOLVER.AMP = False
_C.SOLVER.AMP_DTYPE = "float16"
# Train with the convolution weights, and so the feature maps they make, stored channels-last: the
# same model in another memory order (results differ by rounding only). On the CPU (mkldnn) a
# quickstart training step took 6.6% less time. Checkpoints load into either order, and inference
# keeps the usual one: there it sped Mask R-CNN up more than the SLN (issue 12 note of 2026-12-07).
_C.SOLVER.CHANNELS_LAST = False
# Seeds the weight initialisation and the model's own sampling (RPN / RoI sampling); process r of a
# multi-GPU run uses SEED + r. The data order and augmentation follow DATALOADER.SEED.
_C.SOLVER.SEED = 0
_C.SOLVER.CHECKPOINT_PERIOD = 5000  # iterations between checkpoints (one more is written at the end)
_C.SOLVER.LOG_PERIOD = 20  # iterations averaged into each TensorBoard scalar point
# Every VIS_PERIOD iterations TensorBoard gets the current input with its ground truth and the
# model's prediction on the first training image, drawn as the VIS section says (with the SLN, also
# the sem-dist maps of up to VIS_ROIS detections beside their targets, for detections matching a
# ground truth at box IoU >= VIS_MATCH_IOU); 0 turns pictures off.
_C.SOLVER.VIS_PERIOD = 1000
_C.SOLVER.VIS_ROIS = 4
_C.SOLVER.VIS_MATCH_IOU = 0.5

# --------------------------------------------------------------------------------- evaluation
# The amodalAPI / COCO evaluation protocol (SPEC section 6, sln_amodal/evaluation).
_C.EVAL = CfgNode()
# IoU thresholds (first, last, step): COCO's .50:.05:.95.
_C.EVAL.IOU_THRESHOLDS = (0.5, 0.95, 0.05)
# Recall points at which precision is sampled: COCO's 0:.01:1.
_C.EVAL.RECALL_POINTS = 101
# Detections kept per image and category for AR@1/10/100 (append 1000 for AR@1000); AP uses the last.
_C.EVAL.MAX_DETECTIONS = (1, 10, 100)
# amodalAPI's occlusion-rate buckets, bounds inclusive: a ground truth outside is ignored.
_C.EVAL.OCCLUSION_BUCKETS = CfgNode()
_C.EVAL.OCCLUSION_BUCKETS.all = (0.0, 1.0)
_C.EVAL.OCCLUSION_BUCKETS.none = (0.0, 1e-5)
_C.EVAL.OCCLUSION_BUCKETS.partial = (1e-5, 0.25)
_C.EVAL.OCCLUSION_BUCKETS.heavy = (0.25, 1.0)
# VRSP-Net's mAP(Occluded) and the ground-truth occluded subset cover occlusion rates above this.
_C.EVAL.OCCLUDED_THRESH = 0.15
# Depth order and the layering diagnostics (hidden pixels, overlap visibility) count a ground truth as
# found when the greedy matching pairs it at this amodal IoU.
_C.EVAL.DEPTH_MATCH_IOU = 0.5
# Match detections to ground truth of the same category only (COCOeval's useCats).
_C.EVAL.USE_CATS = True


def get_default_config() -> CfgNode:
    """A fresh copy of the defaults, safe to modify."""
    return _C.clone()
