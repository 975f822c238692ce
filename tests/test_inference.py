"""Results entries from model outputs, overlay pictures and sem-dist pictures (engine/inference.py,
engine/visualize.py) on hand-made outputs."""
import json

import numpy as np
import pytest
import torch
from matplotlib import colormaps

from sln_amodal.config import get_default_config
from sln_amodal.data.records import (
    AnnotationSet,
    DropLog,
    ImageRecord,
    ObjectAnnotation,
    category_ids_of,
    class_names_of,
)
from sln_amodal.engine.inference import predictions_to_results
from sln_amodal.engine.visualize import (
    detections_to_draw,
    draw_overlay,
    object_colours,
    overlay_style,
    ranks_among_drawn,
)
from sln_amodal.evaluation import AmodalEvaluator, load_results
from sln_amodal.modeling.mask_branches.sln_pictures import MAP_GAP, SEM_DIST_COLORMAP, TILE_GAP, sem_dist_picture
from sln_amodal.structures.masks import decode_rle, encode_mask, mask_to_bbox
from testing import box_mask

HEIGHT, WIDTH = 80, 100
CATEGORIES = [{"id": 7, "name": "box"}, {"id": 3, "name": "cup"}]  # label 1 = id 3 (cup), label 2 = id 7 (box)


def rectangle(y0, x0, y1, x1):
    return box_mask(y0, x0, y1, x1, HEIGHT, WIDTH)


def scene():
    """A cup (front) hiding the lower right corner (rows 35..44, columns 35..44) of a box (back):
    the masks and the model output that predicts them exactly."""
    cup, box = rectangle(35, 35, 65, 75), rectangle(15, 5, 45, 45)
    amodal = np.stack([cup, box])
    visible = np.stack([cup, box & ~cup])
    output = {
        "boxes": torch.tensor([[35.0, 35.0, 75.0, 65.0], [5.0, 15.0, 45.0, 45.0]]),
        "labels": torch.tensor([1, 2]),
        "scores": torch.tensor([0.9, 0.6]),
        "amodal_masks": torch.from_numpy(amodal),
        "visible_masks": torch.from_numpy(visible),
        "occlude_rate": torch.tensor([0.0, float(1 - visible[1].sum() / amodal[1].sum())]),
        "depth_rank": torch.tensor([1, 2]),
    }
    return amodal, visible, output


def test_results_entries_carry_rles_boxes_and_dataset_ids():
    amodal, visible, output = scene()
    entries = predictions_to_results(output, image_id=12, category_ids=category_ids_of(CATEGORIES))
    assert [e["category_id"] for e in entries] == [3, 7]
    assert [e["image_id"] for e in entries] == [12, 12]
    assert [e["depth_rank"] for e in entries] == [1, 2]
    assert entries[0]["score"] == pytest.approx(0.9)
    assert entries[1]["bbox"] == [5.0, 15.0, 40.0, 30.0]  # xywh
    for entry, amodal_i, visible_i in zip(entries, amodal, visible):
        assert isinstance(entry["segmentation"]["counts"], str)
        assert np.array_equal(decode_rle(entry["segmentation"]), amodal_i)
        assert np.array_equal(decode_rle(entry["visible_segmentation"]), visible_i)
        assert entry["segmentation"]["size"] == [HEIGHT, WIDTH]
    assert json.loads(json.dumps(entries)) == entries


def test_no_detections_give_no_entries():
    output = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0),
              "amodal_masks": torch.zeros(0, HEIGHT, WIDTH, dtype=torch.bool),
              "visible_masks": torch.zeros(0, HEIGHT, WIDTH, dtype=torch.bool),
              "occlude_rate": torch.zeros(0), "depth_rank": torch.zeros(0, dtype=torch.int64)}
    assert predictions_to_results(output, 1, [3, 7]) == []


def test_bad_outputs_are_named():
    _, _, output = scene()
    with pytest.raises(ValueError, match=r"labels \[2\] outside 1..1"):
        predictions_to_results(output, 5, [3])
    del output["visible_masks"]
    with pytest.raises(ValueError, match="image 5 lacks visible_masks"):
        predictions_to_results(output, 5, [3, 7])


def test_exact_predictions_score_perfectly(tmp_path):
    amodal, visible, output = scene()
    objects = [
        ObjectAnnotation(category_id, encode_mask(a), encode_mask(v), tuple(mask_to_bbox(a)),
                         float(1 - v.sum() / a.sum()), depth_rank=rank)
        for category_id, a, v, rank in zip([3, 7], amodal, visible, [1, 2])
    ]
    ground_truth = AnnotationSet(CATEGORIES, [ImageRecord("a.png", HEIGHT, WIDTH, 12, objects)])
    path = tmp_path / "results.json"
    path.write_text(json.dumps(predictions_to_results(output, 12, category_ids_of(CATEGORIES))))
    log = DropLog(str(path), strict=True)
    detections = load_results(str(path), ground_truth, log=log)
    metrics = AmodalEvaluator(ground_truth, detections, get_default_config().EVAL).evaluate().metrics
    assert len(detections) == 2
    assert metrics["amodal"]["all"]["AP"] == pytest.approx(1.0)
    assert metrics["visible"]["AP"] == pytest.approx(1.0)
    assert metrics["depth_order"] == {"accuracy": 1.0, "pairs": 1, "matched_pairs": 1}


def grey_image():
    return np.full((HEIGHT, WIDTH, 3), 100, dtype=np.uint8)


def test_overlay_fills_visible_and_hatches_hidden():
    _, _, output = scene()
    style = overlay_style(get_default_config())
    picture = draw_overlay(grey_image(), output, score_thresh=0.5, class_names=["cup", "box"], style=style)
    assert picture.shape == (HEIGHT, WIDTH, 3) and picture.dtype == np.uint8
    cup_colour, box_colour = object_colours(2, style.colour_seed) * 255
    inset = style.outline_width  # interior pixels, clear of the outlines
    alpha = style.fill_alpha

    def close(pixels, colour):
        return np.abs(pixels.reshape(-1, 3).astype(float) - np.round(colour)).max(axis=1) <= 1

    # Visible regions are the alpha blend of grey and the object's colour (below the box, and
    # left of the cup, so clear of the outlines and of the cup's label).
    assert close(picture[45 + inset:65 - inset, 35 + inset:75 - inset], (1 - alpha) * 100 + alpha * cup_colour).all()
    assert close(picture[15 + inset:45 - inset, 5 + inset:35 - inset], (1 - alpha) * 100 + alpha * box_colour).all()

    # The box's hidden corner lies under the cup: hatch lines in the box's colour show through the
    # cup's blend; between the lines the cup's blend is alone.
    hidden = picture[35 + inset:45 - inset, 35 + inset:45 - inset]
    on_line = close(hidden, (1 - alpha) * box_colour + alpha * cup_colour)
    between = close(hidden, (1 - alpha) * 100 + alpha * cup_colour)
    assert on_line.any() and between.any() and (on_line | between).all()

    # The amodal outline: in the box's colour where it is in front, seen through the cup below it.
    assert close(picture[15, 20], box_colour).all()
    assert close(picture[44, 40], (1 - alpha) * box_colour + alpha * cup_colour).all()
    # Outside every object and label the image is untouched; the box's label (text on black) sits
    # above its top-left corner.
    assert (picture[HEIGHT - 10:, :30] == 100).all()
    assert (picture[:15, 5:60] == 0).all(axis=2).any()
    assert not (picture[:15, 60:] != 100).any()


def test_labels_follow_category_ids_whatever_the_file_order():
    """Label i is the i-th smallest category id, for the targets, the results and the class names alike."""
    categories = [{"id": 9, "name": "cup"}, {"id": 2}, {"id": 5, "name": "box"}]  # unordered, one unnamed
    assert category_ids_of(categories) == [2, 5, 9]
    assert class_names_of(categories) == ["2", "box", "cup"]
    assert AnnotationSet(categories, []).contiguous_ids() == {2: 1, 5: 2, 9: 3}


def test_overlay_ranks_count_among_the_drawn_objects():
    assert ranks_among_drawn(np.array([5, 2, 9, 0, 2])).tolist() == [2, 1, 3, 0, 1]
    assert ranks_among_drawn(np.zeros(0, dtype=np.int64)).tolist() == []


def test_overlay_draws_one_detection_per_object():
    """Per-class NMS can leave one object under two classes; the picture shows the higher-scoring one."""
    output = {"scores": torch.tensor([0.6, 0.9, 0.8, 0.3]),
              "boxes": torch.tensor([[10.0, 10, 50, 50], [11, 10, 50, 51], [60, 10, 90, 40], [60, 10, 90, 40]])}
    assert detections_to_draw(output, 0.5).tolist() == [0, 1, 2]  # no suppression asked for
    assert detections_to_draw(output, 0.5, duplicate_iou=0.7).tolist() == [1, 2]  # 0 duplicates 1
    assert detections_to_draw(output, 0.0, duplicate_iou=0.7).tolist() == [1, 2]  # 3 duplicates 2
    assert detections_to_draw(output, 0.95, duplicate_iou=0.7).tolist() == []
    assert detections_to_draw({**output, "boxes": output["boxes"][[0, 2, 1, 3]]}, 0.5, 0.99).tolist() == [0, 1, 2]


def test_overlay_threshold_and_float_input():
    _, _, output = scene()
    untouched = draw_overlay(grey_image(), output, score_thresh=0.95, class_names=None)
    assert (untouched == 100).all()
    from_uint8 = draw_overlay(grey_image(), output, 0.5, None)
    from_float = draw_overlay(grey_image().astype(np.float32) / 255, output, 0.5, None)
    assert np.array_equal(from_uint8, from_float)
    with pytest.raises(ValueError, match="do not match the image"):
        draw_overlay(np.zeros((HEIGHT + 1, WIDTH, 3), dtype=np.uint8), output, 0.5, None)


def test_sem_dist_picture_tiles_and_fixed_colour_scale():
    num_layers, grid = 3, 28
    predicted = torch.zeros(3, grid, grid)
    predicted[:, :10] = num_layers  # the visible level
    predicted[:, 20:] = num_layers + 1  # above the scale: clipped to its top
    target = torch.full((3, grid, grid), 1.0)
    picture = sem_dist_picture(predicted, target, num_layers)
    tile_width = 2 * grid + MAP_GAP
    assert picture.shape == (grid, 3 * tile_width + 2 * TILE_GAP, 3) and picture.dtype == np.uint8
    colormap = colormaps[SEM_DIST_COLORMAP]
    top, bottom = (np.array(colormap(1.0)[:3]) * 255).round(), (np.array(colormap(0.0)[:3]) * 255).round()
    second_tile = tile_width + TILE_GAP
    assert np.array_equal(picture[0, second_tile], top) and np.array_equal(picture[grid - 1, second_tile], top)
    assert np.array_equal(picture[15, second_tile], bottom)
    target_colour = (np.array(colormap(1 / num_layers)[:3]) * 255).round()
    assert np.array_equal(picture[15, second_tile + grid + MAP_GAP], target_colour)
    assert (picture[:, grid] == 255).all()  # the gap between a prediction and its target

    alone = sem_dist_picture(predicted.numpy()[:1], None, num_layers)
    assert alone.shape == (grid, grid, 3)
