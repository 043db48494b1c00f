"""Qwen2.5 presets (the paper's SLMs and its LLM). Qwen2 = the shared decoder with q/k/v biases.

Values are those of the published `config.json` of each repo; `published_num_params` is the size
the hub reports for its safetensors, which a test checks against `jax.eval_shape`.
"""

from corea_jax.models.config import ModelConfig


def _qwen25(d, f, layers, heads, kv_heads, vocab=151_936, tied=True):
    return ModelConfig(
        family="qwen2",
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=f,
        num_layers=layers,
        num_heads=heads,
        num_kv_heads=kv_heads,
        head_dim=d // heads,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        qkv_bias=True,
        tie_word_embeddings=tied,
        max_position_embeddings=32_768,
        bos_token_id=151_643,
        eos_token_id=151_645,
    )


PRESETS = {
    "Qwen/Qwen2.5-0.5B-Instruct": _qwen25(896, 4864, 24, 14, 2),
    "Qwen/Qwen2.5-1.5B-Instruct": _qwen25(1536, 8960, 28, 12, 2),
    "Qwen/Qwen2.5-3B-Instruct": _qwen25(2048, 11008, 36, 16, 2),
    "Qwen/Qwen2.5-7B-Instruct": _qwen25(3584, 18944, 28, 28, 4, vocab=152_064, tied=False),
    "Qwen/Qwen2.5-32B-Instruct": _qwen25(5120, 27648, 64, 40, 8, vocab=152_064, tied=False),
}

PUBLISHED_NUM_PARAMS = {
    "Qwen/Qwen2.5-0.5B-Instruct": 494_032_768,
    "Qwen/Qwen2.5-1.5B-Instruct": 1_543_714_304,
    "Qwen/Qwen2.5-3B-Instruct": 3_085_938_688,
    "Qwen/Qwen2.5-7B-Instruct": 7_615_616_512,
    "Qwen/Qwen2.5-32B-Instruct": 32_763_876_352,
}
