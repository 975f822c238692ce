"""Bad input never hangs, crashes or destroys data (issue 13): each defect found by feeding the entry
points broken input, checked where it was seen. Commands that could hang or crash the interpreter
(malformed RLEs) run as subprocesses with a timeout; the others call the command line's ``main``."""
import argparse
import errno
import fractions
import json
import os
import subprocess
import sys
import tomllib
import types

import numpy as np
import pytest
import torch
from PIL import Image

import amodal_test
import amodal_train
from sln_amodal.data import catalog
from sln_amodal.data.readers.amodal_coco import read_amodal_coco, write_amodal_coco
from sln_amodal.data.records import AnnotationError, AnnotationSet, DropLog, ImageRecord, ObjectAnnotation
from sln_amodal.engine.checkpoint import atomic_torch_save
from sln_amodal.fileio import OutputError, remove_stale_temporaries
from sln_amodal.modeling.mask_branches.vrsp_shape_prior import SHAPE_PRIOR_FORMAT, ShapePrior, ShapePriorError
from sln_amodal.torch_files import (
    CheckpointError,
    UntrustedCheckpointError,
    add_trust_checkpoint_option,
    numpy_array_globals,
    read_torch_file,
)
from sln_amodal.structures.masks import encode_mask, mask_to_bbox
from reader_files import rect, write_d2sa
from testing import box_mask

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEIGHT, WIDTH = 24, 32
TIMEOUT_S = 120  # a hang fails the test instead of blocking the suite
HANGING_RLE = {"size": [HEIGHT, WIDTH], "counts": [100, 50]}  # 150 of 768 pixels: pycocotools loops forever
GARBLED_RLE = {"size": [HEIGHT, WIDTH], "counts": "zzzz!!"}
EMPTY_RLE = {"size": [HEIGHT, WIDTH], "counts": ""}  # segfaulted pycocotools
TINY_TRAIN = [
    "MODEL.DEVICE", "cpu", "MODEL.ROI_MASK_HEAD.NAME", "SLNHead", "MODEL.BACKBONE.DEPTH", "18",
    "MODEL.FPN.OUT_CHANNELS", "16", "MODEL.ROI_BOX_HEAD.FC_DIM", "32", "INPUT.MIN_SIZE_TRAIN", "[32]",
    "INPUT.MAX_SIZE_TRAIN", "48", "MODEL.RPN.BATCH_SIZE_PER_IMAGE", "16", "MODEL.RPN.PRE_NMS_TOPK_TRAIN", "50",
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", "20", "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "16",
    "MODEL.SLN.GLOBAL_CONV_DIMS", "[8]", "MODEL.SLN.INSTANCE_CONV_DIMS", "[8]", "MODEL.SLN.DECONV_DIM", "8",
    "MODEL.SLN.SEM_DIST_CONV_DIMS", "[8]", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.IMS_PER_BATCH", "1",
    "SOLVER.MAX_ITER", "1", "SOLVER.VIS_PERIOD", "0", "SOLVER.WARMUP_ITERS", "0",
]


def box(y0, x0, y1, x1):
    return box_mask(y0, x0, y1, x1, HEIGHT, WIDTH)


def ground_truth_object(mask, category_id=1):
    return ObjectAnnotation(category_id, encode_mask(mask), encode_mask(mask), tuple(mask_to_bbox(mask)), 0.0)


def detection(image_id, mask, score=0.9, category_id=1):
    return {"image_id": image_id, "category_id": category_id, "score": score, "segmentation": encode_mask(mask),
            "visible_segmentation": encode_mask(mask)}


def write_dataset(root, with_images=True):
    """A project-layout val split of two images, one object each; returns the annotation JSON as a dict."""
    records = [ImageRecord("1.png", HEIGHT, WIDTH, 1, [ground_truth_object(box(2, 2, 12, 14))]),
               ImageRecord("2.png", HEIGHT, WIDTH, 2, [ground_truth_object(box(6, 10, 20, 30))])]
    path = root / "annotations" / "val.json"
    write_amodal_coco(AnnotationSet([{"id": 1, "name": "thing"}], records), str(path))
    if with_images:
        (root / "images").mkdir()
        for record in records:
            Image.fromarray(np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)).save(root / "images" / record.file_name)
    return json.loads(path.read_text())


def rewrite(root, data):
    (root / "annotations" / "val.json").write_text(json.dumps(data))


def write_results(path, results):
    path.write_text(json.dumps(results))
    return str(path)


def run_python(*args):
    return subprocess.run([sys.executable, *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=TIMEOUT_S, env={**os.environ, "OMP_NUM_THREADS": "1"})


def exit_message(main, argv):
    """What ``main(argv)`` exits with (the ``error: ...`` line), failing when it returns normally."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return str(exit_info.value)


# ------------------------------------------------------------------------------- critical: RLEs
def test_malformed_and_empty_rles_are_dropped_and_counted_when_scoring(tmp_path):
    dataset = tmp_path / "data"
    data = write_dataset(dataset, with_images=False)
    data["annotations"].append(dict(data["annotations"][0], id=3, segmentation=HANGING_RLE))
    data["annotations"].append(dict(data["annotations"][0], id=4, visible_segmentation=EMPTY_RLE))
    data["annotations"].append(dict(data["annotations"][0], id=5, visible_segmentation=GARBLED_RLE))
    rewrite(dataset, data)
    results = write_results(tmp_path / "results.json", [
        detection(1, box(2, 2, 12, 14)), {**detection(2, box(6, 10, 20, 30)), "segmentation": EMPTY_RLE},
        {**detection(2, box(6, 10, 20, 30)), "visible_segmentation": HANGING_RLE}])

    scored = run_python("amodal_train.py", "evaluate", "--dataset", dataset, "--results", results,
                        "--out", tmp_path / "out")
    assert scored.returncode == 0, scored.stderr
    assert "detection: segmentation: RLE counts cover 0 pixels, the 32x24 image has 768: 1" in scored.stdout
    assert "detection: visible_segmentation: RLE counts cover 150 pixels" in scored.stdout
    assert (tmp_path / "out" / "metrics.json").is_file()

    strict = run_python("amodal_train.py", "evaluate", "--dataset", dataset, "--results", results,
                        "--out", tmp_path / "out", "DATASETS.STRICT", "true")
    assert strict.returncode == 1 and "Traceback" not in strict.stderr
    assert "val.json annotation id 3: amodal segmentation: RLE counts cover 150 pixels" in strict.stderr


def test_convert_d2sa_strict_names_the_file_and_field_of_a_malformed_rle(tmp_path):
    source = tmp_path / "d2sa.json"
    data = json.loads(open(write_d2sa(source)).read())
    data["annotations"][0]["visible_mask"] = {"size": [24, 32], "counts": [100, 50]}
    source.write_text(json.dumps(data))
    converted = run_python("scripts/convert_d2sa.py", "--ann", source, "--out", tmp_path / "out.json", "--strict")
    assert converted.returncode == 1 and "Traceback" not in converted.stderr
    assert (f"error: {source} image id 10 annotation id 1: visible segmentation: RLE counts cover 150 pixels"
            in converted.stderr)


def test_training_drops_a_malformed_rle_and_reports_unreadable_images(tmp_path):
    dataset = tmp_path / "data"
    data = write_dataset(dataset)
    data["images"].append({"id": 3, "file_name": "broken.png", "height": HEIGHT, "width": WIDTH})
    data["annotations"].append(dict(data["annotations"][0], id=3, image_id=3))
    data["annotations"].append(dict(data["annotations"][1], id=4, segmentation=GARBLED_RLE))
    data["annotations"].append(dict(data["annotations"][1], id=5, visible_segmentation=EMPTY_RLE))
    rewrite(dataset, data)
    (dataset / "images" / "broken.png").write_bytes(b"not a png")
    trained = run_python("amodal_train.py", "train", "--dataset", dataset, "--model", "none", "--logs",
                         tmp_path / "logs", "DATASETS.TRAIN_SPLIT", "val", *TINY_TRAIN,
                         "DATALOADER.IMS_PER_BATCH", "3")
    assert trained.returncode == 0, trained.stderr
    assert "object: amodal segmentation: RLE counts string holds 'z'" in trained.stderr
    assert "object: visible segmentation: RLE counts cover 0 pixels" in trained.stderr
    assert "1 unreadable image(s) were skipped during training" in trained.stderr
    assert "broken.png" in trained.stderr


# ----------------------------------------------------------------------------------------- high
def test_amodal_test_refuses_an_output_folder_in_the_input_folder(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((8, 8, 3), 7, dtype=np.uint8)).save(photos / "a.png")
    before = (photos / "a.png").read_bytes()
    for out in (photos, photos / "overlays", tmp_path / "photos" / "." / "x"):
        message = exit_message(amodal_test.main, ["--images", str(photos), "--model", "missing.pth",
                                                  "--out", str(out)])
        assert f"error: --out {out} is" in message and f"--images folder {photos}" in message
    assert sorted(os.listdir(photos)) == ["a.png"] and (photos / "a.png").read_bytes() == before


class _Payload:
    """Pickles into a call of ``open(marker, "w")``: unpickling it creates the marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (self.marker, "w")


def test_crafted_checkpoints_never_run_code_without_trust(tmp_path):
    marker = tmp_path / "payload_ran"
    crafted, garbage = tmp_path / "crafted.pth", tmp_path / "garbage.pth"
    torch.save({"model": _Payload(str(marker))}, crafted)
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in (crafted, garbage):
        message = exit_message(amodal_test.main, ["--images", str(photos), "--model", str(path),
                                                  "--out", str(tmp_path / "out")])
        assert message.startswith(f"error: {path}: ")
        assert not marker.exists()
    assert "--trust-checkpoint" in exit_message(amodal_test.main, [
        "--images", str(photos), "--model", str(crafted), "--out", str(tmp_path / "out")])
    assert "not a readable PyTorch checkpoint" in exit_message(amodal_test.main, [
        "--images", str(photos), "--model", str(garbage), "--out", str(tmp_path / "out"), "--trust-checkpoint"])

    dataset = tmp_path / "data"
    write_dataset(dataset)
    message = exit_message(amodal_train.main, ["train", "--dataset", str(dataset), "--model", str(crafted),
                                               "--logs", str(tmp_path / "logs"), "DATASETS.TRAIN_SPLIT", "val",
                                               *TINY_TRAIN])
    assert "--trust-checkpoint" in message and not marker.exists()
    # The explicit opt-in unpickles fully (the user vouches for the file).
    exit_message(amodal_test.main, ["--images", str(photos), "--model", str(crafted), "--out", str(tmp_path / "out"),
                                    "--trust-checkpoint"])
    assert marker.exists()


def test_trusted_legacy_checkpoints_load_and_shape_prior_errors_offer_no_flag(tmp_path):
    """A legacy (non-zip) checkpoint holding other objects: refused with the opt-in named, and read
    with it (the zip check must not stop a trusted file). A shape-prior file never offers the opt-in,
    which no command line would pass on to it."""
    legacy = tmp_path / "legacy.pth"
    torch.save({"w": torch.ones(2), "ratio": fractions.Fraction(1, 3)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="legacy .*--trust-checkpoint unpickles it fully"):
        read_torch_file(str(legacy))
    assert read_torch_file(str(legacy), trust=True)["ratio"] == fractions.Fraction(1, 3)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    for trust in (False, True):
        with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
            read_torch_file(str(garbage), trust=trust)
    crafted = tmp_path / "crafted.pth"
    torch.save({"ratio": fractions.Fraction(1, 3)}, crafted)
    with pytest.raises(UntrustedCheckpointError, match="pass --trust-checkpoint"):
        read_torch_file(str(crafted))

    prior_file = tmp_path / "prior.pth"
    torch.save({"format": SHAPE_PRIOR_FORMAT, "categories": fractions.Fraction(1, 3)}, prior_file)
    with pytest.raises(ShapePriorError) as caught:
        ShapePrior(1, 28, 8, 3, 4).load_file(str(prior_file))
    assert "never does" in str(caught.value) and "--trust-checkpoint" not in str(caught.value)


def test_one_trust_checkpoint_option_on_every_command_line():
    reference = argparse.ArgumentParser()
    add_trust_checkpoint_option(reference)
    (expected,) = [action.help for action in reference._actions if "--trust-checkpoint" in action.option_strings]
    parser, commands = amodal_train.build_parsers()
    helps = [amodal_test.build_parser().format_help(), commands["train"].format_help(),
             commands["evaluate"].format_help(),
             run_python("scripts/build_shape_codebook.py", "--help").stdout]
    for text in helps:
        assert " ".join(expected.split()) in " ".join(text.split())
    # The commands' own parsers read options and overrides in any order.
    args = amodal_train.parse_args(["train", "--dataset", "d", "SOLVER.MAX_ITER", "2", "--model", "none",
                                    "--trust-checkpoint"])
    assert (args.command, args.model, args.overrides, args.trust_checkpoint) == ("train", "none",
                                                                               ["SOLVER.MAX_ITER", "2"], True)


def test_array_globals_without_numpy_dtypes():
    """numpy before 1.25 has no numpy.dtypes: the allowed globals are then the three it does have."""
    old_numpy = types.SimpleNamespace(ndarray=np.ndarray, dtype=np.dtype, zeros=np.zeros)
    assert numpy_array_globals(old_numpy) == [np.ndarray.__reduce__(np.zeros(0))[0], np.ndarray, np.dtype]
    assert np.dtypes.Float32DType in numpy_array_globals()
    with open(os.path.join(REPO_ROOT, "pyproject.toml"), "rb") as f:
        dependencies = tomllib.load(f)["project"]["dependencies"]
    assert "numpy>=1.25" in dependencies


def test_stale_temporaries_of_running_processes_are_kept(tmp_path, monkeypatch):
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()  # reaped: its id names no process now
    own, dead = tmp_path / f"model.pth.tmp.{os.getpid()}", tmp_path / f"model.pth.tmp.{finished.pid}"
    other_user = tmp_path / "config.yaml.tmp.4242"
    for path in (own, dead, other_user):
        path.write_bytes(b"partial")
    real_kill = os.kill

    def kill(pid, signal):  # process 4242 belongs to another user: it exists, but cannot be signalled
        if pid == 4242:
            raise PermissionError(errno.EPERM, "Operation not permitted")
        return real_kill(pid, signal)

    monkeypatch.setattr(os, "kill", kill)
    assert remove_stale_temporaries(str(tmp_path)) == [str(dead)]
    assert own.exists() and other_user.exists() and not dead.exists()


# --------------------------------------------------------------------------------------- medium
def test_evaluate_results_needs_only_the_annotations(tmp_path, capsys):
    dataset = tmp_path / "data"
    write_dataset(dataset, with_images=False)
    results = write_results(tmp_path / "results.json", [detection(1, box(2, 2, 12, 14)),
                                                        detection(2, box(6, 10, 20, 30))])
    amodal_train.main(["evaluate", "--dataset", str(dataset), "--results", results, "--out", str(tmp_path / "out")])
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["amodal"]["all"]["AP"] == pytest.approx(1.0)


def test_converters_and_make_synthetic_never_overwrite_without_force(tmp_path):
    source = tmp_path / "d2sa.json"
    write_d2sa(source)
    original = source.read_bytes()
    for extra in ([], ["--force"]):
        same = run_python("scripts/convert_d2sa.py", "--ann", source, "--out", source, *extra)
        assert same.returncode == 1 and "is the --ann file; a converter never overwrites its input" in same.stderr
    assert source.read_bytes() == original
    out = tmp_path / "out.json"
    out.write_text("user data")
    refused = run_python("scripts/convert_d2sa.py", "--ann", source, "--out", out)
    assert refused.returncode == 1 and "already exists; pass --force" in refused.stderr
    assert out.read_text() == "user data"
    assert run_python("scripts/convert_d2sa.py", "--ann", source, "--out", out, "--force").returncode == 0
    assert json.loads(out.read_text())["images"]

    synthetic = tmp_path / "synthetic"
    arguments = ["scripts/make_synthetic.py", "--out", synthetic, "--num-train", "1", "--num-val", "1",
                 "--image-size", "32", "32"]
    assert run_python(*arguments).returncode == 0
    written = (synthetic / "annotations" / "train.json").read_bytes()
    again = run_python(*arguments, "--seed", "5")
    assert again.returncode == 1 and "pass --force to replace the dataset" in again.stderr
    assert (synthetic / "annotations" / "train.json").read_bytes() == written
    assert run_python(*arguments, "--seed", "5", "--force").returncode == 0
    assert (synthetic / "annotations" / "train.json").read_bytes() != written
    # Images alone are a dataset too: they would be written over.
    photos = tmp_path / "photos"
    (photos / "images" / "train").mkdir(parents=True)
    (photos / "images" / "train" / "000000.png").write_bytes(b"user photo")
    refused = run_python("scripts/make_synthetic.py", "--out", photos, *arguments[3:])
    assert refused.returncode == 1 and f"{photos / 'images'} already exists; pass --force" in refused.stderr
    assert (photos / "images" / "train" / "000000.png").read_bytes() == b"user photo"
    assert not (photos / "annotations").exists()


WRONG_TYPED_ANNOTATIONS = [
    ({"category_id": "cup"}, "object: category_id: expected an integer, got str 'cup'"),
    ({"depth_rank": "front"}, "object: depth_rank: expected an integer, got str 'front'"),
    ({"segmentation": "0 0 5 5"}, "object: amodal segmentation: expected a polygon list or an RLE dict, got str"),
    ({"segmentation": {"size": [HEIGHT, WIDTH], "counts": [-5, 10]}}, "RLE counts hold a negative run (-5)"),
    ({"segmentation": {"size": [HEIGHT, WIDTH], "counts": ["a"]}}, "RLE counts must be integers, got str 'a'"),
    ({"segmentation": {"size": [HEIGHT, WIDTH], "counts": 123}}, "RLE counts must be a string or a list"),
    ({"segmentation": {"size": "24x32", "counts": ""}}, "RLE size must be [height, width] as two integers"),
    ({"segmentation": [rect(1, 1, 9, 9) + [3]]}, "a polygon must hold (x, y) pairs, got 9 numbers"),
    ({"bbox": [1, 2, 3]}, "object: bbox: expected 4 finite numbers [x, y, width, height], got list [1, 2, 3]"),
]


@pytest.mark.parametrize("strict", [False, True])
def test_wrong_typed_fields_are_dropped_or_named_never_a_traceback(tmp_path, strict):
    data = write_dataset(tmp_path, with_images=False)
    template = data["annotations"][0]
    data["annotations"] = [dict(template, id=10 + n, **fields) for n, (fields, _) in enumerate(WRONG_TYPED_ANNOTATIONS)]
    data["annotations"] += ["not an annotation", dict(template, id=30)]
    data["images"] += [{"id": 3, "file_name": "3.png", "height": HEIGHT, "width": "wide"}]
    data["images"][0]["depth_constraints"] = [[30, 31, 32], "x"]
    path = tmp_path / "annotations" / "val.json"
    path.write_text(json.dumps(data))
    log = DropLog(str(path), strict)
    if strict:
        with pytest.raises(AnnotationError, match=r"val\.json annotation 9: <entry>: expected an object, got str"):
            read_amodal_coco(str(path), strict, log)
        return
    annotations = read_amodal_coco(str(path), strict, log)
    assert [len(r.objects) for r in annotations.records] == [1, 0]
    summary = log.summary()
    for _, message in WRONG_TYPED_ANNOTATIONS:
        assert message in summary
    assert "annotation: <entry>: expected an object, got str 'not an annotation'" in summary
    assert "image: width: expected an integer, got str 'wide'" in summary
    assert "expected a [front, back] pair of annotation ids, got list [30, 31, 32]" in summary

    path.write_text(json.dumps(dict(data, annotations={"1": template})))
    with pytest.raises(AnnotationError, match=r"val\.json top level: annotations: expected a list, got dict"):
        read_amodal_coco(str(path))


STRICT_CASES = [("annotation", fields, message.split(": ", 1)[1] if message.startswith("object: ") else message)
                for fields, message in WRONG_TYPED_ANNOTATIONS] + [
    ("image", {"width": "wide"}, "width: expected an integer, got str 'wide'"),
    ("image", {"depth_constraints": [[10, 11, 12]]}, "expected a [front, back] pair of annotation ids"),
]


@pytest.mark.parametrize("kind, fields, message", STRICT_CASES,
                         ids=[f"{kind}-{next(iter(fields))}-{n}" for n, (kind, fields, _) in enumerate(STRICT_CASES)])
def test_each_wrong_typed_field_alone_is_an_error_in_strict_mode(tmp_path, kind, fields, message):
    """Each wrong field as the file's only flaw: strict mode names it (the test above stops at the first)."""
    data = write_dataset(tmp_path, with_images=False)
    if kind == "annotation":
        data["annotations"][0].update(fields)
    else:
        data["images"][0].update(fields)
    path = tmp_path / "annotations" / "val.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError) as caught:
        read_amodal_coco(str(path), True, DropLog(str(path), True))
    assert message in str(caught.value) and str(caught.value).startswith(str(path))
    read_amodal_coco(str(path), False, DropLog(str(path), False))  # and non-strict, a drop: no error


def test_results_with_wrong_typed_or_unmatched_ids(tmp_path, capsys, caplog):
    dataset = tmp_path / "data"
    write_dataset(dataset, with_images=False)
    arguments = ["evaluate", "--dataset", str(dataset), "--out", str(tmp_path / "out")]
    # String ids that parse as integers are those integers, as in the ground truth.
    results = write_results(tmp_path / "strings.json", [
        {**detection(1, box(2, 2, 12, 14)), "image_id": "1", "category_id": "1"},
        {**detection(2, box(6, 10, 20, 30)), "image_id": [2]}])
    amodal_train.main([*arguments, "--results", results])
    output = capsys.readouterr().out
    assert "detection: image_id: expected an integer, got list [2]: 1" in output
    assert "detections kept: 1" in output

    offset = write_results(tmp_path / "offset.json", [detection(101, box(2, 2, 12, 14)),
                                                      detection(102, box(6, 10, 20, 30))])
    amodal_train.main([*arguments, "--results", offset])
    assert "none of the 2 detections names an image of the ground truth (its image ids run 1..2)" in caplog.text
    message = exit_message(amodal_train.main, [*arguments, "--results", offset, "DATASETS.STRICT", "true"])
    assert message.startswith(f"error: {offset}: image_id: none of the 2 detections names an image")


def test_duplicate_image_and_annotation_ids_are_dropped_and_counted(tmp_path, capsys):
    dataset = tmp_path / "data"
    data = write_dataset(dataset, with_images=False)
    data["images"].append(dict(data["images"][1]))
    data["annotations"].append(dict(data["annotations"][0], image_id=1))  # a second annotation id 1
    data["images"][0]["depth_constraints"] = [[1, 2]]
    rewrite(dataset, data)
    log = DropLog("val.json")
    annotations = read_amodal_coco(str(dataset / "annotations" / "val.json"), log=log)
    assert [(r.image_id, len(r.objects), r.depth_constraints) for r in annotations.records] == [(1, 2, [])]
    assert log.dropped["image: id: 2 images share id 2, so their annotations cannot be told apart"] == 2
    assert log.dropped["depth constraint: depth_constraints: [1, 2] names annotation id 1, which 2 annotations share"]

    results = write_results(tmp_path / "results.json", [detection(1, box(2, 2, 12, 14))])
    amodal_train.main(["evaluate", "--dataset", str(dataset), "--results", results, "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "metrics.json").is_file()


def test_failed_checkpoint_write_leaves_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "model.pth"
    atomic_torch_save({"weights": torch.zeros(3)}, str(path))
    before = path.read_bytes()

    def disk_full(obj, f):
        f.write(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OutputError, match=rf"cannot write {path}: No space left on device"):
        atomic_torch_save({"weights": torch.ones(3)}, str(path))
    assert os.listdir(tmp_path) == ["model.pth"] and path.read_bytes() == before


# ------------------------------------------------------------------------------------------ low
def test_unwritable_or_file_outputs_fail_before_any_work(tmp_path):
    dataset = tmp_path / "data"
    write_dataset(dataset, with_images=False)
    a_file = tmp_path / "file.txt"
    a_file.write_text("keep me")
    results = write_results(tmp_path / "results.json", [detection(1, box(2, 2, 12, 14))])
    message = exit_message(amodal_train.main, ["evaluate", "--dataset", str(dataset), "--results", results,
                                               "--out", str(a_file)])
    assert message == f"error: --out {a_file}: is a file, expected a folder"
    message = exit_message(amodal_train.main, ["train", "--dataset", str(dataset), "--model", "none",
                                               "--logs", str(a_file / "run")])
    assert message.startswith(f"error: --logs {a_file / 'run'}: cannot create the folder")
    message = exit_message(amodal_test.main, ["--images", str(tmp_path), "--model", "m.pth", "--out", str(a_file)])
    assert "is inside the --images folder" in message or "is a file" in message
    assert a_file.read_text() == "keep me"


@pytest.mark.parametrize("key, value, expected", [
    ("MODEL.BACKBONE.DEPTH", "19", "MODEL.BACKBONE.DEPTH 19 is not allowed: expected one of 18, 34, 50, 101"),
    ("MODEL.BACKBONE.STAGE_WIDTHS", "[32, 64, 128]",
     "MODEL.BACKBONE.STAGE_WIDTHS [32, 64, 128] is not allowed: expected 4 positive integers (res2..res5)"),
    ("SOLVER.BASE_LR", "-0.1", "SOLVER.BASE_LR -0.1 is not allowed: expected a positive number"),
    ("DATALOADER.IMS_PER_BATCH", "0", "DATALOADER.IMS_PER_BATCH 0 is not allowed: expected at least 1"),
    ("DATALOADER.NUM_WORKERS", "-1", "DATALOADER.NUM_WORKERS -1 is not allowed: expected at least 0"),
    ("MODEL.SLN.NUM_LAYERS", "0", "MODEL.SLN.NUM_LAYERS 0 is not allowed: expected at least 1"),
    ("MODEL.DEVICE", "tpu", "MODEL.DEVICE 'tpu' is not allowed: expected cpu, cuda or cuda:N"),
    ("VIS.MAX_WORKING_MEGAPIXELS", "0.0", "VIS.MAX_WORKING_MEGAPIXELS 0.0 is not allowed: expected a positive number"),
    ("SOLVER.OPTIMIZER", "Adam", "SOLVER.OPTIMIZER 'Adam' is not allowed: expected one of ['SGD', 'AdamW']"),
    ("SOLVER.ADAM_BETAS", "[0.9, 1.0]", "SOLVER.ADAM_BETAS [0.9, 1.0] is not allowed: expected two numbers in [0, 1)"),
    ("SOLVER.ADAM_BETAS", "[a, b]", "SOLVER.ADAM_BETAS ['a', 'b'] is not allowed: expected two numbers in [0, 1)"),
])
def test_invalid_config_values_are_an_error_line(tmp_path, key, value, expected):
    message = exit_message(amodal_train.main, ["train", "--dataset", str(tmp_path), "--model", "none",
                                               "--logs", str(tmp_path / "logs"), key, value])
    assert message == f"error: {expected}"
    assert not (tmp_path / "logs").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_cuda_without_a_gpu_is_an_error_line(tmp_path):
    message = exit_message(amodal_train.main, ["train", "--dataset", str(tmp_path), "--model", "none",
                                               "MODEL.DEVICE", "cuda"])
    assert message == "error: MODEL.DEVICE 'cuda' is not allowed: expected cpu: this machine has no usable CUDA GPU"


def test_empty_dataset_zero_categories_and_garbage_weights_are_errors(tmp_path):
    dataset = tmp_path / "data"
    data = write_dataset(dataset)
    train = ["train", "--dataset", str(dataset), "--model", "none", "--logs", str(tmp_path / "logs"),
             "DATASETS.TRAIN_SPLIT", "val", *TINY_TRAIN]
    rewrite(dataset, dict(data, images=[]))
    assert "val.json: images: no image of the val split is usable (0 read" in exit_message(amodal_train.main, train)
    rewrite(dataset, dict(data, categories=[]))
    assert "val.json: categories: the file lists no categories" in exit_message(amodal_train.main, train)
    rewrite(dataset, data)
    garbage = tmp_path / "weights.pth"
    garbage.write_bytes(b"\x00" * 100)
    message = exit_message(amodal_train.main, [*train[:4], str(garbage), *train[5:]])
    assert message.startswith(f"error: {garbage}: not a readable PyTorch checkpoint")


def test_overrides_may_precede_options_and_dataset_names_resolve_in_datasets(tmp_path, monkeypatch):
    args = amodal_train.parse_args(["train", "SOLVER.BASE_LR", "0.01", "--dataset", "d", "--model", "none"])
    assert args.overrides == ["SOLVER.BASE_LR", "0.01"] and args.dataset == "d" and args.command == "train"
    args = amodal_test.build_parser().parse_intermixed_args(
        ["--images", "i", "VIS.SCORE_THRESH", "0.5", "--model", "m", "--out", "o"])
    assert args.overrides == ["VIS.SCORE_THRESH", "0.5"] and args.out == "o"

    write_dataset(tmp_path / "mine", with_images=False)
    monkeypatch.setattr(catalog, "DATASETS_ROOT", str(tmp_path))
    annotations, _ = catalog.resolve_split("mine", "val", "AMODAL_COCO", need_images=False)
    assert [r.image_id for r in annotations.records] == [1, 2]
    with pytest.raises(FileNotFoundError, match=rf"nowhere: no such dataset folder \(nor {tmp_path}/nowhere\)"):
        catalog.resolve_split("nowhere", "val", "AMODAL_COCO")


def test_resume_with_a_wrong_logs_folder_creates_nothing(tmp_path):
    logs = tmp_path / "no_such_run"
    message = exit_message(amodal_train.main, ["train", "--dataset", str(tmp_path), "--model", "last",
                                               "--logs", str(logs)])
    assert message == f"error: --model last: no checkpoint to resume in {logs} (no such folder)"
    assert not logs.exists()


def test_make_synthetic_rejects_bad_sizes_and_counts(tmp_path):
    for arguments, expected in ((["--num-train", "-5"], "error: --num-train must be 0 or more, got -5"),
                                (["--image-size", "0", "8"], "error: image size must be positive, got 0x8"),
                                (["--min-objects", "5", "--max-objects", "2"], "error: need 0 <= min_objects")):
        completed = run_python("scripts/make_synthetic.py", "--out", tmp_path / "x", *arguments)
        assert completed.returncode == 1 and expected in completed.stderr and "Traceback" not in completed.stderr
    tiny = run_python("scripts/make_synthetic.py", "--out", tmp_path / "tiny", "--num-train", "2", "--num-val", "0",
                      "--image-size", "8", "8")
    assert tiny.returncode == 0 and "warning: no object of the train split" in tiny.stderr
