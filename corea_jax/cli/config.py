"""Experiment configs: `--config=configs/FILE.py[:ARG]` plus `--config.KEY=VALUE` overrides.

A config file is an ml_collections module with `get_config(arg=None) -> ConfigDict`. It is loaded
by path (config files are not a package), and overrides are parsed against the type of the value
they replace, so `--config.train.lr=3e-6` stays a float and a misspelt key is an error that names
the key. The ConfigDict stops at the entry point: library functions take typed arguments.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
from pathlib import Path

import ml_collections

from corea_jax.errors import CoreaError


class ConfigError(CoreaError):
    """A config file or override that cannot be used; the message names the file or key."""


def load_config(spec: str, overrides: list[str] | None = None) -> ml_collections.ConfigDict:
    """Loads `path/to/file.py[:arg]` and applies `KEY=VALUE` overrides (dotted keys)."""
    path_str, _, arg = spec.partition(":")
    path = Path(path_str)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    module_spec = importlib.util.spec_from_file_location(f"_corea_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception as e:  # the config file is user code: report where it failed
        raise ConfigError(f"{path}: failed to import: {type(e).__name__}: {e}") from e
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise ConfigError(f"{path}: has no get_config() function")
    takes_arg = bool(inspect.signature(get_config).parameters)
    if arg and not takes_arg:
        raise ConfigError(f"{path}: get_config() takes no argument but ':{arg}' was given")
    config = get_config(arg or None) if takes_arg else get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    for item in overrides or []:
        apply_override(config, item)
    return config


def apply_override(config: ml_collections.ConfigDict, item: str) -> None:
    """Applies one `a.b.c=value` override in place, keeping the type of the old value."""
    key, sep, raw = item.partition("=")
    if not sep:
        raise ConfigError(f"--config.{item}: an override needs KEY=VALUE")
    *parents, leaf = key.split(".")
    node = config
    for i, name in enumerate(parents):
        if name not in node:
            raise ConfigError(f"--config.{key}: no key '{'.'.join(parents[: i + 1])}' in config")
        node = node[name]
    if leaf not in node:
        raise ConfigError(f"--config.{key}: no such key in config")
    old = node[leaf]
    try:
        node[leaf] = _parse_like(raw, old)
    except (ValueError, TypeError, SyntaxError) as e:
        raise ConfigError(f"--config.{key}={raw}: {e}") from e


def _parse_like(raw: str, old):
    if isinstance(old, bool):
        lowered = raw.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError("expected a boolean")
    if isinstance(old, int):
        return int(raw)
    if isinstance(old, float):
        return float(raw)
    if isinstance(old, str):
        return raw
    if old is None:
        # No type to follow: a Python literal if it is one, else the string itself.
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
    value = ast.literal_eval(raw)
    if isinstance(old, tuple | list) and not isinstance(value, tuple | list):
        raise ValueError(f"expected a {type(old).__name__}")
    return type(old)(value) if isinstance(old, tuple | list) else value
