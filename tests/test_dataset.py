import logging
import os
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from sln_amodal.config import load_config
from sln_amodal.data.dataset import AmodalDataset, build_dataset, pixels_as_unit_float, read_image
from sln_amodal.data.loader import (
    InferenceSampler, TrainingSampler, build_eval_loader, build_train_loader, collate_images_targets,
)
from sln_amodal.data.records import AnnotationError, AnnotationSet, ImageRecord, ObjectAnnotation
from sln_amodal.data.synthetic import SceneParams, write_synthetic_dataset
from sln_amodal.data.transforms import RandomHorizontalFlip, resize_masks_nearest, resized_size
from sln_amodal.structures.masks import encode_mask, mask_to_bbox

CATEGORIES = [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}]  # non-contiguous ids on purpose


def _object(amodal, visible, category_id=3, depth_rank=None, iscrowd=False):
    return ObjectAnnotation(
        category_id=category_id, amodal=encode_mask(amodal), visible=encode_mask(visible),
        bbox=tuple(mask_to_bbox(amodal)), occlude_rate=1.0 - visible.sum() / amodal.sum(),
        depth_rank=depth_rank, iscrowd=iscrowd,
    )


def _two_overlapping_objects(height, width):
    """A square in front of a wide rectangle; returns the objects front-most first."""
    front = np.zeros((height, width), dtype=bool)
    front[10:40, 20:50] = True
    back = np.zeros((height, width), dtype=bool)
    back[25:60, 5:90] = True
    return [_object(front, front, 3, depth_rank=1), _object(back, back & ~front, 7, depth_rank=2)]


def _save(image_root, name, array):
    Image.fromarray(array).save(os.path.join(image_root, name))


def _rgb(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    params = SceneParams(height=48, width=64, min_objects=2, max_objects=4, occlusion=0.5,
                         min_object_size=0.15, max_object_size=0.35, min_visible_area=8)
    splits = write_synthetic_dataset(str(root), seed=3, num_train=8, num_val=0, params=params, show_progress=False)
    return splits["train"], os.path.join(root, "images")


def _train_dataset(annotations, image_root, **kwargs):
    options = dict(min_sizes=(48,), max_size=1000, hflip_prob=0.5, seed=0)
    options.update(kwargs)
    return AmodalDataset(annotations, image_root, train=True, **options)


def test_eval_item_follows_the_data_contract(synthetic):
    annotations, image_root = synthetic
    dataset = AmodalDataset(annotations, image_root, train=False)
    record = annotations.records[2]
    image, target = dataset[2]
    assert image.dtype == torch.float32 and image.shape == (3, 48, 64)
    expected = np.asarray(Image.open(os.path.join(image_root, record.file_name)), dtype=np.float32) / 255
    np.testing.assert_allclose(image.permute(1, 2, 0).numpy(), expected)
    n = len(record.objects)
    expected_shapes = {"boxes": ((n, 4), torch.float32), "labels": ((n,), torch.int64),
                       "amodal_masks": ((n, 48, 64), torch.uint8), "visible_masks": ((n, 48, 64), torch.uint8),
                       "depth_rank": ((n,), torch.int64), "depth_constraints": ((0, 2), torch.int64),
                       "occlude_rate": ((n,), torch.float32), "is_stuff": ((n,), torch.bool)}
    for key, (shape, dtype) in expected_shapes.items():
        assert target[key].shape == shape and target[key].dtype == dtype, key
    assert target["image_id"] == record.image_id and target["file_name"] == record.file_name
    assert target["orig_size"] == (48, 64)
    assert sorted(target["depth_rank"].tolist()) == list(range(1, n + 1))
    assert ((target["labels"] >= 1) & (target["labels"] <= len(annotations.categories))).all()
    assert (target["visible_masks"] <= target["amodal_masks"]).all()
    for box, mask in zip(target["boxes"], target["amodal_masks"]):
        x, y, w, h = mask_to_bbox(mask.numpy())
        assert box.tolist() == [x, y, x + w, y + h]


def test_labels_constraints_and_crowd(tmp_path):
    height, width = 70, 100
    _save(tmp_path, "a.png", _rgb(height, width))
    objects = _two_overlapping_objects(height, width)
    crowd = np.zeros((height, width), dtype=bool)
    crowd[60:70, 0:10] = True
    record = ImageRecord("a.png", height, width, image_id=5,
                         objects=[objects[0], _object(crowd, crowd, iscrowd=True), objects[1]],
                         depth_constraints=[(0, 2), (1, 2)])
    _, target = AmodalDataset(AnnotationSet(CATEGORIES, [record]), str(tmp_path), train=False)[0]
    assert target["labels"].tolist() == [1, 2]  # ids 3, 7 -> 1, 2; the crowd region is not an instance
    assert target["depth_constraints"].tolist() == [[0, 1]]
    assert target["depth_rank"].tolist() == [1, 2]
    unknown = ImageRecord("a.png", height, width, 6, objects=[_object(crowd, crowd, category_id=9)])
    with pytest.raises(AnnotationError, match="category_id"):
        AmodalDataset(AnnotationSet(CATEGORIES, [unknown]), str(tmp_path), train=False)


def test_resize_rule_matches_torchvision():
    assert resized_size(300, 400, 200, 250) == (187, 250)  # the long side caps the scale: 0.625
    assert resized_size(400, 300, 200, 250) == (250, 187)
    assert resized_size(100, 120, 200, 1000) == (200, 240)  # the short side sets it: 2.0
    for (height, width), short, longest in [((300, 400), 200, 250), ((600, 800), 800, 1333),
                                            ((375, 500), 800, 1333), ((427, 640), 600, 1000)]:
        reference = GeneralizedRCNNTransform(short, longest, [0.0] * 3, [1.0] * 3).eval()
        images, _ = reference([torch.rand(3, height, width)])
        assert resized_size(height, width, short, longest) == tuple(images.image_sizes[0])


def test_train_resize_moves_image_masks_and_boxes(tmp_path):
    height, width = 300, 400
    _save(tmp_path, "a.png", _rgb(height, width))
    record = ImageRecord("a.png", height, width, 1, objects=_two_overlapping_objects(height, width))
    dataset = _train_dataset(AnnotationSet(CATEGORIES, [record]), str(tmp_path),
                             min_sizes=(200,), max_size=250, hflip_prob=0.0)
    image, target = dataset[0]
    assert image.shape == (3, 187, 250)
    assert target["amodal_masks"].shape == target["visible_masks"].shape == (2, 187, 250)
    assert target["orig_size"] == (300, 400)
    scale = torch.tensor([250 / 400, 187 / 300] * 2)
    original = torch.tensor([[20, 10, 50, 40], [5, 25, 90, 60]], dtype=torch.float32)
    torch.testing.assert_close(target["boxes"], original * scale)
    for box, mask in zip(target["boxes"], target["amodal_masks"]):
        x, y, w, h = mask_to_bbox(mask.numpy())
        assert torch.allclose(box, torch.tensor([x, y, x + w, y + h]), atol=1.0)  # nearest-neighbour rounding


def test_mask_resize_equals_nearest_interpolation_in_either_layout():
    generator = torch.Generator().manual_seed(0)
    for height, width in [(48, 64), (480, 640), (37, 91)]:
        masks = (torch.rand(3, height, width, generator=generator) > 0.5).to(torch.uint8)
        column_major = masks.transpose(1, 2).contiguous().transpose(1, 2)  # the layout decode_rles gives
        for size in [(800, 1066), (20, 30), (97, 45), (height, width)]:
            expected = torch.nn.functional.interpolate(masks[:, None], size=size, mode="nearest")[:, 0]
            for layout in (masks, column_major):
                resized = resize_masks_nearest(layout, size)
                assert torch.equal(resized, expected) and resized.is_contiguous()


def test_train_image_is_resized_as_stored_then_made_float(tmp_path):
    """8-bit images are resized as uint8 (within one grey level of the float resize), then scaled to [0, 1]; the
    masks come out C-contiguous whatever the transforms."""
    height, width = 30, 40
    pixels = _rgb(height, width)
    _save(tmp_path, "a.png", pixels)
    record = ImageRecord("a.png", height, width, 1, objects=_two_overlapping_objects(height, width))
    dataset = _train_dataset(AnnotationSet(CATEGORIES, [record]), str(tmp_path),
                             min_sizes=(50,), max_size=100, hflip_prob=0.0)
    image, target = dataset[0]
    stored = torch.from_numpy(pixels).permute(2, 0, 1)[None]
    expected = torch.nn.functional.interpolate(stored, size=(50, 66), mode="bilinear", align_corners=False)[0]
    assert image.dtype == torch.float32 and torch.equal(image, expected.float() / 255)
    from_floats = torch.nn.functional.interpolate(stored.float() / 255, size=(50, 66), mode="bilinear")[0]
    assert (image - from_floats).abs().max() <= 1 / 255 + 1e-6  # fixed-point weights
    eval_target = AmodalDataset(AnnotationSet(CATEGORIES, [record]), str(tmp_path), train=False)[0][1]
    with pytest.raises(TypeError, match="uint8 or float32"):
        pixels_as_unit_float(torch.zeros(2, 2, dtype=torch.int16))
    assert all(t[f].is_contiguous() for t in (target, eval_target) for f in ("amodal_masks", "visible_masks"))


def test_flip_keeps_masks_and_boxes_consistent(synthetic):
    annotations, image_root = synthetic
    plain = AmodalDataset(annotations, image_root, train=False)
    # Short side 48 = the image's own: the resize is the identity, so only the flip acts.
    flipping = _train_dataset(annotations, image_root, hflip_prob=1.0)
    for index in range(3):
        image, target = plain[index]
        flipped_image, flipped = flipping[index]
        torch.testing.assert_close(flipped_image, image.flip(-1))
        torch.testing.assert_close(flipped["amodal_masks"], target["amodal_masks"].flip(-1))
        torch.testing.assert_close(flipped["visible_masks"], target["visible_masks"].flip(-1))
        x1, y1, x2, y2 = target["boxes"].unbind(1)
        torch.testing.assert_close(flipped["boxes"], torch.stack([64 - x2, y1, 64 - x1, y2], 1))
        for box, mask in zip(flipped["boxes"], flipped["amodal_masks"]):
            x, y, w, h = mask_to_bbox(mask.numpy())
            assert box.tolist() == [x, y, x + w, y + h]
        for key in ("labels", "depth_rank", "depth_constraints", "occlude_rate", "is_stuff"):
            assert torch.equal(flipped[key], target[key])


def test_augmentation_depends_on_seed_epoch_and_index_only(synthetic):
    annotations, image_root = synthetic
    dataset, again = (_train_dataset(annotations, image_root, min_sizes=(40, 48, 56)) for _ in range(2))
    reseeded = _train_dataset(annotations, image_root, min_sizes=(40, 48, 56), seed=1)
    shapes, reseeded_differs = set(), False
    for epoch in range(8):
        image, target = dataset[(epoch, 1)]
        other_image, other_target = again[(epoch, 1)]
        assert torch.equal(image, other_image) and torch.equal(target["amodal_masks"], other_target["amodal_masks"])
        shapes.add(tuple(image.shape))
        reseeded_differs |= not torch.equal(image, reseeded[(epoch, 1)][0])
    assert len(shapes) > 1  # the short side is drawn per (epoch, index)
    assert reseeded_differs
    assert torch.equal(dataset[1][0], dataset[(0, 1)][0])  # a plain index means epoch 0


def test_unreadable_image_is_skipped_counted_or_raised(tmp_path, caplog):
    height, width = 20, 30
    for name in ("a.png", "c.png"):
        _save(tmp_path, name, _rgb(height, width))
    with open(tmp_path / "b.png", "wb") as f:
        f.write(b"this is not a png" * 10)
    _save(tmp_path, "d.png", _rgb(height + 1, width))  # does not match its annotation's size
    records = [ImageRecord(name, height, width, image_id=i + 1)
               for i, name in enumerate(["a.png", "b.png", "c.png", "d.png", "missing.png"])]
    annotations = AnnotationSet(CATEGORIES, records)
    dataset = AmodalDataset(annotations, str(tmp_path), train=False)
    with caplog.at_level(logging.WARNING):
        assert dataset[1][1]["image_id"] == 3  # b.png is garbage: the next readable image stands in
        assert dataset[1][1]["image_id"] == 3
        assert dataset[3][1]["image_id"] == 1  # d.png has the wrong size, missing.png is missing: wraps to a.png
    assert "b.png" in caplog.text and "d.png" in caplog.text and "missing.png" in caplog.text
    assert sum(dataset.drop_log.dropped.values()) == 3  # each bad file is counted once
    strict = AmodalDataset(annotations, str(tmp_path), train=False, strict=True)
    with pytest.raises(AnnotationError, match="b.png"):
        strict[1]
    with pytest.raises(AnnotationError, match="missing.png"):
        strict[4]


def test_greyscale_rgba_and_16_bit_images(tmp_path):
    height, width = 12, 16
    grey = np.arange(height * width, dtype=np.uint8).reshape(height, width)
    rgba = np.random.default_rng(1).integers(0, 256, (height, width, 4), dtype=np.uint8)
    deep = (np.arange(height * width, dtype=np.uint16) * 300).reshape(height, width)
    _save(tmp_path, "grey.png", grey)
    _save(tmp_path, "rgba.png", rgba)
    _save(tmp_path, "deep.png", deep)
    records = [ImageRecord(name, height, width, i) for i, name in enumerate(["grey.png", "rgba.png", "deep.png"])]
    dataset = AmodalDataset(AnnotationSet(CATEGORIES, records), str(tmp_path), train=False)
    images = [dataset[i][0] for i in range(3)]
    assert all(image.shape == (3, height, width) and image.dtype == torch.float32 for image in images)
    for channel in images[0]:
        np.testing.assert_allclose(channel.numpy(), grey / 255)
    np.testing.assert_allclose(images[1].permute(1, 2, 0).numpy(), rgba[..., :3] / 255, rtol=1e-6)
    np.testing.assert_allclose(images[2][0].numpy(), deep / 65535, rtol=1e-6)
    assert read_image(str(tmp_path / "grey.png")).shape == (height, width, 3)


def test_image_without_objects(tmp_path):
    _save(tmp_path, "empty.png", _rgb(30, 40))
    annotations = AnnotationSet(CATEGORIES, [ImageRecord("empty.png", 30, 40, 1)])
    for dataset in (AmodalDataset(annotations, str(tmp_path), train=False),
                    _train_dataset(annotations, str(tmp_path), min_sizes=(60,), hflip_prob=1.0)):
        image, target = dataset[0]
        height, width = image.shape[-2:]
        assert target["boxes"].shape == (0, 4) and target["labels"].shape == (0,)
        assert target["amodal_masks"].shape == target["visible_masks"].shape == (0, height, width)
        assert target["depth_rank"].shape == target["occlude_rate"].shape == target["is_stuff"].shape == (0,)
        assert target["depth_constraints"].shape == (0, 2)
    assert (height, width) == (60, 80)


def test_loaders_batch_images_of_different_sizes(tmp_path):
    sizes = [(20, 30), (25, 20), (40, 35), (18, 18), (30, 22)]
    records = []
    for i, (height, width) in enumerate(sizes):
        _save(tmp_path, f"{i}.png", _rgb(height, width, seed=i))
        records.append(ImageRecord(f"{i}.png", height, width, image_id=i))
    dataset = AmodalDataset(AnnotationSet(CATEGORIES, records), str(tmp_path), train=False)
    batches = list(build_eval_loader(dataset, batch_size=2, num_workers=0))
    assert [len(images) for images, _ in batches] == [2, 2, 1]
    assert [tuple(image.shape[-2:]) for images, _ in batches for image in images] == sizes
    assert [t["image_id"] for _, targets in batches for t in targets] == list(range(5))
    images, targets = collate_images_targets([dataset[0], dataset[1]])
    assert isinstance(images, list) and isinstance(targets, list)


def test_eval_sampler_shards_every_index_once():
    shards = [list(InferenceSampler(10, rank, 3)) for rank in range(3)]
    assert shards == [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]


def test_training_sampler_epochs_ranks_and_resume():
    def keys(sampler, count):
        stream = iter(sampler)
        return [next(stream) for _ in range(count)]

    full = keys(TrainingSampler(10, seed=4), 35)
    for epoch in range(3):
        assert sorted(i for e, i in full if e == epoch) == list(range(10))  # each epoch: every index once
    assert [i for e, i in full if e == 0] != [i for e, i in full if e == 1]  # reshuffled per epoch
    for start in (0, 7, 10, 23):
        assert keys(TrainingSampler(10, seed=4, start=start), 35 - start) == full[start:]
    per_rank = [keys(TrainingSampler(10, seed=4, rank=r, world_size=3), 4) for r in range(3)]
    epoch_zero = [i for keys_of_rank in per_rank for _, i in keys_of_rank]
    assert set(epoch_zero) == set(range(10)) and len(epoch_zero) == 12  # padded to 4 per rank
    assert keys(TrainingSampler(10, seed=5), 10) != full[:10]


def test_train_loader_resumes_with_the_same_data_order(synthetic):
    annotations, image_root = synthetic
    dataset = _train_dataset(annotations, image_root)

    def image_ids(loader, count):
        stream = iter(loader)
        return [[t["image_id"] for t in next(stream)[1]] for _ in range(count)]

    loader = build_train_loader(dataset, batch_size=3, num_workers=0, seed=9)
    full = image_ids(loader, 7)  # crosses epochs (8 images, 3 per batch)
    interrupted = build_train_loader(dataset, batch_size=3, num_workers=0, seed=9)
    image_ids(interrupted, 3)
    state = interrupted.state_dict()
    assert state["iteration"] == 3
    resumed = build_train_loader(dataset, batch_size=3, num_workers=0, seed=9)
    resumed.load_state_dict(state)
    assert image_ids(resumed, 4) == full[3:]
    assert image_ids(build_train_loader(dataset, 3, 0, seed=9, start_iter=5), 2) == full[5:]
    with pytest.raises(ValueError, match="batch_size"):
        build_train_loader(dataset, batch_size=2, num_workers=0, seed=9).load_state_dict(state)


def test_batches_do_not_depend_on_the_worker_count(synthetic):
    annotations, image_root = synthetic
    dataset = _train_dataset(annotations, image_root, min_sizes=(40, 56))

    def batches(num_workers):
        stream = iter(build_train_loader(dataset, batch_size=2, num_workers=num_workers, seed=1))
        return [next(stream) for _ in range(5)]

    for (images, targets), (other_images, other_targets) in zip(batches(0), batches(2)):
        for image, other in zip(images, other_images):
            assert torch.equal(image, other)
        for target, other in zip(targets, other_targets):
            assert target["image_id"] == other["image_id"] and torch.equal(target["boxes"], other["boxes"])


class _KeyedItems(torch.utils.data.Dataset):
    """Items equal to their dataset index; reading ``failing`` raises."""

    def __init__(self, size, failing=None):
        self.size, self.failing = size, failing

    def __len__(self):
        return self.size

    def __getitem__(self, key):
        _, index = key
        if index == self.failing:
            raise AnnotationError(f"item{index}.png", "pixels", "unreadable")
        return torch.tensor(index), {"index": index}


def test_in_process_loader_reads_ahead_in_order_and_raises_at_the_failing_batch():
    reference = iter(build_train_loader(_KeyedItems(6), batch_size=2, num_workers=1, seed=4))
    expected = [[t["index"] for t in next(reference)[1]] for _ in range(6)]
    loader = build_train_loader(_KeyedItems(6), batch_size=2, num_workers=0, seed=4)
    stream = iter(loader)
    assert [[t["index"] for t in next(stream)[1]] for _ in range(6)] == expected
    assert loader.iteration == 6  # batches handed out, not batches read ahead

    failing = expected[1][0]
    stream = iter(build_train_loader(_KeyedItems(6, failing=failing), batch_size=2, num_workers=0, seed=4))
    next(stream)  # the batch before the failing one arrives
    with pytest.raises(AnnotationError, match=f"item{failing}.png"):
        next(stream)


def test_closing_a_stream_ends_its_reader_thread_before_returning():
    # A reader left running at interpreter exit aborts the process, so close() joins it.
    stream = iter(build_train_loader(_KeyedItems(6), batch_size=2, num_workers=0, seed=4))
    next(stream)
    readers = [t for t in threading.enumerate() if t.name == "read_ahead"]
    assert readers
    stream.close()
    assert not any(reader.is_alive() for reader in readers)


def test_build_dataset_reads_the_config(synthetic):
    annotations, image_root = synthetic
    cfg = load_config(overrides=["INPUT.MIN_SIZE_TRAIN", "[24]", "INPUT.MAX_SIZE_TRAIN", "40",
                                 "INPUT.HFLIP_PROB", "0.0"])
    image, target = build_dataset(cfg, annotations, image_root, train=True)[0]
    assert image.shape == (3, 24, 32)
    assert build_dataset(cfg, annotations, image_root, train=False)[0][0].shape == (3, 48, 64)
    with pytest.raises(ValueError, match="min_sizes"):
        AmodalDataset(annotations, image_root, train=True)


def test_flip_transform_alone():
    image = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4).expand(3, 3, 4)
    mask = torch.zeros(1, 3, 4, dtype=torch.uint8)
    mask[0, :, 0] = 1
    target = {"boxes": torch.tensor([[0.0, 0.0, 1.0, 3.0]]), "amodal_masks": mask, "visible_masks": mask}
    flipped_image, flipped = RandomHorizontalFlip(1.0)(image, target, np.random.default_rng(0))
    assert flipped["boxes"].tolist() == [[3.0, 0.0, 4.0, 3.0]]
    assert flipped["amodal_masks"][0, :, 3].tolist() == [1, 1, 1]
    assert torch.equal(flipped_image, image.flip(-1))
    assert target["boxes"].tolist() == [[0.0, 0.0, 1.0, 3.0]]  # the input is left as it was
