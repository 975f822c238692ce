"""The convert_*.py command lines (run as subprocesses) and dataset resolution with its cache."""
import os

import numpy as np
import pytest
from pycocotools.coco import COCO

from sln_amodal.data.catalog import CACHE_DIR_NAME, resolve_split
from sln_amodal.data.readers.amodal_coco import write_amodal_coco
from sln_amodal.data.readers.cocoa import read_cocoa
from sln_amodal.structures.masks import decode_rle
from testing import run_script
from reader_files import (
    KINS_SHAPES,
    cocoa_expected_masks,
    d2sa_expected_masks,
    polygon_mask,
    rect,
    sln_masks,
    write_cocoa,
    write_d2sa,
    write_kins,
    write_sln_folder,
)



def run_converter(name, *args):
    return run_script(os.path.join("scripts", name), *args)


def load_output(path):
    coco = COCO(str(path))
    return coco, {image_id: coco.imgToAnns[image_id] for image_id in coco.getImgIds()}


def assert_masks(coco, anns, amodal, visible):
    """The output's amodal (via pycocotools) and visible masks equal the source masks exactly."""
    assert len(anns) == len(amodal)
    for ann, a, v in zip(anns, amodal, visible):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), a)
        np.testing.assert_array_equal(decode_rle(ann["visible_segmentation"]), v)


def test_convert_cocoa_checks_images(tmp_path):
    ann = write_cocoa(tmp_path / "COCO_amodal_val2014.json")
    images = tmp_path / "val2014"
    images.mkdir()
    for image_id in (1, 3):  # image 2's file is missing
        (images / f"COCO_val2014_{image_id:012d}.jpg").write_bytes(b"")
    out = tmp_path / "out" / "val.json"
    result = run_converter("convert_cocoa.py", "--ann", ann, "--images", images, "--out", out)

    assert result.returncode == 0, result.stderr
    assert "images read: 3" in result.stdout and "images kept: 2" in result.stdout
    assert "objects read: 4" in result.stdout and "objects kept: 3" in result.stdout
    assert "image: file_name: no file 'COCO_val2014_000000000002.jpg'" in result.stdout
    coco, anns = load_output(out)
    assert sorted(anns) == [1, 3]
    amodal, visible = cocoa_expected_masks()
    assert_masks(coco, anns[1], amodal, visible)
    assert [a["depth_rank"] for a in anns[1]] == [1, 2, 3]
    assert [a["is_stuff"] for a in anns[1]] == [0, 1, 0]
    ids = [a["id"] for a in anns[1]]
    assert coco.imgs[1]["depth_constraints"] == [[ids[0], ids[1]], [ids[1], ids[2]]]


def test_convert_cocoa_second_annotator_and_strict(tmp_path):
    ann = write_cocoa(tmp_path / "cocoa.json")
    out = tmp_path / "val.json"
    result = run_converter("convert_cocoa.py", "--ann", ann, "--out", out, "--annotator", 1)
    assert result.returncode == 0, result.stderr
    coco, anns = load_output(out)
    np.testing.assert_array_equal(coco.annToMask(anns[1][0]).astype(bool), polygon_mask(rect(0, 0, 10, 10)))

    strict = run_converter("convert_cocoa.py", "--ann", ann, "--out", tmp_path / "strict.json", "--strict")
    assert strict.returncode == 1
    assert "cocoa.json image id 1 annotator 0 region 3: amodal segmentation" in strict.stderr
    assert not (tmp_path / "strict.json").exists()


def test_convert_d2sa(tmp_path):
    ann = write_d2sa(tmp_path / "D2S_amodal_validation.json")
    out = tmp_path / "val.json"
    result = run_converter("convert_d2sa.py", "--ann", ann, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "dropped: 3" in result.stdout
    coco, anns = load_output(out)
    assert len(coco.getCatIds()) == 60
    amodal, visible = d2sa_expected_masks()
    assert_masks(coco, anns[10], amodal, visible)
    assert [a["depth_rank"] for a in anns[10]] == [2, 1]
    assert [a["iscrowd"] for a in anns[10]] == [0, 1]
    assert anns[11] == []


def test_convert_kins_2020(tmp_path):
    ann = write_kins(tmp_path / "update_test_2020.json", "2020")
    out = tmp_path / "val.json"
    result = run_converter("convert_kins.py", "--ann", ann, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "objects kept: 4" in result.stdout
    coco, anns = load_output(out)
    assert coco.getCatIds() == [1, 2, 4, 5, 6, 7, 8]
    amodal = [polygon_mask(shape) for shape in KINS_SHAPES]
    visible = [polygon_mask(rect(s[0], s[1], s[0] + 4, s[1] + 4)) for s in KINS_SHAPES]
    assert_masks(coco, anns[7], amodal, visible)
    ids = [a["id"] for a in anns[7]]
    expected = {(ids[0], ids[2]), (ids[1], ids[0]), (ids[1], ids[2])}
    assert {tuple(pair) for pair in coco.imgs[7]["depth_constraints"]} == expected


def test_convert_sln_npz(tmp_path):
    folder = write_sln_folder(tmp_path / "val2014")
    out = tmp_path / "val.json"
    result = run_converter("convert_sln_npz.py", "--images", folder, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "images read: 4" in result.stdout and "images kept: 2" in result.stdout
    coco, anns = load_output(out)
    amodal, visible = sln_masks()
    assert_masks(coco, anns[1], amodal, visible)
    assert [a["depth_rank"] for a in anns[1]] == [1, 2, 3]


# ------------------------------------------------------------------------------ resolve_split
def test_resolve_project_layout(tmp_path):
    source = read_cocoa(write_cocoa(tmp_path / "cocoa.json"))
    (tmp_path / "images").mkdir()
    write_amodal_coco(source, str(tmp_path / "annotations" / "train.json"))

    annotations, image_root = resolve_split(str(tmp_path), "train", "AMODAL_COCO")
    assert image_root == os.path.join(str(tmp_path), "images")
    assert [r.image_id for r in annotations.records] == [r.image_id for r in source.records]
    for got, want in zip(annotations.records[0].objects, source.records[0].objects):
        assert (got.amodal, got.visible, got.depth_rank) == (want.amodal, want.visible, want.depth_rank)
    assert annotations.records[0].depth_constraints == source.records[0].depth_constraints
    assert not (tmp_path / CACHE_DIR_NAME).exists()


def test_resolve_cocoa_layout_converts_once_then_reads_the_cache(tmp_path):
    (tmp_path / "train2014").mkdir()
    (tmp_path / "annotations").mkdir()
    ann = write_cocoa(tmp_path / "annotations" / "COCO_amodal_train2014.json")
    cache = tmp_path / CACHE_DIR_NAME

    first, image_root = resolve_split(str(tmp_path), "train", "COCOA")
    (cached,) = list(cache.iterdir())
    stamp = cached.stat().st_mtime_ns
    second, _ = resolve_split(str(tmp_path), "train", "COCOA")
    assert list(cache.iterdir()) == [cached] and cached.stat().st_mtime_ns == stamp
    assert image_root == os.path.join(str(tmp_path), "train2014")
    assert [len(r.objects) for r in first.records] == [len(r.objects) for r in second.records] == [3, 1, 0]
    amodal, _ = cocoa_expected_masks()
    for obj, mask in zip(second.records[0].objects, amodal):
        np.testing.assert_array_equal(decode_rle(obj.amodal), mask)

    # Another annotator is another conversion; a changed source replaces the stale cache.
    by_second_annotator, _ = resolve_split(str(tmp_path), "train", "COCOA", options={"annotator": 1})
    assert [len(r.objects) for r in by_second_annotator.records] == [1, 0]
    os.utime(ann, ns=(stamp, stamp + 10**9))
    resolve_split(str(tmp_path), "train", "COCOA")
    assert len(list(cache.iterdir())) == 1 and cached not in list(cache.iterdir())


def test_resolve_other_layouts_and_missing_files(tmp_path):
    (tmp_path / "training" / "image_2").mkdir(parents=True)
    write_kins(tmp_path / "update_train_2020.json", "2020")
    kins, image_root = resolve_split(str(tmp_path), "train", "KINS", cache_dir=str(tmp_path / "cache"))
    assert image_root.endswith(os.path.join("training", "image_2"))
    assert len(kins.records[0].depth_constraints) == 3

    write_sln_folder(tmp_path / "val2014")
    sln, _ = resolve_split(str(tmp_path), "val", "SLN")
    assert [len(r.objects) for r in sln.records] == [3, 2]

    with pytest.raises(FileNotFoundError, match=r"--data_type COCOA: expected .*annotations/COCO_amodal_val2014\.json"):
        resolve_split(str(tmp_path), "val", "COCOA")
    with pytest.raises(FileNotFoundError, match=r"no val image folder for --data_type KINS: .*testing/image_2"):
        resolve_split(str(tmp_path), "val", "KINS")
    (tmp_path / "testing" / "image_2").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"instances_val\.json or .*update_test_2020\.json"):
        resolve_split(str(tmp_path), "val", "KINS")
    with pytest.raises(ValueError, match="unknown --data_type 'PASCAL'"):
        resolve_split(str(tmp_path), "train", "PASCAL")
