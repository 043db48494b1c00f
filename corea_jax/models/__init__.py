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
from corea_jax.models.tokenizer import encode_text, load_tokenizer, render_chat
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


# What makes two checkpoints the same architecture (eos ids, max positions and the like may
# differ between a base model and its instruct fine-tune, or after a tokenizer change).
ARCHITECTURE_FIELDS = ("family", "vocab_size", "hidden_size", "intermediate_size", "num_layers",
                       "num_heads", "num_kv_heads", "head_dim", "qkv_bias", "tie_word_embeddings",
                       "rope_theta", "rope_scaling")  # fmt: skip


def check_preset(hf_id: str, config: ModelConfig, where: str) -> None:
    """Raises naming the first field where a loaded checkpoint's `config` differs from the
    preset of `hf_id` (a run config that says Qwen2.5-7B but points at another model)."""
    expected = preset(hf_id)
    for field in ARCHITECTURE_FIELDS:
        got, want = getattr(config, field), getattr(expected, field)
        if got != want:
            raise CoreaError(
                f"model.hf_id={hf_id!r}: {where} has {field}={got!r}, the preset {want!r}; "
                "point model.path at that checkpoint, or set model.hf_id to the one you load"
            )


__all__ = [
    "ARCHITECTURE_FIELDS",
    "PRESETS",
    "PUBLISHED_NUM_PARAMS",
    "CausalLM",
    "ComputeConfig",
    "LayerCache",
    "ModelConfig",
    "RopeScaling",
    "abstract_model",
    "causal_mask",
    "check_preset",
    "checkpoint_tensors",
    "chunked_token_logprobs",
    "init_cache",
    "load_model",
    "encode_text",
    "load_tokenizer",
    "param_shardings",
    "positions_from_mask",
    "preset",
    "render_chat",
    "save_model",
    "token_entropy",
]
