"""Building VRSP-Net's shape-prior codebook file for a dataset (``scripts/build_shape_codebook.py``).

The shapes are the training split's GT amodal masks, each cropped to its amodal box and resized to
the mask branch's M x M grid (VRSP-Net's codebook with RECON_NET.MASK_THS 1.0: GT masks only). The
auto-encoder is either taken from a trained VRSP-Net checkpoint (``MODEL.VRSP.SHAPE_PRIOR.TRAIN_JOINTLY``)
or trained here on those shapes; then every class's embeddings (with the 8 rotations and mirror
images when AUGMENT is on) are clustered by k-means into its codebook.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch
from tqdm import tqdm

from ..config import CfgNode
from ..data.dataset import image_target
from ..data.records import AnnotationSet
from ..modeling.mask_branches.roi_masks import UPSAMPLE_FACTOR, crop_masks_to_boxes
from ..modeling.mask_branches.vrsp_shape_prior import (
    ShapeAutoEncoder,
    ShapePrior,
    dihedral_augment,
    kmeans,
    reconstruction_loss,
    shape_prior_from_config,
)

logger = logging.getLogger(__name__)


def training_shapes(annotations: AnnotationSet, mask_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, M, M) binary float amodal shapes in their boxes and (N,) int64 class labels 1..C."""
    label_of = annotations.contiguous_ids()
    shapes, labels = [], []
    for record in tqdm(annotations.records, desc="shapes", unit="image"):
        target = image_target(record, label_of)
        count = len(target["labels"])
        if count == 0:
            continue
        cropped = crop_masks_to_boxes(target["amodal_masks"], target["boxes"], torch.arange(count), mask_size)
        shapes.append((cropped >= 0.5).float())
        labels.append(target["labels"])
    if not shapes:
        raise ValueError("the training split has no (non-crowd) objects to build shapes from")
    return torch.cat(shapes), torch.cat(labels)


def train_autoencoder(
    autoencoder: ShapeAutoEncoder, shapes: torch.Tensor, iterations: int, batch_size: int, learning_rate: float,
    seed: int,
) -> float:
    """Adam on the reconstruction loss of random batches of ``shapes``; returns the last loss."""
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(autoencoder.parameters(), lr=learning_rate)
    autoencoder.train()
    progress = tqdm(range(iterations), desc="auto-encoder", unit="it")
    loss = torch.zeros(())
    for _ in progress:
        batch = shapes[torch.randint(len(shapes), (batch_size,), generator=generator)]
        loss = reconstruction_loss(autoencoder, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        progress.set_postfix_str(f"loss {loss.item():.4f}", refresh=False)
    autoencoder.eval()
    return loss.item()


@torch.no_grad()
def fill_codebook(
    prior: ShapePrior, shapes: torch.Tensor, labels: torch.Tensor, num_classes: int, augment: bool,
    iterations: int, seed: int,
) -> list[int]:
    """k-means the embeddings of each class's shapes into ``prior``'s codebook; returns the codes per class."""
    generator = torch.Generator().manual_seed(seed)
    per_class: list[Optional[torch.Tensor]] = [None]
    for label in tqdm(range(1, num_classes + 1), desc="k-means", unit="class"):
        class_shapes = shapes[labels == label]
        if len(class_shapes) == 0:
            per_class.append(None)
            continue
        if augment:
            class_shapes = dihedral_augment(class_shapes)
        embeddings = torch.cat([prior.autoencoder.encode(chunk) for chunk in class_shapes.split(4096)])
        per_class.append(kmeans(embeddings, prior.num_clusters, iterations, generator))
    prior.set_codebook(per_class)
    return [0 if codes is None else len(codes) for codes in per_class[1:]]


def build_codebook(
    cfg: CfgNode, annotations: AnnotationSet, autoencoder: Optional[ShapeAutoEncoder] = None
) -> tuple[ShapePrior, dict]:
    """The shape prior of ``cfg`` for the split: ``autoencoder`` (trained jointly) or one trained
    here, and the per-class codebook. Returns it and a summary of what was done."""
    prior_cfg = cfg.MODEL.VRSP.SHAPE_PRIOR
    cfg = cfg.clone()
    cfg.MODEL.NUM_CLASSES = len(annotations.categories)
    cfg.MODEL.VRSP.SHAPE_PRIOR.FILE = ""
    torch.manual_seed(cfg.SOLVER.SEED)  # the auto-encoder's initialisation
    prior = shape_prior_from_config(cfg)
    mask_size = cfg.MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION * UPSAMPLE_FACTOR
    shapes, labels = training_shapes(annotations, mask_size)
    summary = {"shapes": len(shapes), "mask_size": mask_size}
    if autoencoder is not None:
        prior.autoencoder.load_state_dict(autoencoder.state_dict())
        summary["autoencoder"] = "from the trained model"
    else:
        summary["autoencoder_loss"] = train_autoencoder(
            prior.autoencoder, shapes, prior_cfg.TRAIN_ITERS, prior_cfg.TRAIN_BATCH, prior_cfg.TRAIN_LR, cfg.SOLVER.SEED
        )
    prior.autoencoder.eval()
    summary["codes_per_class"] = fill_codebook(
        prior, shapes, labels, cfg.MODEL.NUM_CLASSES, prior_cfg.AUGMENT, prior_cfg.KMEANS_ITERS, cfg.SOLVER.SEED
    )
    logger.info("shape prior: %s", summary)
    return prior, summary
