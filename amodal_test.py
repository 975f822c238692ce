"""Run a trained model on a folder of images:
``python amodal_test.py --images DIR --model PATH --out DIR [--score-thresh T] [KEY VALUE ...]``.

For every image NAME.ext in DIR (jpg, jpeg, png, bmp; greyscale and RGBA too) it writes
  OUT/NAME.png   the overlay: per object its visible region filled, its hidden region hatched and
                 outlined, its amodal outline, and a "#depth-rank class score" label; objects
                 scoring below T (default VIS.SCORE_THRESH) are not drawn;
  OUT/NAME.json  every detection as a results entry (SPEC section 7: image_id, category_id, score,
                 bbox, segmentation = amodal RLE, visible_segmentation, depth_rank) plus file_name;
  OUT/NAME_PICTURE.png  with --debug-pictures (alias --sem-dist): the mask branch's pictures of the
                 drawn objects, for debugging (the SLN: NAME_sem_dist.png, its sem-dist maps).
Boxes and masks are in the photo's pixels. A photo above VIS.MAX_WORKING_MEGAPIXELS goes through the
model scaled down to that size; each detection's masks are then resized to the photo's size one at
a time, so memory grows with the detections only by their masks at that capped working size (about
4 bytes per working pixel each, ~8 MB per detection at 2 MP), not with detections x photo megapixels.
Two images with the same NAME keep their extension in the output names (NAME.jpg.png ...). Other
files are skipped with a note; an unreadable image is skipped with a warning and counted. OUT may
not be DIR or lie inside it (the overlays would replace the photos or be read back as inputs).
KEY VALUE pairs (anywhere on the line) override the checkpoint's saved config (after --config).
The checkpoint loads as weights only; --trust-checkpoint unpickles it fully (only for files from a
trusted source: unpickling can run code).
"""
from __future__ import annotations

import argparse
import collections
import json
import logging
import math
import os
import sys

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from sln_amodal.config import ConfigError
from sln_amodal.data.dataset import UnreadableImageError, read_image
from sln_amodal.data.records import category_ids_of, class_names_of
from sln_amodal.engine.checkpoint import CheckpointError, load_trained_model
from sln_amodal.engine.inference import predictions_to_results
from sln_amodal.engine.visualize import detections_to_draw, draw_overlay, overlay_style
from sln_amodal.fileio import OutputError, atomic_write, atomic_write_text, prepare_output_folder, refuse_input_overlap
from sln_amodal.modeling.mask_branches.vrsp_shape_prior import ShapePriorError
from sln_amodal.torch_files import add_trust_checkpoint_option

logger = logging.getLogger("amodal_test")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
PIXELS_PER_MEGAPIXEL = 1_000_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="amodal_test.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", required=True, help="folder of images (not searched recursively)")
    parser.add_argument("--model", required=True, help="training checkpoint, e.g. logs/model_final.pth")
    parser.add_argument("--out", required=True, help="folder for the overlays and JSON files")
    parser.add_argument("--score-thresh", type=float, help="lowest score drawn (default: config VIS.SCORE_THRESH)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the checkpoint's MODEL.DEVICE)")
    parser.add_argument("--debug-pictures", "--sem-dist", dest="debug_pictures", action="store_true",
                        help="also write the mask branch's pictures of the drawn detections "
                             "(the SLN: its sem-dist maps)")
    parser.add_argument("--config", help="YAML config applied on top of the checkpoint's config")
    add_trust_checkpoint_option(parser)
    parser.add_argument("overrides", nargs="*", metavar="KEY VALUE", help="config overrides")
    return parser


def split_image_files(folder: str) -> tuple[list[str], list[str]]:
    """The folder's image file names and its other entries, both sorted."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: no such image folder")
    images, others = [], []
    for name in sorted(os.listdir(folder)):
        is_image = os.path.isfile(os.path.join(folder, name)) and name.lower().endswith(IMAGE_EXTENSIONS)
        (images if is_image else others).append(name)
    return images, others


def output_stems(file_names: list[str]) -> dict[str, str]:
    """File name -> the name its outputs get: the name without extension, unless another image
    shares it (a.jpg beside a.png), then the whole file name."""
    stems = {name: os.path.splitext(name)[0] for name in file_names}
    shared = collections.Counter(stems.values())
    return {name: stem if shared[stem] == 1 else name for name, stem in stems.items()}


def working_size(height: int, width: int, max_megapixels: float) -> tuple[int, int]:
    """The (h, w) the model runs at: the photo's own size up to ``max_megapixels``, above it the
    photo scaled down (aspect kept, rounded down so the cap holds) to that many pixels."""
    scale = min(1.0, math.sqrt(max_megapixels * PIXELS_PER_MEGAPIXEL / (height * width)))
    return max(1, math.floor(height * scale)), max(1, math.floor(width * scale))


def detect(model: torch.nn.Module, image: torch.Tensor, max_megapixels: float, device: str) -> dict:
    """The model's output for a (3, H, W) image run at ``working_size``: boxes in the photo's
    pixels, masks at the working size (``predictions_to_results`` and ``draw_overlay`` resize them)."""
    photo_size = image.shape[-2:]
    size = working_size(*photo_size, max_megapixels)
    if size != tuple(photo_size):
        # Antialiased: a plain bilinear shrink of a large photo would alias fine texture.
        image = F.interpolate(image[None], size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    with torch.no_grad():
        output = model([image.to(device)])[0]
    scale_y, scale_x = photo_size[0] / size[0], photo_size[1] / size[1]
    output["boxes"] = output["boxes"] * output["boxes"].new_tensor([scale_x, scale_y, scale_x, scale_y])
    return output


def run(args: argparse.Namespace) -> None:
    refuse_input_overlap(args.out, args.images, "--out", "--images")
    images, others = split_image_files(args.images)
    prepare_output_folder(args.out, "--out")
    model, cfg, categories = load_trained_model(args.model, args.overrides, args.device, args.config,
                                                args.trust_checkpoint)
    if args.debug_pictures and not model.debug_picture_names:
        raise ConfigError(f"--debug-pictures: the mask branch of {args.model} draws none; it has "
                          f"{cfg.MODEL.ROI_MASK_HEAD.NAME}")
    score_thresh = cfg.VIS.SCORE_THRESH if args.score_thresh is None else args.score_thresh
    for name in others:
        logger.info("skipping %s: not an image file (%s)", os.path.join(args.images, name), ", ".join(IMAGE_EXTENSIONS))
    category_ids, class_names = category_ids_of(categories), class_names_of(categories)
    style = overlay_style(cfg)
    stems = output_stems(images)
    done = unreadable = detections = drawn = 0
    # Image ids number the folder's images (sorted by name) from 1, unreadable ones included.
    for image_id, name in enumerate(tqdm(images, desc="images", unit="img"), start=1):
        path = os.path.join(args.images, name)
        try:
            image = read_image(path)
        except UnreadableImageError as err:
            logger.warning("skipping unreadable image %s", err)
            unreadable += 1
            continue
        output = detect(model, torch.from_numpy(image).permute(2, 0, 1), cfg.VIS.MAX_WORKING_MEGAPIXELS,
                        cfg.MODEL.DEVICE)
        photo_size = image.shape[:2]
        entries = [{**entry, "file_name": name}
                   for entry in predictions_to_results(output, image_id, category_ids, mask_size=photo_size)]
        stem = os.path.join(args.out, stems[name])
        atomic_write_text(json.dumps(entries), f"{stem}.json")
        overlay = draw_overlay(image, output, score_thresh, class_names, style, resize_masks=True,
                               duplicate_iou=cfg.VIS.DUPLICATE_IOU)
        save_picture(overlay, f"{stem}.png")
        shown = torch.from_numpy(detections_to_draw(output, score_thresh, cfg.VIS.DUPLICATE_IOU))
        if args.debug_pictures:
            drawn_output = {name: value[shown.to(value.device)] for name, value in output.items()}
            pictures = model.debug_pictures(drawn_output, None, len(shown), cfg.SOLVER.VIS_MATCH_IOU)
            for picture_name, picture in pictures.items():
                save_picture(picture, f"{stem}_{picture_name}.png")
        done += 1
        detections += len(entries)
        drawn += len(shown)
    print(f"{done} images done, {unreadable} unreadable and {len(others)} other files skipped, "
          f"{detections} detections written ({drawn} drawn: score >= {score_thresh}, one per object) to {args.out}")


def save_picture(pixels, path: str) -> None:
    """An (H, W, 3) uint8 picture as a PNG, written atomically: a killed run leaves no half picture."""
    atomic_write(path, lambda f: Image.fromarray(pixels).save(f, format="PNG"), binary=True)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_intermixed_args(argv)
    try:
        with logging_redirect_tqdm():  # log lines above the progress bar, not glued to it
            run(args)
    except (CheckpointError, ConfigError, FileNotFoundError, OutputError, ShapePriorError) as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
