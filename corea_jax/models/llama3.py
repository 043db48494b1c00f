"""Llama 3.x presets. Llama 3 = the shared decoder with `llama3` RoPE scaling, no biases.

Values are those of the published `config.json` of each repo; `published_num_params` is the size
the hub reports for its safetensors, which a test checks against `jax.eval_shape`.
"""

from corea_jax.models.config import ModelConfig, RopeScaling


def _llama3(d, f, layers, heads, kv_heads, head_dim, factor, tied):
    return ModelConfig(
        family="llama",
        vocab_size=128_256,
        hidden_size=d,
        intermediate_size=f,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=head_dim,
        rms_norm_eps=1e-5,
        rope_theta=500_000.0,
        rope_scaling=RopeScaling(kind="llama3", factor=factor),
        tie_word_embeddings=tied,
        max_position_embeddings=131_072,
        bos_token_id=128_000,
        eos_token_id=(128_001, 128_008, 128_009),
    )


PRESETS = {
    "meta-llama/Llama-3.2-1B-Instruct": _llama3(2048, 8192, 16, 32, 8, 64, 32.0, tied=True),
    "meta-llama/Llama-3.2-3B-Instruct": _llama3(3072, 8192, 28, 24, 8, 128, 32.0, tied=True),
    "meta-llama/Llama-3.1-8B-Instruct": _llama3(4096, 14336, 32, 32, 8, 128, 8.0, tied=False),
}

PUBLISHED_NUM_PARAMS = {
    "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
    "meta-llama/Llama-3.2-3B-Instruct": 3_212_749_824,
    "meta-llama/Llama-3.1-8B-Instruct": 8_030_261_248,
}
