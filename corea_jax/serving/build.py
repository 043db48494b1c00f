"""From a `ServeConfig` to a running service: model, tokenizer, engine, upstream, tau.

The one place `corea-jax serve` and the benchmark assemble the server; tests build
`CascadeService` directly with a stand-in engine.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax.numpy as jnp

from corea_jax.errors import CoreaError
from corea_jax.serving.lanes import make_engine
from corea_jax.serving.metrics import ServerMetrics
from corea_jax.serving.service import CascadeService
from corea_jax.serving.settings import DemoUpstream, ServeConfig
from corea_jax.serving.upstream import Upstream


def demo_backend(llm, demo: DemoUpstream):
    """The SIMULATED LLM of the demo: it knows the synthetic task's answers (module
    `corea_jax.testing.simulated_llm`), right as often as `LLMConfig.simulated_accuracy_of`
    says (configs/serve.py:demo: as the demo's, by the question's digit work)."""
    from corea_jax.data import synthetic
    from corea_jax.testing.simulated_llm import (
        SimulatedChatBackend,
        gold_answer_policy,
        simulated_identity,
    )

    by_level = dict(llm.simulated_accuracy_by_level)
    task = synthetic.SyntheticTask(seed=llm.simulated_seed)
    answers = {}
    for split in demo.splits:
        for r in synthetic.make_split(task, split, demo.size):
            text = synthetic.SYNTHETIC_PROMPTS.user_text(r)
            answers[text] = (r.answer, r.kind, len(r.choices), llm.simulated_accuracy_of(r))
    policy = gold_answer_policy(answers, llm.simulated_accuracy, llm.simulated_seed)
    difficulty = (llm.simulated_difficulty_decay, llm.simulated_difficulty_ceiling)
    identity = simulated_identity(llm.simulated_accuracy, llm.simulated_seed, by_level, difficulty)
    return SimulatedChatBackend(policy, llm.model, identity)


def simulated_backend(llm):
    """A SIMULATED LLM that knows no answers (every reply wrong): wiring checks only."""
    from corea_jax.testing.simulated_llm import (
        SimulatedChatBackend,
        gold_answer_policy,
        simulated_identity,
    )

    policy = gold_answer_policy({}, llm.simulated_accuracy, llm.simulated_seed)
    identity = simulated_identity(llm.simulated_accuracy, llm.simulated_seed)
    return SimulatedChatBackend(policy, llm.model, identity)


def build_service(config: ServeConfig, *, engine=None, backend=None) -> CascadeService:
    """Loads the SLM and its tokenizer, builds the engine (unless given), the upstream client
    (the SIMULATED LLM when `llm.simulated`) and resolves tau. Prints what it serves."""
    from corea_jax.models import encode_text, load_model, load_tokenizer
    from corea_jax.sampling import Sampler

    slm_dir = Path(config.slm.path)
    if not config.slm.path or not (slm_dir / "config.json").is_file():
        hint = f"; create it with: {config.slm.missing_hint}" if config.slm.missing_hint else ""
        raise CoreaError(f"slm.path: no model directory at {str(slm_dir)!r}{hint}")
    tau, tau_source = config.tau.resolve()
    tokenizer = load_tokenizer(slm_dir)
    metrics = ServerMetrics()
    if engine is None:
        model = load_model(slm_dir, dtype=jnp.dtype(config.engine.dtype))
        eos = Sampler.for_tokenizer(model, tokenizer).eos_ids  # the one place EOS is decided
        engine = make_engine(
            model,
            lambda ids: tokenizer.decode(ids, skip_special_tokens=True),
            eos,
            config.engine,
            on_segment=metrics.segment,
        )
    if backend is None and config.llm.simulated:
        backend = demo_backend(config.llm, config.demo) if config.demo.enabled else (
            simulated_backend(config.llm))  # fmt: skip
    upstream = Upstream(
        config.llm,
        timeout_s=config.server.upstream_timeout_s,
        concurrency=config.server.upstream_concurrency,
        backend=backend,
        count_tokens=lambda s: len(encode_text(tokenizer, s)),
    )
    label = "SIMULATED LLM (in-process, no real model is measured)" if upstream.simulated else (
        upstream.describe())  # fmt: skip
    print(
        f"corea-jax serve: SLM {slm_dir} as {config.slm.served_name!r}; tau {tau:g} from "
        f"{tau_source}; upstream {label}; failure policy {config.server.upstream_failure}",
        file=sys.stderr,
    )
    return CascadeService(config, engine, tokenizer, upstream, tau, tau_source, metrics)
