"""A small nested configuration node: attribute access, YAML merge, KEY VALUE overrides.

Every key must already exist in the defaults (``sln_amodal/config/defaults.py``); an unknown key
is an error that names it, so a typo in a YAML file or on the command line never passes silently.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Iterable

import yaml

BASE_KEY = "_BASE_"  # a YAML file may name another YAML file it extends (path relative to it)


class ConfigError(KeyError):
    """A configuration key or value that the defaults do not allow."""

    def __str__(self) -> str:  # KeyError would print the message with quotes around it
        return str(self.args[0])


class CfgNode(dict):
    """A dict whose keys are also attributes; nested dicts become nodes."""

    def __init__(self, init: dict | None = None):
        super().__init__()
        for key, value in (init or {}).items():
            self[key] = CfgNode(value) if isinstance(value, dict) else value

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key {name!r}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def clone(self) -> "CfgNode":
        return copy.deepcopy(self)

    def to_dict(self) -> dict:
        return {k: v.to_dict() if isinstance(v, CfgNode) else v for k, v in self.items()}

    def dump(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    # ---------------------------------------------------------------- merging
    def merge_from_dict(self, other: dict, source: str = "<dict>", prefix: str = "") -> None:
        for key, value in other.items():
            full_key = f"{prefix}{key}"
            if key not in self:
                raise ConfigError(f"{source}: unknown config key {full_key!r}")
            current = self[key]
            if isinstance(current, CfgNode):
                if not isinstance(value, dict):
                    raise ConfigError(f"{source}: config key {full_key!r} is a section, got {value!r}")
                current.merge_from_dict(value, source, prefix=full_key + ".")
            else:
                self[key] = _coerce(current, value, full_key, source)

    def merge_from_file(self, path: str) -> None:
        self.merge_from_dict(load_yaml_with_base(path), source=path)

    def merge_from_list(self, pairs: Iterable[str]) -> None:
        """Apply ``["KEY.SUB", "VALUE", ...]`` overrides; values are parsed as YAML scalars/lists."""
        pairs = list(pairs)
        if len(pairs) % 2:
            raise ConfigError(f"command line overrides must be KEY VALUE pairs, got {pairs!r}")
        for key, text in zip(pairs[0::2], pairs[1::2]):
            node = self
            parts = key.split(".")
            for depth, part in enumerate(parts[:-1]):
                if part not in node or not isinstance(node[part], CfgNode):
                    raise ConfigError(f"command line: unknown config key {'.'.join(parts[:depth + 1])!r}")
                node = node[part]
            leaf = parts[-1]
            if leaf not in node:
                raise ConfigError(f"command line: unknown config key {key!r}")
            if isinstance(node[leaf], CfgNode):
                raise ConfigError(f"command line: config key {key!r} is a section, not a value")
            node[leaf] = _coerce(node[leaf], yaml.safe_load(text), key, "command line")


def load_yaml_with_base(path: str) -> dict:
    with open(path, "r", encoding="utf-8") as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping at the top level")
    base = data.pop(BASE_KEY, None)
    if base is None:
        return data
    merged = load_yaml_with_base(os.path.join(os.path.dirname(path), base))
    _deep_update(merged, data)
    return merged


def _deep_update(target: dict, update: dict) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _coerce(current: Any, value: Any, key: str, source: str) -> Any:
    """Check ``value`` against the default's type; ints widen to floats, lists become tuples."""
    if current is None or value is None:
        return value
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(current, float) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    elif isinstance(current, float) and isinstance(value, str) and _is_float_text(value):
        return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
    elif isinstance(current, int) and isinstance(value, int) and not isinstance(value, bool):
        return value
    elif isinstance(current, str) and isinstance(value, str):
        return value
    elif isinstance(current, (list, tuple)) and isinstance(value, (list, tuple)):
        return _as_tuples(value)
    raise ConfigError(
        f"{source}: config key {key!r} expects {type(current).__name__} "
        f"(default {current!r}), got {value!r}"
    )


def _as_tuples(value):
    """Lists (nested too, e.g. anchor sizes per level) -> tuples, as the defaults write them."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _is_float_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

