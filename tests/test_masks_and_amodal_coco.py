import json
import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from sln_amodal.data.readers.amodal_coco import read_amodal_coco, write_amodal_coco
from sln_amodal.data.readers.common import FieldError, as_int
from sln_amodal.data.records import AnnotationError, AnnotationSet, DropLog, ImageRecord, ObjectAnnotation
from sln_amodal.numbers import is_finite_number, is_number, whole_number
from sln_amodal.structures.masks import (
    SegmentationError,
    decode_rle,
    encode_mask,
    encode_masks,
    mask_to_bbox,
    resize_mask,
    rle_area,
    rle_to_bbox,
    segmentation_to_rle,
)


def _random_masks(rng, n, h, w):
    return rng.random((n, h, w)) > 0.6


def test_rle_round_trip_and_stack_encoding():
    rng = np.random.default_rng(0)
    masks = _random_masks(rng, 4, 13, 17)
    rles = encode_masks(masks)
    for mask, rle in zip(masks, rles):
        assert isinstance(rle["counts"], str)
        assert rle == encode_mask(mask)
        np.testing.assert_array_equal(decode_rle(rle), mask)
        assert rle_area(rle) == mask.sum()
        assert rle_to_bbox(rle) == mask_to_bbox(mask)


def test_resize_mask_matches_bilinear_interpolation_of_the_whole_mask():
    mask = np.zeros((30, 40), dtype=bool)
    mask[4:20, 25:40] = _random_masks(np.random.default_rng(0), 1, 16, 15)[0]  # touches the right border
    size = (71, 97)
    interpolated = F.interpolate(torch.from_numpy(mask)[None, None].float(), size=size, mode="bilinear",
                                 align_corners=False)[0, 0].numpy()
    decided = np.abs(interpolated - 0.5) > 1e-4  # exact ties may fall either way in float
    resized = resize_mask(mask, size)
    assert resized.shape == size and resized.dtype == bool
    np.testing.assert_array_equal(resized[decided], (interpolated >= 0.5)[decided])
    assert not resize_mask(np.zeros((30, 40), dtype=bool), size).any()
    np.testing.assert_array_equal(resize_mask(mask.astype(np.uint8), mask.shape), mask)


def test_segmentation_forms():
    h, w = 8, 10
    square = [1, 1, 5, 1, 5, 5, 1, 5]
    flat = decode_rle(segmentation_to_rle(square, h, w))
    nested = decode_rle(segmentation_to_rle([square], h, w))
    np.testing.assert_array_equal(flat, nested)
    assert flat.sum() > 0
    uncompressed = {"size": [h, w], "counts": [3, 5, h * w - 8]}
    assert decode_rle(segmentation_to_rle(uncompressed, h, w)).sum() == 5
    compressed = encode_mask(flat)
    np.testing.assert_array_equal(decode_rle(segmentation_to_rle(compressed, h, w)), flat)


@pytest.mark.parametrize(
    "segmentation, message",
    [
        ([1, 2, 3, 4], "at least 6 numbers"),
        ([], "polygon list"),
        ({"size": [3, 3], "counts": "0"}, "differs from image size"),
        ({"counts": "0"}, "needs 'size'"),
        ("text", "polygon list"),
    ],
)
def test_degenerate_segmentations_raise(segmentation, message):
    with pytest.raises(SegmentationError, match=message):
        segmentation_to_rle(segmentation, 8, 10)


def test_whole_numbers_written_as_floats_are_accepted_like_pycocotools_does():
    h, w = 8, 10
    mask = decode_rle(segmentation_to_rle({"size": [h, w], "counts": [3, 5, h * w - 8]}, h, w))
    for segmentation in ({"size": [float(h), w], "counts": [3, 5, h * w - 8]},
                         {"size": [h, np.float32(w)], "counts": [3.0, np.int64(5), float(h * w - 8)]},
                         {"size": [float(h), float(w)], "counts": encode_mask(mask)["counts"]}):
        rle = segmentation_to_rle(segmentation, h, w)
        assert rle["size"] == [h, w] and all(type(side) is int for side in rle["size"])
        np.testing.assert_array_equal(decode_rle(rle), mask)
        counts = segmentation["counts"]
        theirs = (mask_utils.decode({**segmentation, "counts": counts.encode()}) if isinstance(counts, str)
                  else mask_utils.decode(mask_utils.frPyObjects(segmentation, h, w)))
        np.testing.assert_array_equal(theirs, mask)  # pycocotools reads them so too
    for size, counts, message in (([8.5, w], [h * w], "RLE size must be"), ([True, w], [h * w], "RLE size must be"),
                                  ([h, w], [3, 5.5, h * w - 8.5], "RLE counts must be integers, got float 5.5"),
                                  ([h, w], [float("nan"), h * w], "RLE counts must be integers, got float nan"),
                                  ([h, w], [False, h * w], "RLE counts must be integers, got bool False")):
        with pytest.raises(SegmentationError, match=message):
            segmentation_to_rle({"size": size, "counts": counts}, h, w)


def test_one_definition_of_numbers():
    assert [whole_number(v) for v in (3, 3.0, np.int32(3), np.float64(3.0), -2.0)] == [3, 3, 3, 3, -2]
    assert [whole_number(v) for v in (3.5, "3", True, np.bool_(True), float("nan"), float("inf"), None)] == [None] * 7
    assert all(is_finite_number(v) for v in (0, 1.5, np.float32(2), np.int64(-1)))
    assert not any(is_finite_number(v) for v in (True, "1", None, float("nan"), float("-inf"), [1]))
    assert is_number(float("nan")) and not is_number(False)
    # ids read through the same rule: 3 and 3.0 and "3" are one id; 3.5 and True are none
    assert as_int(3.0, "id") == as_int("3", "id") == as_int(3, "id") == 3
    for bad in (3.5, True, float("nan"), [3]):
        with pytest.raises(FieldError):
            as_int(bad, "id")


def _annotation_set():
    rng = np.random.default_rng(1)
    amodal = _random_masks(rng, 3, 20, 30)
    visible = amodal & (rng.random(amodal.shape) > 0.3)
    objects = [
        ObjectAnnotation(category_id=2, amodal=encode_mask(a), visible=encode_mask(v), bbox=tuple(mask_to_bbox(a)),
                         occlude_rate=1 - v.sum() / a.sum(), depth_rank=i + 1, is_stuff=i == 2, iscrowd=False)
        for i, (a, v) in enumerate(zip(amodal, visible))
    ]
    record = ImageRecord("a.png", 20, 30, 5, objects, depth_constraints=[(0, 2)])
    empty = ImageRecord("b.png", 20, 30, 6)
    return AnnotationSet([{"id": 2, "name": "thing"}], [record, empty]), amodal, visible


def test_amodal_coco_round_trip_loads_in_pycocotools(tmp_path):
    annotations, amodal, visible = _annotation_set()
    path = tmp_path / "ann.json"
    write_amodal_coco(annotations, str(path))
    coco = COCO(str(path))
    for ann_id, mask in zip(sorted(coco.anns), amodal):
        np.testing.assert_array_equal(coco.annToMask(coco.anns[ann_id]).astype(bool), mask)
    back = read_amodal_coco(str(path))
    assert [r.image_id for r in back.records] == [5, 6]
    assert back.records[0].depth_constraints == [(0, 2)]
    for obj, a, v in zip(back.records[0].objects, amodal, visible):
        np.testing.assert_array_equal(decode_rle(obj.amodal), a)
        np.testing.assert_array_equal(decode_rle(obj.visible), v)
        assert obj.occlude_rate == pytest.approx(1 - v.sum() / a.sum())
    assert [o.depth_rank for o in back.records[0].objects] == [1, 2, 3]
    assert [o.is_stuff for o in back.records[0].objects] == [False, False, True]


def test_reader_drops_and_counts_bad_objects_or_raises_when_strict(tmp_path, caplog):
    annotations, _, _ = _annotation_set()
    path = tmp_path / "ann.json"
    write_amodal_coco(annotations, str(path))
    data = json.loads(path.read_text())
    data["annotations"][0]["segmentation"] = [1, 2, 3, 4]  # degenerate polygon
    data["annotations"][1]["bbox"] = [100, 100, 5, 5]  # outside the 30x20 image
    data["annotations"].append(dict(data["annotations"][2], id=99, image_id=1234))  # unknown image
    path.write_text(json.dumps(data))

    log = DropLog(str(path))
    back = read_amodal_coco(str(path), log=log)
    assert len(back.records[0].objects) == 1
    assert back.records[0].depth_constraints == []  # it named a dropped object
    assert sum(log.dropped.values()) == 4
    summary = log.summary()
    assert "at least 6 numbers" in summary and "outside" in summary and "no image with id 1234" in summary

    with pytest.raises(AnnotationError, match=r"ann\.json annotation id 1: amodal segmentation"):
        read_amodal_coco(str(path), strict=True)

    # Without a usable id, an annotation naming no image is named by its own position in the file.
    idless = {key: value for key, value in data["annotations"][2].items() if key != "id"} | {"image_id": 1234}
    path.write_text(json.dumps(dict(data, annotations=data["annotations"][2:3] + [idless, idless])))
    with caplog.at_level(logging.DEBUG, logger="sln_amodal.data.records"):
        read_amodal_coco(str(path))
    for position in (1, 2):
        assert f"{path} annotation {position}: image_id: no image with id 1234" in caplog.text


def test_missing_field_and_bad_json_name_file_and_field(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(AnnotationError, match=r"broken\.json: <file>"):
        read_amodal_coco(str(path))
    path.write_text(json.dumps({"images": [{"id": 1, "width": 3, "file_name": "x"}], "annotations": [],
                                "categories": []}))
    log = DropLog(str(path))
    assert read_amodal_coco(str(path), log=log).records == []
    assert log.dropped == {"image: height: missing": 1}
    with pytest.raises(AnnotationError, match=r"broken\.json image id 1: height: missing"):
        read_amodal_coco(str(path), strict=True)
