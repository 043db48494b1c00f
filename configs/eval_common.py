"""Shared defaults of the evaluation configs (`corea-jax evaluate` / `corea-jax cascade`).

Each `configs/eval_*.py` changes only what it must. The ConfigDict stops at the entry point
(corea_jax/cascade/pipeline.py turns it into typed settings); the [open] defaults are documented
there and in corea_jax/cascade/{sweep,cost,endpoint}.py.

Data paths default to `../shared/data` beside the checkout, or `$COREA_DATA` when set.
"""

import os

import ml_collections

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get("COREA_DATA", os.path.join(os.path.dirname(REPO), "shared", "data"))

# reader (corea_jax.data.read_dataset name or "synthetic"), file, split (deepmath / synthetic)
DATASETS = {
    "deepmath500": dict(reader="deepmath", path=f"{DATA}/deepmath/deepmath103k_subset.jsonl",
                        split="test", limit=0),
    "math500": dict(reader="math500", path=f"{DATA}/math500/test.jsonl", split="test", limit=0),
    "gsm8k": dict(reader="gsm8k", path=f"{DATA}/gsm8k/test.jsonl", split="test", limit=0),
    "olympiadbench": dict(reader="olympiadbench", path=f"{DATA}/olympiadbench/"
                          "OE_TO_maths_en_COMP.jsonl", split="test", limit=0),
    # GPQA is not redistributed: "" skips it with a message; set a path to gpqa_main.csv.
    "gpqa": dict(reader="gpqa", path="", split="test", limit=0),
    "commonsenseqa": dict(reader="commonsenseqa", path=f"{DATA}/commonsenseqa/"
                          "dev_rand_split.jsonl", split="test", limit=0),
}  # fmt: skip


def eval_config(datasets) -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.slm = dict(
        path="",  # HF model directory: Qwen2.5-7B-Instruct, or a trained run's DIR/export
        price_name="Qwen/Qwen2.5-7B-Instruct",  # the price table entry the SLM is charged at
        dtype="bfloat16",
        max_new_tokens=2048,  # the paper's response length
        temperature=0.0,  # 0 = greedy [open]
        top_k=0,  # 0 = off
        top_p=1.0,  # 1 = off
        batch_size=16,
        seed=0,
        scratch=dict(  # a random from-scratch model (smoke runs only)
            enabled=False,
            spec=dict(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                      num_kv_heads=1, vocab_size=512, split_digits=True, family="qwen2",
                      seed=0),
        ),
    )  # fmt: skip
    c.output_format = "tags"  # corea_jax.scoring.parsing.FORMATS; choice questions read a letter
    c.datasets = {name: dict(DATASETS[name]) for name in datasets}
    c.llm = dict(
        base_url="http://localhost:8000/v1",  # any OpenAI-compatible endpoint (vLLM, SGLang, ...)
        model="Qwen/Qwen2.5-32B-Instruct",
        api_key_env="OPENAI_API_KEY",  # the NAME of the env variable with the key; "" = no key
        system="",  # the LLM's system text; "" = corea_jax.data.DEFAULT_SYSTEM (same format)
        temperature=0.0,
        max_tokens=2048,
        concurrency=16,
        timeout_s=300.0,
        max_attempts=6,
        max_failed_questions=0,
        simulated=False,  # True: a SIMULATED LLM on loopback (gold answer at simulated_accuracy)
        simulated_accuracy=0.7,
        simulated_seed=0,
    )
    # (model, input USD / 1M tokens, output USD / 1M tokens), added to / overriding
    # corea_jax.cascade.DEFAULT_PRICES (assumed 2025 serverless list prices).
    c.prices = ()
    c.tau = dict(
        grid_step=0.01,
        rules=("llm_pass", "within_llm", "budget"),  # the paper's rule first
        max_drop_points=2.0,  # within_llm: pass@1 at most this many points below LLM-only
        budget=0.8,  # budget: average cost <= 0.8 x LLM-only (budget_relative) or USD/question
        budget_relative=True,
        invalid_confidence=0.0,  # a missing confidence counts as 0: defer
        calibration_fraction=0.5,  # share of each dataset's questions used to pick tau
        seed=0,
    )
    c.report = dict(bins=10)
    c.grading = dict(workers=4, time_limit_s=5.0)
    return c


def smoke(c: ml_collections.ConfigDict, per_dataset: int = 6) -> ml_collections.ConfigDict:
    """A CPU run in well under a minute: a tiny random model, a few questions per dataset,
    and the SIMULATED LLM. It measures nothing; it proves the wiring."""
    c.slm.scratch.enabled = True
    c.slm.dtype = "float32"
    c.slm.max_new_tokens = 8
    c.slm.batch_size = 8
    for name in c.datasets:
        c.datasets[name].limit = per_dataset
    c.llm.simulated = True
    c.llm.concurrency = 4
    c.grading.workers = 1
    return c
