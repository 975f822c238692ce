"""Running a trained model over images and turning its outputs into results entries (SPEC section 7).

A results entry is one detection in the COCO results style, extended for amodal segmentation::

    {"image_id", "category_id", "score", "bbox": [x, y, w, h] (amodal box),
     "segmentation": amodal RLE, "visible_segmentation": visible RLE, "depth_rank": 1 = front-most}

Model outputs carry contiguous labels 1..C; ``category_ids[label - 1]`` is the dataset's id (the
categories sorted by id: ``data.records.category_ids_of``).
"""
from __future__ import annotations

from typing import Iterable, Optional, Sequence

import torch
from torch import Tensor
from tqdm import tqdm

from ..modeling.mask_branches import OUTPUT_FIELDS
from ..structures.masks import encode_mask, encode_masks, resize_mask
from .host_memory import keep_freed_host_memory


def check_output_fields(output: dict, where: str) -> None:
    """Fail naming the image when a model output lacks a field of the shared output structure."""
    missing = [name for name in OUTPUT_FIELDS if name not in output]
    if missing:
        raise ValueError(f"model output for {where} lacks {', '.join(missing)}; it has {', '.join(sorted(output))}")


def predictions_to_results(
    output: dict, image_id: int, category_ids: Sequence[int], mask_size: Optional[Sequence[int]] = None
) -> list[dict]:
    """One image's model output (tensors, original-image pixels) -> its results entries.

    With ``mask_size`` (H, W) the masks may be at a smaller working resolution: each is resized to
    (H, W) and encoded in turn (``resize_mask``), so only one full-size mask exists at a time; the
    boxes must already be in (H, W) pixels.
    """
    check_output_fields(output, f"image {image_id}")
    labels = output["labels"].tolist()
    unknown = sorted({label for label in labels if not 1 <= label <= len(category_ids)})
    if unknown:
        raise ValueError(f"image {image_id}: labels {unknown} outside 1..{len(category_ids)} (the model's classes)")
    boxes = output["boxes"].detach().float().cpu()
    boxes_xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
    amodal = _encoded(output["amodal_masks"], mask_size)
    visible = _encoded(output["visible_masks"], mask_size)
    return [
        {
            "image_id": int(image_id),
            "category_id": category_ids[label - 1],
            "score": score,
            "bbox": box,
            "segmentation": amodal_rle,
            "visible_segmentation": visible_rle,
            "depth_rank": rank,
        }
        for label, score, box, amodal_rle, visible_rle, rank in zip(
            labels, output["scores"].tolist(), boxes_xywh, amodal, visible, output["depth_rank"].tolist()
        )
    ]


def _encoded(masks: Tensor, size: Optional[Sequence[int]]) -> list[dict]:
    array = masks.detach().bool().cpu().numpy()
    if size is None:
        return encode_masks(array)
    return [encode_mask(resize_mask(mask, size)) for mask in array]


@torch.no_grad()
def run_inference(
    model: torch.nn.Module,
    loader: Iterable,
    device: torch.device | str,
    category_ids: Sequence[int],
    progress: bool = True,
) -> tuple[list[dict], set[int]]:
    """Results entries for every image of an eval loader (batches of ``(images, targets)``), and the
    ids of the images inferred.

    The model runs in eval mode and gets its previous mode back afterwards, so a trainer can call
    this between iterations. An image id seen twice is inferred once: the dataset stands in the
    next readable image for an unreadable one, and scoring that image twice would count its
    detections twice. The ids of unreadable images are not among those returned, so their ground
    truth can be left out of scoring instead of counting as missed.
    """
    keep_freed_host_memory()
    was_training = model.training
    model.eval()
    results, seen = [], set()
    try:
        for images, targets in tqdm(loader, desc="inference", unit="batch", disable=not progress):
            fresh = []
            for index, target in enumerate(targets):
                if target["image_id"] not in seen:
                    seen.add(target["image_id"])
                    fresh.append(index)
            if not fresh:
                continue
            outputs = model([images[i].to(device, non_blocking=True) for i in fresh])
            for index, output in zip(fresh, outputs):
                results.extend(predictions_to_results(output, targets[index]["image_id"], category_ids))
    finally:
        model.train(was_training)
    return results, seen
