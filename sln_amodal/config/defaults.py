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
# COCOA | D2SA | KINS | SLN | AMODAL_COCO (the project layout: annotations/{train,val}.json)
_C.DATASETS.DATA_TYPE = "AMODAL_COCO"
_C.DATASETS.TRAIN_SPLIT = "train"
_C.DATASETS.VAL_SPLIT = "val"
# COCOA has one record per (image, annotator); this picks which annotator's record is used.
_C.DATASETS.COCOA_ANNOTATOR = 0
# False: a corrupt image or bad annotation is skipped and counted; True: it raises at once.
_C.DATASETS.STRICT = False

# --------------------------------------------------------------------------------- dataloader
_C.DATALOADER = CfgNode()
_C.DATALOADER.NUM_WORKERS = 2
_C.DATALOADER.IMS_PER_BATCH = 2
_C.DATALOADER.SEED = 0

# -------------------------------------------------------------------------------------- model
_C.MODEL = CfgNode()
_C.MODEL.DEVICE = "cpu"

# Semantics Layering Network (SPEC sections 2 and 3).
_C.MODEL.SLN = CfgNode()
_C.MODEL.SLN.NUM_LAYERS = 3  # K: layer levels of the sem-dist map
# RoI grid side M on which L and S are predicted (the mask head's output resolution).
_C.MODEL.SLN.ROI_RESOLUTION = 28
# tau of the distance ramp, in RoI grid pixels; None means ROI_RESOLUTION / 8.
_C.MODEL.SLN.DIST_SATURATION = None
# Decoding: amodal where S >= AMODAL_THRESH, visible where S >= K - VISIBLE_MARGIN.
_C.MODEL.SLN.AMODAL_THRESH = 0.5
_C.MODEL.SLN.VISIBLE_MARGIN = 0.5


def get_default_config() -> CfgNode:
    """A fresh copy of the defaults, safe to modify."""
    return _C.clone()
