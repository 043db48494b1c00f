"""Experiment configs: `--config=configs/FILE.py[:ARG]` plus `--config.KEY=VALUE` overrides.

A config file is an ml_collections module with `get_config(arg=None) -> ConfigDict`. It is loaded
by path; when its folder is a package (it has an `__init__.py`, as `configs/` does) it is
imported as a module of that package, so config files import each other with relative imports
(`from .common import base_config`) and nothing edits `sys.path`.

Overrides go through ml_collections' own flag parsing (`config_flags.DEFINE_config_dict` on a
private absl `FlagValues`, config locked): each value is parsed as the type of the field it
replaces, so `--config.optim.learning_rate=3e-6` stays a float, and an optional field declared
with `config_dict.placeholder(TYPE)` takes that type. What ml_collections reports as a raw
`AttributeError` or a multi-line flag error becomes one line naming the key. The ConfigDict stops
at the entry point: library functions take typed arguments.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import ml_collections
from absl import flags
from ml_collections import config_flags

from corea_jax.errors import CoreaError


class ConfigError(CoreaError):
    """A config file or override that cannot be used; the message names the file or key."""


def load_config(spec: str, overrides: Sequence[str] | None = None) -> ml_collections.ConfigDict:
    """Loads `path/to/file.py[:arg]` and applies overrides.

    Args:
      spec: the config file, optionally followed by `:ARG` for its `get_config(arg)`.
      overrides: `KEY=VALUE` items (dotted keys), or the raw command-line words
        (`--config.KEY=VALUE`, `--config.KEY VALUE`, `--config.FLAG` for a boolean).
    """
    path_str, _, arg = spec.partition(":")
    path = Path(path_str)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        module = _import_config_module(path)
    except Exception as e:  # the config file is user code: report where it failed
        raise ConfigError(f"{path}: failed to import: {type(e).__name__}: {e}") from e
    get_config = getattr(module, "get_config", None)
    if get_config is None:
        raise ConfigError(f"{path}: has no get_config() function")
    takes_arg = bool(inspect.signature(get_config).parameters)
    if arg and not takes_arg:
        raise ConfigError(f"{path}: get_config() takes no argument but ':{arg}' was given")
    try:
        config = get_config(arg or None) if takes_arg else get_config()
    except ConfigError:
        raise
    except Exception as e:  # e.g. an unknown ':ARG': one line naming the file, not a traceback
        shown = f":{arg}" if arg else ""
        raise ConfigError(f"{path}{shown}: get_config failed: {type(e).__name__}: {e}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() must return an ml_collections.ConfigDict")
    return apply_overrides(config, overrides or [])


def _import_config_module(path: Path) -> ModuleType:
    """The config file as a module; inside a package folder, as a module of that package."""
    folder = path.resolve().parent
    if not (folder / "__init__.py").is_file():
        spec = importlib.util.spec_from_file_location(f"_corea_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    # A private package name per folder: two checkouts' configs/ never shadow each other, and
    # a user's own `configs` package (if any) is left alone.
    package = "_corea_configs_" + hashlib.sha256(str(folder).encode()).hexdigest()[:12]
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package, folder / "__init__.py", submodule_search_locations=[str(folder)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[package] = module
        spec.loader.exec_module(module)
    return importlib.import_module(f"{package}.{path.stem}")


def _argv(overrides: Sequence[str]) -> list[str]:
    argv = []
    for item in overrides:
        if item.startswith("-"):
            argv.append(item)
        elif argv and argv[-1].startswith("--config.") and "=" not in argv[-1] + item:
            argv.append(item)  # the VALUE of a `--config.KEY VALUE` pair
        elif "=" not in item:
            raise ConfigError(f"--config.{item}: an override needs KEY=VALUE")
        else:
            argv.append(f"--config.{item}")
    return argv


def apply_overrides(
    config: ml_collections.ConfigDict, overrides: Sequence[str]
) -> ml_collections.ConfigDict:
    """`config` with the overrides applied (see `load_config`); the result is locked."""
    argv = _argv(overrides)
    for word in argv:
        if word.startswith("-") and not word.startswith("--config."):
            raise ConfigError(f"{word}: not a --config.KEY=VALUE override")
        if word.startswith("--config."):
            _check_key(config, word[len("--config.") :].split("=", 1)[0])
    values = flags.FlagValues()
    command_line = ["corea-jax", *argv]
    try:
        config_flags.DEFINE_config_dict(
            "config", config, flag_values=values, lock_config=True, sys_argv=command_line
        )
        values(command_line)
    except (flags.Error, ValueError, TypeError) as e:  # UnsupportedOperationError is one
        message = " ".join(str(e).split())
        raise ConfigError(message.removeprefix("flag ")) from None
    return values.config


def _check_key(config: ml_collections.ConfigDict, key: str) -> None:
    """Raises naming the first missing part of a dotted key."""
    *parents, leaf = key.split(".")
    node = config
    for i, name in enumerate(parents):
        if not isinstance(node, ml_collections.ConfigDict) or name not in node:
            raise ConfigError(f"--config.{key}: no key '{'.'.join(parents[: i + 1])}' in config")
        node = node[name]
    if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
        raise ConfigError(f"--config.{key}: no such key in config")
