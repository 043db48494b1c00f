"""Shared defaults of the evaluation configs (`corea-jax evaluate` / `corea-jax cascade`).

Each section is built from its settings dataclass's defaults (corea_jax/cascade/settings.py:
`slm` = `SLMConfig`, `llm` = `LLMConfig`, `tau` = `TauConfig`, `signals` = `SignalsConfig`,
`report` = `ReportConfig`, `grading` = `GraderConfig`; `datasets.NAME` = `QuestionSource`),
where each default and its [open] reason live; its keys are the dataclass's fields, and the
entry point builds the typed settings with `CascadeConfig.from_config`. Each
`configs/eval_*.py` changes only what it must, and says why.

Data paths default to `../shared/data` beside the checkout, or `$COREA_DATA` when set.
"""

import dataclasses
import os

import ml_collections
from ml_collections import config_dict

from corea_jax.cascade.settings import (
    CascadeConfig,
    GraderConfig,
    LLMConfig,
    ReportConfig,
    SignalsConfig,
    TauConfig,
)
from corea_jax.cascade.slm_answers import QuestionSource, SLMConfig

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("COREA_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))


def _source(reader: str, path: str = "", **kwargs) -> dict:
    """A `datasets.NAME` section: reader (corea_jax.data.read_dataset name or "synthetic"),
    file, split (deepmath / synthetic), limit (0 = all)."""
    section = dataclasses.asdict(QuestionSource("", reader, path, **kwargs))
    del section["name"]  # the section's key
    return section


DATASETS = {
    "deepmath500": _source("deepmath", f"{DATA}/deepmath/deepmath103k_subset.jsonl"),
    "math500": _source("math500", f"{DATA}/math500/test.jsonl"),
    "gsm8k": _source("gsm8k", f"{DATA}/gsm8k/test.jsonl"),
    "olympiadbench": _source("olympiadbench", f"{DATA}/olympiadbench/OE_TO_maths_en_COMP.jsonl"),
    # GPQA is not redistributed: "" skips it with a message; set a path to gpqa_main.csv.
    "gpqa": _source("gpqa", ""),
    "commonsenseqa": _source("commonsenseqa", f"{DATA}/commonsenseqa/dev_rand_split.jsonl"),
}


def eval_config(datasets) -> ml_collections.ConfigDict:
    """The defaults, with `datasets` (names of `DATASETS`) to evaluate. Nothing is overridden:
    the dataclasses' defaults are the paper's setting (greedy 2048-token SLM answers, the
    Qwen2.5-32B LLM behind an OpenAI-compatible endpoint, tau by the paper's rule first)."""
    c = ml_collections.ConfigDict()
    c.seed = CascadeConfig.seed  # seeds the LLM client's backoff jitter
    c.output_format = CascadeConfig.output_format  # parsing.FORMATS; choice questions: a letter
    c.datasets = {name: dict(DATASETS[name]) for name in datasets}
    c.slm = dataclasses.asdict(SLMConfig())
    # Billing both models alike (LLMConfig's docstring): the LLM is sent the SLM's own messages
    # (llm.messages="slm"), a simulated LLM is counted with the SLM's tokenizer and a real one
    # by its endpoint's usage (llm.usage="auto"), and a simulated LLM writes the synthetic
    # task's reference traces (llm.simulated_reply="trace").
    c.llm = dataclasses.asdict(LLMConfig())
    # (model, input USD / 1M tokens, output USD / 1M tokens), added to / overriding
    # corea_jax.cascade.DEFAULT_PRICES (assumed 2025 serverless list prices).
    c.prices = CascadeConfig.prices
    c.tau = dataclasses.asdict(TauConfig())
    c.tau.fixed = config_dict.placeholder(float)  # None = sweep; typed so --config.tau.fixed=0.7
    c.signals = dataclasses.asdict(SignalsConfig())
    c.report = dataclasses.asdict(ReportConfig())
    c.grading = dataclasses.asdict(GraderConfig())
    return c


def smoke(c: ml_collections.ConfigDict, per_dataset: int = 6) -> ml_collections.ConfigDict:
    """A CPU run in well under a minute: a tiny random model, a few questions per dataset,
    and the SIMULATED LLM (in-process). It measures nothing; it proves the wiring."""
    c.slm.scratch.enabled = True
    c.slm.dtype = "float32"  # bfloat16 matmuls are slow on a CPU
    c.slm.max_new_tokens = 8  # the random model's answers are noise; keep them short
    c.slm.batch_size = 8
    for name in c.datasets:
        c.datasets[name].limit = per_dataset
    c.llm.simulated = True
    c.llm.concurrency = 4
    c.grading.workers = 1  # a few short answers: one worker starts faster than four
    return c
