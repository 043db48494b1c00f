r"""`corea-jax serve`: a trained SLM and its tau as one OpenAI-compatible endpoint.

    corea-jax serve --config=configs/serve.py --config.slm.path=RUN/export \
        --config.tau.summary=CASCADE_DIR/summary.json \
        --config.llm.base_url=http://HOST:8000/v1 --config.llm.model=Qwen/Qwen2.5-32B-Instruct
    corea-jax serve --config=configs/serve.py:demo                   # after `corea-jax demo`
    corea-jax serve --config=configs/serve.py:demo,/tmp/demo_workdir # its --workdir

Serves no paper table: it is the deployment of the paper's system (PAPER.md, "The system": the
SLM answers, a confidence below tau defers to the LLM). Tau is the one `corea-jax cascade`
chose on its calibration split by `tau.rule` (the paper's rule "llm_pass": tau = the LLM's
pass@1) when `tau.summary` is set, else `tau.value`.

Each section is built from its settings dataclass (corea_jax/serving/settings.py: `slm` =
`SLMServeConfig`, `engine` = `EngineConfig`, `llm` = corea_jax.cascade `LLMConfig`, `tau` =
`TauSource`, `server` = `ServerConfig`, `demo` = `DemoUpstream`), where each default and its
[open] reason live; this file changes only what differs.

`:demo` serves the demo's COREA policy of its first seed (`DIR/policies/corea-s0/export`,
default DIR workdirs/demo; `:demo,DIR,SEED` another seed) with the tau its compare stage chose
(`DIR/compare/slms/corea-s0/summary.json`), and a clearly labelled SIMULATED LLM upstream
in-process that knows the synthetic task's answers (calibration and test splits), right as
often as the demo's simulated LLM (configs/demo.py: by the question's digit work). A request
that names no temperature is sampled at the demo's evaluation temperature, the one its tau was
chosen at (greedy, the demo's policies state one value and nothing would be deferred).
"""

import dataclasses

import ml_collections

from corea_jax.cascade.settings import LLMConfig
from corea_jax.serving.engine import EngineConfig
from corea_jax.serving.settings import (
    DemoUpstream,
    ServerConfig,
    SLMServeConfig,
    TauSource,
)

from .demo import get_config as demo_config

DEMO_WORKDIR = "workdirs/demo"


def _section(obj) -> dict:
    return dataclasses.asdict(obj)


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.slm = _section(SLMServeConfig())
    c.engine = _section(EngineConfig())
    c.llm = _section(LLMConfig())
    c.llm.simulated_accuracy_by_level = {}
    c.tau = _section(TauSource())
    c.server = _section(ServerConfig())
    c.demo = _section(DemoUpstream())
    c.prices = ()
    c.server.gc_freeze = True  # a process that only serves (ServerConfig)

    name, _, rest = (arg or "").partition(",")
    if name == "demo":
        workdir, _, seed = rest.partition(",")
        workdir = workdir or DEMO_WORKDIR
        slm = f"corea-s{int(seed or 0)}"  # corea_jax.demo.tables.slm_name
        c.slm.path = f"{workdir}/policies/{slm}/export"
        c.slm.missing_hint = f"corea-jax demo --workdir {workdir}"
        c.slm.system = ""  # the demo's SLM was trained on the bare question (SYNTHETIC_PROMPTS)
        c.tau.summary = f"{workdir}/compare/slms/{slm}/summary.json"
        c.tau.rule = "llm_pass"
        # The demo's answers are 20-74 tokens (its budget: 80, configs/demo.py) after a prompt
        # of 33-47: a prompt bucket of 48 (a padded prompt token costs a real one's prefill on
        # a CPU), a short cache (every decode step reads all of it).
        c.engine.rows = 64
        # Two lanes of 32 rows, each decoding on its own thread: XLA decodes this small model
        # on one CPU core per program (corea_jax/serving/lanes.py), and the benchmark machine
        # has two.
        c.engine.lanes = 2
        # Fine widths: on this CPU a decode step of the demo SLM costs about 90 us + 18 us per
        # row of width, live or padding (benchmarks/serve.py's README section), so a width
        # close to the live rows pays; each width is one more compile at warm-up. Each lane
        # clips them to its 32 rows (a lane holds about 12 live rows at 32 clients).
        c.engine.row_buckets = (1, 2, 4, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 56, 64)
        c.engine.segment = 16
        c.engine.max_prompt_tokens = 64
        c.engine.prompt_buckets = (48,)
        c.engine.max_new_tokens = 80
        c.server.default_max_tokens = 80
        c.llm.simulated = True
        c.llm.system = ""
        experiment = demo_config()
        # tau was chosen on answers sampled at the demo's evaluation temperature (its
        # rollout temperature, matched decoding): a request that names none is served so.
        c.server.default_temperature = experiment.cascade.slm.temperature
        demo_llm = experiment.cascade.llm
        c.llm.simulated_difficulty_decay = demo_llm.simulated_difficulty_decay
        c.llm.simulated_difficulty_ceiling = demo_llm.simulated_difficulty_ceiling
        c.demo.enabled = True
        c.demo.size = 400
    elif name:
        raise ValueError(
            f"configs/serve.py: unknown argument {arg!r} (use :demo, :demo,DIR or :demo,DIR,SEED)"
        )
    return c
