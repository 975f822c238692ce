import hashlib
import importlib.util
import os

import numpy as np
import pytest
import skimage.color
from PIL import Image
from pycocotools.coco import COCO

from sln_amodal.config import load_config
from sln_amodal.data.readers.amodal_coco import read_amodal_coco
from sln_amodal.data.synthetic import (
    SHAPES, SceneParams, generate_scene, scene_params_from_config, scene_rng, synthetic_categories,
)
from sln_amodal.structures.masks import decode_rle, mask_to_bbox

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 96, 128  # not square, so a swapped height/width cannot pass
NUM_TRAIN, NUM_VAL = 5, 3


def _load_script():
    path = os.path.join(REPO_ROOT, "scripts", "make_synthetic.py")
    spec = importlib.util.spec_from_file_location("make_synthetic", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _make(out_dir, seed, occlusion=0.5):
    _load_script().main([
        "--out", str(out_dir), "--seed", str(seed), "--num-train", str(NUM_TRAIN), "--num-val", str(NUM_VAL),
        "--image-size", str(HEIGHT), str(WIDTH), "--min-objects", "3", "--max-objects", "6",
        "--occlusion", str(occlusion),
    ])
    return out_dir


def _file_hashes(root):
    hashes = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                hashes[os.path.relpath(path, root)] = hashlib.sha256(f.read()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def dataset_dirs(tmp_path_factory):
    first = _make(tmp_path_factory.mktemp("first"), seed=11)
    second = _make(tmp_path_factory.mktemp("second"), seed=11)
    other_seed = _make(tmp_path_factory.mktemp("other"), seed=12)
    return first, second, other_seed


def _params(**changes):
    params = dict(height=HEIGHT, width=WIDTH, min_objects=3, max_objects=6, occlusion=0.5,
                  min_object_size=0.1, max_object_size=0.3, min_visible_area=16)
    params.update(changes)
    return SceneParams(**params)


def test_same_seed_gives_identical_bytes(dataset_dirs):
    first, second, _ = dataset_dirs
    hashes = _file_hashes(first)
    expected = {os.path.join("annotations", f"{s}.json") for s in ("train", "val")}
    expected |= {os.path.join("images", "train", f"{i:06d}.png") for i in range(NUM_TRAIN)}
    expected |= {os.path.join("images", "val", f"{i:06d}.png") for i in range(NUM_VAL)}
    assert set(hashes) == expected
    assert hashes == _file_hashes(second)


def test_different_seed_gives_different_data(dataset_dirs):
    first, _, other_seed = dataset_dirs
    hashes, other = _file_hashes(first), _file_hashes(other_seed)
    assert all(hashes[name] != other[name] for name in hashes)


def test_scene_depends_only_on_seed_split_and_index(dataset_dirs):
    first, _, _ = dataset_dirs
    image, objects = generate_scene(scene_rng(11, "train", 3), _params())
    stored = np.asarray(Image.open(os.path.join(first, "images", "train", "000003.png")))
    np.testing.assert_array_equal(image, stored)
    record = read_amodal_coco(os.path.join(first, "annotations", "train.json"), strict=True).records[3]
    assert [o.depth_rank for o in record.objects] == [o.depth_rank for o in objects]
    for stored_obj, obj in zip(record.objects, objects):
        np.testing.assert_array_equal(decode_rle(stored_obj.amodal), obj.amodal)
        np.testing.assert_array_equal(decode_rle(stored_obj.visible), obj.visible)
    val_image, _ = generate_scene(scene_rng(11, "val", 3), _params())
    assert not np.array_equal(image, val_image)


def test_masks_follow_the_depth_order_exactly(dataset_dirs):
    first, _, _ = dataset_dirs
    for split in ("train", "val"):
        annotations = read_amodal_coco(os.path.join(first, "annotations", f"{split}.json"), strict=True)
        assert annotations.categories == synthetic_categories()
        assert len(annotations.categories) == len(SHAPES)
        for record in annotations.records:
            assert (record.height, record.width) == (HEIGHT, WIDTH)
            ranks = [obj.depth_rank for obj in record.objects]
            assert sorted(ranks) == list(range(1, len(ranks) + 1))
            amodal = {obj.depth_rank: decode_rle(obj.amodal) for obj in record.objects}
            for obj in record.objects:
                visible = decode_rle(obj.visible)
                in_front = np.zeros((HEIGHT, WIDTH), dtype=bool)
                for rank in range(1, obj.depth_rank):
                    in_front |= amodal[rank]
                np.testing.assert_array_equal(visible, amodal[obj.depth_rank] & ~in_front)
                assert visible.sum() >= 16
                assert obj.occlude_rate == pytest.approx(1.0 - visible.sum() / amodal[obj.depth_rank].sum())
                assert list(obj.bbox) == mask_to_bbox(amodal[obj.depth_rank])
                assert 1 <= obj.category_id <= len(SHAPES)


def test_visible_masks_partition_the_covered_pixels():
    image, objects = generate_scene(scene_rng(5, "train", 0), _params())
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    assert [obj.depth_rank for obj in objects] == list(range(1, len(objects) + 1))  # front-most first
    owners = np.stack([obj.visible for obj in objects]).sum(axis=0)
    assert owners.max() == 1  # each pixel shows at most one object
    np.testing.assert_array_equal(owners == 1, np.any([obj.amodal for obj in objects], axis=0))


def test_occlusion_level_controls_mean_occlude_rate():
    def mean_rate(occlusion):
        params = _params(occlusion=occlusion, min_objects=4, max_objects=6)
        rates = []
        for index in range(12):
            _, objects = generate_scene(scene_rng(0, "train", index), params)
            for obj in objects:
                assert obj.visible.sum() >= params.min_visible_area  # nothing is ever fully hidden
                rates.append(1.0 - obj.visible.sum() / obj.amodal.sum())
        return float(np.mean(rates))

    low, middle, high = mean_rate(0.0), mean_rate(0.5), mean_rate(1.0)
    assert low < middle < high


def _overlap_fractions(params, num_scenes=30):
    """For every overlapping pair of objects: overlap / the smaller amodal area."""
    fractions = []
    for index in range(num_scenes):
        _, objects = generate_scene(scene_rng(0, "train", index), params)
        for i, first in enumerate(objects):
            for second in objects[i + 1:]:
                overlap = (first.amodal & second.amodal).sum()
                if overlap:
                    fractions.append(overlap / min(first.amodal.sum(), second.amodal.sum()))
    return np.array(fractions)


def test_min_overlap_leaves_no_sliver_between_two_objects():
    slivers = _overlap_fractions(_params(occlusion=0.7))
    assert (slivers < 0.1).any()  # without the rule, thin overlaps happen
    clear = _overlap_fractions(_params(occlusion=0.7, min_overlap=0.1))
    assert len(clear) > 0.5 * len(slivers)  # the objects still overlap
    assert clear.min() >= 0.1
    with pytest.raises(ValueError, match="min_overlap"):
        _params(min_overlap=1.5)


def _occlusion_rates(params, num_scenes=30):
    rates = []
    for index in range(num_scenes):
        _, objects = generate_scene(scene_rng(0, "train", index), params)
        rates += [1.0 - obj.visible.sum() / obj.amodal.sum() for obj in objects]
    return np.array(rates)


def test_max_occlusion_leaves_out_the_objects_hidden_beyond_it():
    unbounded = _occlusion_rates(_params(occlusion=0.9))
    assert (unbounded > 0.75).any()  # without the rule, nearly hidden objects happen
    bounded = _occlusion_rates(_params(occlusion=0.9, max_occlusion=0.75))
    assert bounded.max() <= 0.75
    assert (bounded > 0.3).any()  # occluded objects remain
    with pytest.raises(ValueError, match="max_occlusion"):
        _params(max_occlusion=-0.1)


def test_pycocotools_loads_the_json(dataset_dirs):
    first, _, _ = dataset_dirs
    path = os.path.join(first, "annotations", "train.json")
    coco = COCO(path)
    annotations = read_amodal_coco(path, strict=True)
    assert sorted(coco.getImgIds()) == [r.image_id for r in annotations.records] == list(range(1, NUM_TRAIN + 1))
    assert coco.loadImgs(1)[0]["file_name"] == "train/000000.png"
    record = annotations.records[0]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[record.image_id]))
    assert len(anns) == len(record.objects)
    for ann, obj in zip(anns, record.objects):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), decode_rle(obj.amodal))


def test_config_and_validation():
    params = scene_params_from_config(load_config(overrides=["SYNTHETIC.IMAGE_SIZE", "[64, 80]"]))
    assert (params.height, params.width) == (64, 80)
    image, _ = generate_scene(scene_rng(0, "train", 0), params)
    assert image.shape == (64, 80, 3)
    with pytest.raises(ValueError, match="occlusion"):
        _params(occlusion=1.5)
    with pytest.raises(ValueError, match="min_objects"):
        _params(min_objects=4, max_objects=2)
    with pytest.raises(ValueError, match="seed"):
        scene_rng(-1, "train", 0)


def _preset(name):
    return scene_params_from_config(load_config(os.path.join(REPO_ROOT, "sln_amodal", "config", "yaml",
                                                             f"synthetic_{name}.yaml")))


def test_hard_preset_is_the_default_look():
    assert _preset("hard") == scene_params_from_config(load_config())


def test_easy_preset_draws_flat_convex_shapes_that_still_overlap():
    params = _preset("easy")
    assert params.shapes == ("ellipse", "rectangle", "triangle")
    assert [c["name"] for c in synthetic_categories(params.shapes)] == list(params.shapes)
    assert params.textures == ("vivid",) and params.shadow_strength > 0
    rates = []
    for index in range(40):
        image, objects = generate_scene(scene_rng(0, "train", index), params)
        covered = np.any([obj.amodal for obj in objects], axis=0)
        unshaded = ~np.any([_shift(obj.amodal, params.shadow_offset) for obj in objects], axis=0)
        background = image[~covered & unshaded].astype(float)
        # Flat fills: one colour per region outside the shadows, up to the grain and sensor noise.
        assert background.std(axis=0).max() < 0.06 * 255
        for obj in objects:
            assert 1 <= obj.category_id <= 3
            lit = image[obj.visible & unshaded].astype(float)
            assert len(lit) < 2 or lit.std(axis=0).max() < 0.06 * 255
            rates.append(1.0 - obj.visible.sum() / obj.amodal.sum())
    rates = np.array(rates)
    assert (rates > 0).mean() >= 0.3 and rates.mean() >= 0.15  # what the quickstart promises


def test_dark_backgrounds_and_bright_fills_keep_their_channel_ranges():
    params = _params(backgrounds=("dark",), textures=("bright",))
    for index in range(10):
        image, objects = generate_scene(scene_rng(0, "train", index), params)
        covered = np.any([obj.amodal for obj in objects], axis=0)
        assert np.median(image[~covered], axis=0).max() <= 0.25 * 255 + 4
        for obj in objects:
            assert np.median(image[obj.visible], axis=0).min() >= 0.4 * 255 - 4  # medians of few grainy pixels


def _shift(mask, offset):
    """``mask`` moved by (rows, columns) pixels, computed here independently of the generator."""
    rows, columns = np.nonzero(mask)
    rows, columns = rows + offset[0], columns + offset[1]
    inside = (rows >= 0) & (rows < mask.shape[0]) & (columns >= 0) & (columns < mask.shape[1])
    moved = np.zeros_like(mask)
    moved[rows[inside], columns[inside]] = True
    return moved


def test_vivid_fills_give_the_objects_of_a_scene_distinct_saturated_hues():
    params = _params(textures=("vivid",), min_objects=5, max_objects=5, occlusion=0.0, min_visible_area=64)
    for index in range(10):
        image, objects = generate_scene(scene_rng(0, "train", index), params)
        colours = np.array([np.median(image[obj.visible], axis=0) for obj in objects]) / 255
        hsv = skimage.color.rgb2hsv(colours[None].astype(np.float32))[0]
        assert hsv[:, 1].min() >= 0.6 and hsv[:, 2].min() >= 0.75  # saturated and light, up to the grain
        hue_gaps = np.abs(hsv[:, None, 0] - hsv[None, :, 0])
        hue_gaps = np.minimum(hue_gaps, 1 - hue_gaps)[~np.eye(len(objects), dtype=bool)]
        assert hue_gaps.min() * 360 >= 45  # 52 degrees apart by construction, less what the grain moves


def test_drop_shadows_darken_only_what_lies_behind_each_object():
    plain, shaded = _params(), _params(shadow_strength=0.5, shadow_offset=(2, 3))
    for index in range(10):
        image, objects = generate_scene(scene_rng(0, "train", index), plain)
        shaded_image, shaded_objects = generate_scene(scene_rng(0, "train", index), shaded)
        for obj, shaded_obj in zip(objects, shaded_objects):  # shadows change the pixels, not the scene
            assert np.array_equal(obj.amodal, shaded_obj.amodal) and np.array_equal(obj.visible, shaded_obj.visible)
        # A pixel is in shadow where an object shifted by the offset covers it and the object itself,
        # or one in front of it, does not: the object darkens what was painted before it.
        in_shadow = np.zeros(image.shape[:2], dtype=bool)
        painted_in_front = np.zeros_like(in_shadow)
        for obj in objects:  # front-most first
            in_shadow |= _shift(obj.amodal, (2, 3)) & ~obj.amodal & ~painted_in_front
            painted_in_front |= obj.amodal
        assert in_shadow.any()
        unchanged = ~in_shadow
        assert np.array_equal(image[unchanged], shaded_image[unchanged])
        ratio = shaded_image[in_shadow].astype(float).sum() / image[in_shadow].astype(float).sum()
        assert 0.4 < ratio < 0.6


def test_scene_params_reject_unknown_fills_and_shapes():
    with pytest.raises(ValueError, match="shapes"):
        _params(shapes=("ellipse", "hexagon"))
    with pytest.raises(ValueError, match="backgrounds"):
        _params(backgrounds=())
    with pytest.raises(ValueError, match="textures"):
        _params(textures=("flat", "flat"))
    with pytest.raises(ValueError, match="shadow_strength"):
        _params(shadow_strength=1.5)
