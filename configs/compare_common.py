"""Shared shape of the `corea-jax compare` configs: the SLMs, the paper's systems, the rule.

`slms.NAME` is a HF model directory: `original` the untrained SLM (e.g. Qwen2.5-7B-Instruct),
`rlvr`, `brier`, `corea` the export/ of the GRPO runs of configs/rlcc_*.py with those reward
presets. `systems` lists (row name, SLM, signal) in the paper's naming
(corea_jax.cascade.compare.PAPER_SYSTEMS); `rule` is the tau rule the table shows (the paper's:
tau = the LLM's pass@1 on the calibration split). `cascade` is an eval config
(configs/eval_common.py): datasets, LLM, prices, tau, signals (probe/router fitting), grading.
"""

import ml_collections

from corea_jax.cascade.compare import PAPER_SYSTEMS

from .eval_common import eval_config, smoke


def compare_config(datasets, arg=None) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.slms = {"original": "", "rlvr": "", "brier": "", "corea": ""}
    c.systems = PAPER_SYSTEMS
    c.rule = "llm_pass"
    c.cascade = eval_config(datasets)
    if arg == "smoke":
        # Tiny random SLMs (their answers are noise: the probe and router cannot be fitted
        # and say so) against the SIMULATED LLM: the wiring, on a CPU, in about a minute.
        c.cascade = smoke(c.cascade, per_dataset=4)
    elif arg:
        raise ValueError(f"unknown config argument {arg!r} (use :smoke)")
    return c
