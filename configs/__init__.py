"""Experiment configs (ml_collections files with `get_config(arg=None)`), one package.

`corea-jax ... --config=configs/FILE.py[:ARG]` imports FILE as a module of this package
(corea_jax/cli/config.py), so the files share defaults through relative imports
(`from .common import base_config`) instead of editing `sys.path`.
"""
