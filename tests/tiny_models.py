"""Tiny random checkpoints for tests: HF/PyTorch ones (reference) and ones written by us."""

from __future__ import annotations

from pathlib import Path

import jax.numpy as jnp
import numpy as np
from flax import nnx

from corea_jax.models import CausalLM, ModelConfig, RopeScaling, save_model

TINY = {
    # Qwen2: tied embeddings, q/k/v biases, GQA 4:1, default RoPE.
    "qwen2": ModelConfig(
        family="qwen2",
        vocab_size=512,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=1,
        head_dim=16,
        rms_norm_eps=1e-6,
        rope_theta=1_000_000.0,
        qkv_bias=True,
        tie_word_embeddings=True,
        max_position_embeddings=512,
        bos_token_id=1,
        eos_token_id=2,
    ),
    # Llama 3: untied head, GQA 2:1, llama3 RoPE scaling with all three frequency bands in use.
    "llama": ModelConfig(
        family="llama",
        vocab_size=512,
        hidden_size=64,
        intermediate_size=160,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
        rms_norm_eps=1e-5,
        rope_theta=10_000.0,
        rope_scaling=RopeScaling(
            kind="llama3",
            factor=8.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=8192,
        ),
        tie_word_embeddings=False,
        max_position_embeddings=16384,
        bos_token_id=1,
        eos_token_id=2,
    ),
}


def make_hf_checkpoint(family: str, out_dir: Path, seed: int = 0) -> Path:
    """A random transformers model of the tiny config, saved with `save_pretrained`.

    Weights are redrawn with a larger scale than HF's init (and norms/biases away from 1/0), so
    logits are O(1) and every parameter, including biases and norm scales, affects them.
    """
    import torch
    import transformers

    cfg = TINY[family]
    hf_config = transformers.AutoConfig.for_model(**cfg.to_hf_config("float32"))
    hf_config._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = transformers.AutoModelForCausalLM.from_config(hf_config, attn_implementation="eager")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                p.copy_(0.15 * torch.randn_like(p))
    model.save_pretrained(out_dir, safe_serialization=True)
    return out_dir


def make_jax_checkpoint(family: str, out_dir: Path, seed: int = 0, **kwargs) -> Path:
    """A random CausalLM of the tiny config written by our own exporter (no PyTorch needed)."""
    model = CausalLM(TINY[family], rngs=nnx.Rngs(seed))
    return save_model(model, out_dir, **kwargs)


def padded_batch(vocab: int, lengths: list[int], seed: int = 0):
    """Left-padded random token batch: tokens [B, T] int32 and valid [B, T] bool."""
    rng = np.random.default_rng(seed)
    t = max(lengths)
    tokens = rng.integers(3, vocab, size=(len(lengths), t)).astype(np.int32)
    valid = np.arange(t)[None, :] >= (t - np.asarray(lengths))[:, None]
    tokens = np.where(valid, tokens, 0)
    return jnp.asarray(tokens), jnp.asarray(valid)


CHATML_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(out_dir: Path, vocab_size: int = 512) -> Path:
    """A byte-level BPE tokenizer with a ChatML template, saved in the HF layout.

    Token ids 0, 1, 2 are <|pad|>, <|im_start|>, <|im_end|> (the tiny configs' eos is 2).
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = ["What is 12 + 30? <think>12 + 30 = 42</think><answer>42</answer>"] * 20
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|im_end|>",
        chat_template=CHATML_TEMPLATE,
    )
    fast.save_pretrained(out_dir)
    return out_dir


def _header_blob(header) -> bytes:
    import json
    import struct

    blob = json.dumps(header).encode()
    return struct.pack("<Q", len(blob)) + blob


# Ways a .safetensors file can be broken on disk, each a function of the good file's bytes.
CORRUPTIONS = {
    "empty": lambda good: b"",
    "cut inside the header": lambda good: good[:20],
    "cut inside the tensor data": lambda good: good[: len(good) // 2],
    "last tensor bytes missing": lambda good: good[:-4],
    "garbage header": lambda good: b"\x10\x00\x00\x00\x00\x00\x00\x00\xff\xfe garbage bytes",
    "header size past the end": lambda good: b"\xff" * 8 + good[8:],
    "header not an object": lambda good: _header_blob([1, 2]),
    "malformed entry": lambda good: _header_blob({"w": {"dtype": "F32", "shape": "4"}}),
    "offsets past the data": lambda good: _header_blob(
        {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}
    ),
}
