"""corea-jax: COREA (confidence-calibrated SLM/LLM cascades trained with GRPO) in JAX.

The packages, from the core outwards:

  models/    one shared decoder for Qwen2.5 and Llama 3 (presets keyed by HF id), safetensors
             in and out, remat / fused attention / chunked log-probs (`ComputeConfig`)
  sampling/  the jitted KV-cache sampler and the sampling methods
  scoring/   completion text -> answer, confidence, grade (`score_texts`), metrics, bootstrap
  rl/        rewards, advantages, the GRPO loss, the jitted update and the training loop
  data/      benchmark readers, leak-free splits, prompts, the synthetic task, grain / TFDS
  probes/    linear probes of the SLM's hidden states (the probe and router signals)
  cascade/   the SLM -> LLM cascade: LLM client, cost, signals, tau sweep and rules, reports,
             `corea-jax compare` (the paper's table)
  serving/   `corea-jax serve`: the cascade as an OpenAI-compatible endpoint
  parallel/  meshes and shardings, multi-host start-up, the ahead-of-time fit check
  testing/   the clearly labelled SIMULATED LLM (in-process backend and loopback server)
  cli/       the console script, config loading, one module per command, the demo driver

and modules `progress` (the progress line of long stages), `errors`, `atomic_files`,
`sections`.

Axis letters (B prompts, G samples per prompt, R = B x G rows, T, S, P, C, D, F, N, K, Q, H, V,
L) are defined once, in the docstring of `corea_jax.models.transformer`.

The names below are what most users call; they are imported on first use, so `import corea_jax`
stays cheap (the CLI and the grading workers import it too).
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    # models and sampling
    "load_model": "corea_jax.models",
    "save_model": "corea_jax.models",
    "load_tokenizer": "corea_jax.models",
    "ModelConfig": "corea_jax.models",
    "ComputeConfig": "corea_jax.models",
    "Sampler": "corea_jax.sampling",
    "make_method": "corea_jax.sampling",
    # scoring
    "score_texts": "corea_jax.scoring",
    "ScoreItem": "corea_jax.scoring",
    "bootstrap": "corea_jax.scoring",
    "paired_difference": "corea_jax.scoring",
    # data
    "read_dataset": "corea_jax.data",
    "Record": "corea_jax.data",
    # configs and entry points
    "load_config": "corea_jax.cli.config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'corea_jax' has no attribute {name!r}")
