"""Readers of the upstream datasets, each fed small files written in that dataset's real schema
(``reader_files.py``)."""
import collections

import numpy as np
import pytest

from sln_amodal.data.readers.cocoa import read_cocoa
from sln_amodal.data.readers import d2sa, kins
from sln_amodal.data.readers.d2sa import read_d2sa
from sln_amodal.data.readers.kins import read_kins
from sln_amodal.data.readers.sln_npz import decode_layer, load_layer, read_sln_npz, write_sln_npz
from sln_amodal.data.records import AnnotationError, DropLog
from sln_amodal.structures.masks import decode_rle
from reader_files import (
    H,
    KINS_CATEGORIES,
    KINS_SHAPES,
    W,
    cocoa_expected_masks,
    d2sa_expected_masks,
    polygon_mask,
    rect,
    sln_masks,
    write_cocoa,
    write_d2sa,
    write_json,
    write_kins,
    write_sln_folder,
)


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
