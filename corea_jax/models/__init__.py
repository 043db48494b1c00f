"""Flax NNX ports of the SLM backbones (Qwen2.5, Llama 3) and HF checkpoint I/O."""

from corea_jax.errors import CoreaError
from corea_jax.models import llama3, qwen2
from corea_jax.models.compute import ComputeConfig
from corea_jax.models.config import ModelConfig, RopeScaling
from corea_jax.models.loading import (
    abstract_model,
    checkpoint_tensors,
    load_model,
    param_shardings,
    save_model,
)
from corea_jax.models.logprobs import chunked_token_logprobs, token_entropy
from corea_jax.models.tokenizer import load_tokenizer, render_chat
from corea_jax.models.transformer import (
    CausalLM,
    LayerCache,
    causal_mask,
    init_cache,
    positions_from_mask,
)

PRESETS: dict[str, ModelConfig] = {**qwen2.PRESETS, **llama3.PRESETS}
PUBLISHED_NUM_PARAMS: dict[str, int] = {
    **qwen2.PUBLISHED_NUM_PARAMS,
    **llama3.PUBLISHED_NUM_PARAMS,
}


def preset(hf_id: str) -> ModelConfig:
    """The architecture of a published checkpoint, by its HF repo id."""
    if hf_id not in PRESETS:
        raise CoreaError(f"unknown model preset {hf_id!r}; known: {', '.join(PRESETS)}")
    return PRESETS[hf_id]


__all__ = [
    "PRESETS",
    "PUBLISHED_NUM_PARAMS",
    "CausalLM",
    "ComputeConfig",
    "LayerCache",
    "ModelConfig",
    "RopeScaling",
    "abstract_model",
    "causal_mask",
    "checkpoint_tensors",
    "chunked_token_logprobs",
    "init_cache",
    "load_model",
    "load_tokenizer",
    "param_shardings",
    "positions_from_mask",
    "preset",
    "render_chat",
    "save_model",
    "token_entropy",
]
