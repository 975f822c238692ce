"""Readers of the upstream datasets, each fed small files written in that dataset's real schema.

The ``write_*`` sample builders are shared with tests/test_converters.py.
"""
import collections
import json
import os

import numpy as np
import pytest

from sln_amodal.data.readers.cocoa import read_cocoa
from sln_amodal.data.readers import d2sa, kins
from sln_amodal.data.readers.d2sa import read_d2sa
from sln_amodal.data.readers.kins import read_kins
from sln_amodal.data.readers.sln_npz import decode_layer, load_layer, read_sln_npz, write_sln_npz
from sln_amodal.data.records import AnnotationError, DropLog
from sln_amodal.structures.masks import decode_rle, encode_mask, segmentation_to_rle

H, W = 24, 32


def rect(x0, y0, x1, y1):
    """A flat polygon [x1, y1, x2, y2, ...] tracing an axis-aligned rectangle."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def polygon_mask(polygon):
    return decode_rle(segmentation_to_rle(polygon, H, W))


def write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f)
    return str(path)


# ------------------------------------------------------------------------------------ COCOA
COCOA_FRONT, COCOA_BACK, COCOA_SIDE = rect(2, 2, 12, 12), rect(8, 8, 20, 20), rect(22, 4, 30, 10)


def write_cocoa(path):
    """Image 1 has two annotator records, image 2 one, image 3 none; one record names image 99."""
    front, back = polygon_mask(COCOA_FRONT), polygon_mask(COCOA_BACK)
    regions = [
        {"segmentation": COCOA_FRONT, "name": "cup", "area": 100.0, "isStuff": 0, "occlude_rate": 0.0, "order": 1},
        # Occluded by the cup: the only region carrying visible_mask / invisible_mask (string counts).
        {"segmentation": COCOA_BACK, "name": "table", "area": 144.0, "isStuff": 1, "order": 3,
         "occlude_rate": float((back & front).sum() / back.sum()),
         "visible_mask": encode_mask(back & ~front), "invisible_mask": encode_mask(back & front)},
        {"segmentation": [1, 1, 3, 3], "name": "speck", "area": 0.0, "isStuff": 0, "occlude_rate": 0.0, "order": 4},
        {"segmentation": COCOA_SIDE, "name": "box", "area": 48.0, "isStuff": False, "occlude_rate": 0.0, "order": 6},
    ]
    data = {
        "images": [{"id": i, "file_name": f"COCO_val2014_{i:012d}.jpg", "height": H, "width": W} for i in (1, 2, 3)],
        "annotations": [
            {"id": 11, "image_id": 1, "author": "ann1", "size": 4, "regions": regions,
             "depth_constraint": "1-2,1-3,2-4,x-y"},
            {"id": 12, "image_id": 2, "author": "ann1", "size": 1, "depth_constraint": "",
             "regions": [{"segmentation": rect(5, 5, 15, 15), "name": "dog", "area": 100.0, "isStuff": 0,
                          "occlude_rate": 0.0, "order": 1}]},
            {"id": 13, "image_id": 1, "author": "ann2", "size": 1,
             "regions": [{"segmentation": rect(0, 0, 10, 10), "name": "mug", "area": 100.0, "isStuff": 0,
                          "occlude_rate": 0.0, "order": 2}]},
            {"id": 14, "image_id": 99, "author": "ann1", "size": 0, "regions": []},
        ],
    }
    return write_json(path, data)


def cocoa_expected_masks():
    """(amodal, visible) of image 1's kept regions, first annotator."""
    front, back, side = (polygon_mask(p) for p in (COCOA_FRONT, COCOA_BACK, COCOA_SIDE))
    return [front, back, side], [front, back & ~front, side]


def test_cocoa_first_annotator(tmp_path):
    path = write_cocoa(tmp_path / "COCO_amodal_val2014.json")
    log = DropLog(path)
    annotations = read_cocoa(path, log=log)

    assert annotations.categories == [{"id": 1, "name": "object"}]
    assert [r.image_id for r in annotations.records] == [1, 2, 3]
    image = annotations.records[0]
    amodal, visible = cocoa_expected_masks()
    assert len(image.objects) == 3
    for obj, a, v in zip(image.objects, amodal, visible):
        np.testing.assert_array_equal(decode_rle(obj.amodal), a)
        np.testing.assert_array_equal(decode_rle(obj.visible), v)
        assert obj.category_id == 1
        assert obj.occlude_rate == pytest.approx(1 - v.sum() / a.sum())
    assert [o.depth_rank for o in image.objects] == [1, 2, 3]  # orders 1, 3, 6 with the gaps removed
    assert [o.is_stuff for o in image.objects] == [False, True, False]
    assert [o.name for o in image.objects] == ["cup", "table", "box"]
    # "1-3" names the dropped speck and "x-y" is not a pair; "2-4" now links objects 1 and 2.
    assert image.depth_constraints == [(0, 1), (1, 2)]
    assert len(annotations.records[2].objects) == 0

    assert log.counts["objects read"] == 5 and log.counts["objects kept"] == 4
    assert log.counts["depth constraints read"] == 4 and log.counts["depth constraints kept"] == 2
    assert log.dropped["object: amodal segmentation: no polygon with at least 6 numbers"] == 1
    assert log.dropped["depth constraint: depth_constraint: '1-3' names a dropped region"] == 1
    assert log.dropped["depth constraint: depth_constraint: cannot parse 'x-y'"] == 1
    assert log.dropped["annotation: image_id: no image with id 99"] == 1


def test_cocoa_second_annotator(tmp_path):
    path = write_cocoa(tmp_path / "cocoa.json")
    log = DropLog(path)
    annotations = read_cocoa(path, log=log, annotator=1)

    assert [r.image_id for r in annotations.records] == [1, 3]  # image 2 has one annotator only
    (mug,) = annotations.records[0].objects
    np.testing.assert_array_equal(decode_rle(mug.amodal), polygon_mask(rect(0, 0, 10, 10)))
    assert mug.name == "mug" and mug.depth_rank == 1
    assert log.dropped["image: annotations: 1 annotator record(s), annotator 1 requested"] == 1


def test_cocoa_strict_names_file_and_field(tmp_path):
    path = write_cocoa(tmp_path / "cocoa.json")
    with pytest.raises(AnnotationError, match=r"cocoa\.json image id 1 annotator 0 region 3: amodal segmentation"):
        read_cocoa(path, strict=True)


def test_unreadable_file_and_missing_top_level_key_raise(tmp_path):
    not_json = tmp_path / "broken.json"
    not_json.write_text("{ not json")
    with pytest.raises(AnnotationError, match="broken.json: <file>: cannot read JSON"):
        read_cocoa(str(not_json))
    no_annotations = write_json(tmp_path / "partial.json", {"images": []})
    for reader in (read_cocoa, read_d2sa, read_kins):
        with pytest.raises(AnnotationError, match="partial.json top level: annotations: missing"):
            reader(no_annotations)


# ------------------------------------------------------------------------------------- D2SA
D2SA_BACK, D2SA_FRONT = rect(4, 4, 20, 18), rect(14, 2, 26, 12)


def write_d2sa(path):
    """Image 10: two objects (and three bad ones); image 11: no annotations; image 12: one object
    ranked by ``amodal_region.order`` and one whose box lies outside the image."""
    back, front = polygon_mask(D2SA_BACK), polygon_mask(D2SA_FRONT)
    images = [{"id": i, "file_name": f"D2S_{i:06d}.jpg", "height": H, "width": W} for i in (10, 11, 12)]
    annotations = [
        {"id": 1, "image_id": 10, "category_id": 7, "segmentation": [D2SA_BACK], "bbox": [4, 4, 16, 14],
         "visible_mask": encode_mask(back & ~front), "invisible_mask": encode_mask(back & front),
         "occlude_rate": float((back & front).sum() / back.sum()), "occl_depth": 2, "iscrowd": False,
         "area": float(back.sum())},
        {"id": 2, "image_id": 10, "category_id": 60, "segmentation": encode_mask(front), "bbox": [14, 2, 12, 10],
         "visible_mask": [D2SA_FRONT], "occlude_rate": 0.0, "occl_depth": 0, "iscrowd": True,
         "area": float(front.sum())},
        {"id": 3, "image_id": 10, "category_id": 61, "segmentation": [D2SA_FRONT], "visible_mask": [D2SA_FRONT]},
        {"id": 4, "image_id": 10, "category_id": 5, "segmentation": [D2SA_FRONT],
         "invisible_mask": encode_mask(front & back)},
        {"id": 5, "image_id": 12, "category_id": 3, "segmentation": [D2SA_FRONT], "bbox": [100, 100, 5, 5],
         "visible_mask": [D2SA_FRONT], "occl_depth": 0, "iscrowd": False},
        {"id": 6, "image_id": 12, "category_id": 3, "segmentation": [D2SA_BACK], "bbox": [4, 4, 16, 14],
         "visible_mask": [D2SA_BACK], "iscrowd": False, "amodal_region": {"order": 1, "isStuff": 0}},
    ]
    categories = [{"id": i, "name": f"product_{i}", "supercategory": "d2s"} for i in range(1, 61)]
    return write_json(path, {"images": images, "annotations": annotations, "categories": categories})


def d2sa_expected_masks():
    """(amodal, visible) of image 10's kept objects."""
    back, front = polygon_mask(D2SA_BACK), polygon_mask(D2SA_FRONT)
    return [back, front], [back & ~front, front]


def test_d2sa(tmp_path):
    path = write_d2sa(tmp_path / "D2S_amodal_validation.json")
    log = DropLog(path)
    annotations = read_d2sa(path, log=log)

    assert len(annotations.categories) == 60
    assert annotations.contiguous_ids()[60] == 60
    assert [r.image_id for r in annotations.records] == [10, 11, 12]
    image = annotations.records[0]
    amodal, visible = d2sa_expected_masks()
    for obj, a, v in zip(image.objects, amodal, visible):
        np.testing.assert_array_equal(decode_rle(obj.amodal), a)
        np.testing.assert_array_equal(decode_rle(obj.visible), v)
    assert [o.category_id for o in image.objects] == [7, 60]
    assert [o.depth_rank for o in image.objects] == [2, 1]  # occl_depth 2 and 0: smaller is nearer
    assert [o.iscrowd for o in image.objects] == [False, True]
    assert annotations.records[1].objects == []
    (ranked_by_order,) = annotations.records[2].objects
    assert ranked_by_order.depth_rank == 1

    assert log.dropped["object: category_id: unknown category 61"] == 1
    assert log.dropped["object: visible_mask: invisible_mask given without visible_mask"] == 1
    assert log.dropped[f"object: bbox: box [100, 100, 5, 5] lies outside the {W}x{H} image"] == 1
    assert log.counts["images kept"] == 3 and log.counts["objects kept"] == 3


# ------------------------------------------------------------------------------------- KINS
KINS_CATEGORIES = [{"id": i, "name": n} for i, n in enumerate(
    ["cyclist", "pedestrian", "rider", "car", "tram", "truck", "van", "misc"], start=1)]
KINS_SHAPES = [rect(2, 2, 14, 14), rect(10, 6, 22, 18), rect(18, 2, 30, 12), rect(0, 16, 8, 23)]


def write_kins(path, schema):
    """Four objects in one image: three in occlusion cluster 1 (in-cluster orders 2, 1, 3) and one
    alone in cluster 2; plus a degenerate polygon and an object of the unused category 3."""
    amodal_key, visible_key, box_key = {
        "2020": ("a_segm", "i_segm", "a_bbox"), "instances": ("segmentation", "inmodal_seg", "bbox")}[schema]
    annotations = []
    clusters, orders, categories = [1, 1, 1, 2], [2, 1, 3], [1, 4, 8, 2]
    for i, (shape, category) in enumerate(zip(KINS_SHAPES, categories)):
        x0, y0 = shape[0], shape[1]
        ann = {"id": i + 1, "image_id": 7, "category_id": category, amodal_key: [shape],
               visible_key: [rect(x0, y0, x0 + 4, y0 + 4)], box_key: [x0, y0, shape[2] - x0, shape[5] - y0],
               "iscrowd": 0}
        if schema == "2020":
            ann.update(oco_id=clusters[i], ico_id=orders[i] if i < 3 else 1, i_bbox=[x0, y0, 4, 4])
        else:
            ann["inmodal_bbox"] = [x0, y0, 4, 4]
        annotations.append(ann)
    annotations.append({**annotations[0], "id": 5, amodal_key: [[1, 1, 2, 2]]})
    annotations.append({**annotations[0], "id": 6, "category_id": 3})
    images = [{"id": 7, "file_name": "000007.png", "height": H, "width": W}]
    return write_json(path, {"images": images, "annotations": annotations, "categories": KINS_CATEGORIES})


@pytest.mark.parametrize("schema", ["instances", "2020"])
def test_kins_both_schemas(tmp_path, schema):
    path = write_kins(tmp_path / f"kins_{schema}.json", schema)
    log = DropLog(path)
    annotations = read_kins(path, log=log)

    assert [c["id"] for c in annotations.categories] == [1, 2, 4, 5, 6, 7, 8]
    assert annotations.contiguous_ids() == {1: 1, 2: 2, 4: 3, 5: 4, 6: 5, 7: 6, 8: 7}
    (image,) = annotations.records
    assert [o.category_id for o in image.objects] == [1, 4, 8, 2]
    for obj, shape in zip(image.objects, KINS_SHAPES):
        np.testing.assert_array_equal(decode_rle(obj.amodal), polygon_mask(shape))
        x0, y0 = shape[0], shape[1]
        np.testing.assert_array_equal(decode_rle(obj.visible), polygon_mask(rect(x0, y0, x0 + 4, y0 + 4)))
        assert obj.depth_rank is None
    if schema == "2020":
        # Cluster 1 holds objects 0, 1, 2 with in-cluster orders 2, 1, 3: object 1 is nearest.
        assert sorted(image.depth_constraints) == [(0, 2), (1, 0), (1, 2)]
    else:
        assert image.depth_constraints == []
    assert log.dropped["object: amodal segmentation: no polygon with at least 6 numbers"] == 1
    assert log.dropped["object: category_id: unknown category 3"] == 1


def test_depth_fields_are_parsed_once_per_annotation(tmp_path, monkeypatch):
    """D2SA's depth and KINS' cluster and order are read while the object is (a malformed one drops
    it) and that value is the one ranked: each annotation's fields parsed once."""
    for module, parser_name, path, reader in (
            (d2sa, "_depth", write_d2sa(tmp_path / "d2sa.json"), read_d2sa),
            (kins, "_cluster_and_order", write_kins(tmp_path / "kins.json", "2020"), read_kins)):
        calls = collections.Counter()
        parse = getattr(module, parser_name)

        def counting(ann, parse=parse, calls=calls):
            calls[id(ann)] += 1
            return parse(ann)

        monkeypatch.setattr(module, parser_name, counting)
        annotations = reader(str(path))
        assert calls and max(calls.values()) == 1, parser_name
        assert sum(len(record.objects) for record in annotations.records) <= len(calls)


def test_kins_unknown_schema_raises(tmp_path):
    path = write_json(tmp_path / "odd.json", {"images": [], "categories": KINS_CATEGORIES,
                                              "annotations": [{"id": 1, "image_id": 1, "mask": []}]})
    with pytest.raises(AnnotationError, match="odd.json: annotations: the first annotation has neither 'a_segm'"):
        read_kins(path)


# -------------------------------------------------------------------------------------- SLN
def sln_masks():
    """Three objects front-first: 0 covers part of 1; 2 stands apart."""
    amodal = np.stack([polygon_mask(rect(2, 2, 12, 12)), polygon_mask(rect(8, 8, 20, 20)),
                       polygon_mask(rect(22, 2, 30, 10))])
    visible = amodal.copy()
    visible[1] &= ~amodal[0]
    return amodal, visible


def write_sln_folder(folder):
    """a.jpg: the three objects; b.jpg: the middle object empty; c.jpg: no .npz; d.jpg: corrupt .npz."""
    os.makedirs(folder, exist_ok=True)
    amodal, visible = sln_masks()
    write_sln_npz(os.path.join(folder, "a.npz"), visible, amodal)
    empty_middle = amodal.copy()
    empty_middle[1] = False
    write_sln_npz(os.path.join(folder, "b.npz"), visible & empty_middle, empty_middle)
    with open(os.path.join(folder, "d.npz"), "wb") as f:
        f.write(b"not an archive")
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        with open(os.path.join(folder, name), "wb") as f:
            f.write(b"")
    return str(folder)


def test_sln_layer_bits_follow_the_upstream_format(tmp_path):
    amodal, visible = sln_masks()
    path = str(tmp_path / "x.npz")
    write_sln_npz(path, visible, amodal)
    layer = load_layer(path)
    assert layer.dtype == np.uint64 and layer.shape == (H, W)
    # Pixel (row 10, column 10) is visible in object 0 and hidden in object 1: bits 0 and 32 + 1.
    assert int(layer[10, 10]) == (1 << 0) | (1 << (32 + 1))
    assert int(layer[15, 15]) == 1 << 1
    assert int(layer[0, 0]) == 0
    decoded_visible, decoded_hidden = decode_layer(layer)
    np.testing.assert_array_equal(decoded_visible, visible)
    np.testing.assert_array_equal(decoded_hidden, amodal & ~visible)
    with pytest.raises(ValueError, match="at most 32 objects"):
        write_sln_npz(path, np.zeros((33, 2, 2), bool), np.ones((33, 2, 2), bool))


def test_sln_npz_reader(tmp_path):
    folder = write_sln_folder(tmp_path / "val2014")
    log = DropLog(folder)
    annotations = read_sln_npz(folder, log=log)

    assert annotations.categories == [{"id": 1, "name": "object"}]
    assert [(r.file_name, r.image_id) for r in annotations.records] == [("a.jpg", 1), ("b.jpg", 2)]
    amodal, visible = sln_masks()
    first, second = annotations.records
    assert (first.height, first.width) == (H, W)
    for obj, a, v in zip(first.objects, amodal, visible):
        np.testing.assert_array_equal(decode_rle(obj.amodal), a)
        np.testing.assert_array_equal(decode_rle(obj.visible), v)
    assert [o.depth_rank for o in first.objects] == [1, 2, 3]
    # b.jpg's middle object is empty: dropped, and the ranks close the gap.
    assert [o.depth_rank for o in second.objects] == [1, 2]
    np.testing.assert_array_equal(decode_rle(second.objects[1].amodal), amodal[2])

    assert log.dropped["object: amodal segmentation: empty mask"] == 1
    assert log.dropped["image: layer: no c.npz beside the image"] == 1
    assert sum(n for reason, n in log.dropped.items() if reason.startswith("image: layer: cannot read")) == 1
    with pytest.raises(AnnotationError, match=r"val2014 b\.jpg object 1: amodal segmentation: empty mask"):
        read_sln_npz(folder, strict=True)
