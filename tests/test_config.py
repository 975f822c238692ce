import pytest

from sln_amodal.config import ConfigError, load_config


def test_defaults_then_file_then_overrides(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("MODEL:\n  SLN:\n    NUM_LAYERS: 4\nINPUT:\n  MAX_SIZE_TRAIN: 900\n")
    child = tmp_path / "child.yaml"
    child.write_text("_BASE_: base.yaml\nINPUT:\n  MAX_SIZE_TRAIN: 1000\n  MIN_SIZE_TRAIN: [600, 700]\n")
    cfg = load_config(str(child), ["MODEL.SLN.AMODAL_THRESH", "0.4", "DATASETS.STRICT", "true"])
    assert cfg.MODEL.SLN.NUM_LAYERS == 4  # from the base file
    assert cfg.INPUT.MAX_SIZE_TRAIN == 1000  # child wins over base
    assert cfg.INPUT.MIN_SIZE_TRAIN == (600, 700)  # lists become tuples
    assert cfg.MODEL.SLN.AMODAL_THRESH == 0.4
    assert cfg.DATASETS.STRICT is True


def test_int_widens_to_float_and_none_accepts_any():
    cfg = load_config(overrides=["MODEL.SLN.AMODAL_THRESH", "1", "MODEL.SLN.DIST_SATURATION", "2.5",
                                 "SOLVER.BASE_LR", "1e-3"])
    assert isinstance(cfg.MODEL.SLN.AMODAL_THRESH, float)
    assert cfg.SOLVER.BASE_LR == 0.001  # "1e-3" is a string to YAML 1.1
    assert cfg.MODEL.SLN.DIST_SATURATION == 2.5


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["MODEL.SLN.NUM_LAYER", "3"], "unknown config key 'MODEL.SLN.NUM_LAYER'"),
        (["MODLE.SLN.NUM_LAYERS", "3"], "unknown config key 'MODLE'"),
        (["MODEL.SLN", "3"], "is a section"),
        (["MODEL.SLN.NUM_LAYERS", "three"], "expects int"),
        (["MODEL.SLN.NUM_LAYERS"], "KEY VALUE pairs"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=overrides)


def test_unknown_key_in_file_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("INPUT:\n  MIN_SIZE_TRAINN: [1]\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown config key 'INPUT\.MIN_SIZE_TRAINN'"):
        load_config(str(path))


def test_nested_lists_become_nested_tuples_and_dump_round_trips(tmp_path):
    cfg = load_config(overrides=["MODEL.ANCHOR_GENERATOR.SIZES", "[[16], [32]]"])
    assert cfg.MODEL.ANCHOR_GENERATOR.SIZES == ((16,), (32,))
    path = tmp_path / "dumped.yaml"
    path.write_text(cfg.dump())
    assert load_config(str(path)) == cfg


def test_clone_is_independent():
    cfg = load_config()
    other = cfg.clone()
    other.MODEL.SLN.NUM_LAYERS = 7
    assert cfg.MODEL.SLN.NUM_LAYERS == 3
