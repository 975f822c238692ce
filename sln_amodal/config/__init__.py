from .config import CfgNode, ConfigError
from .defaults import get_default_config

__all__ = ["CfgNode", "ConfigError", "get_default_config", "load_config"]


def load_config(path: str | None = None, overrides: list[str] | None = None) -> CfgNode:
    """Defaults, then a YAML file, then ``KEY VALUE`` overrides, in that order."""
    cfg = get_default_config()
    if path:
        cfg.merge_from_file(path)
    if overrides:
        cfg.merge_from_list(overrides)
    return cfg
