"""A small model built from scratch as a real HF model directory (tokenizer included).

For offline work (tests, the smoke config, the demo) where no pretrained weights can be
downloaded: a byte-level BPE tokenizer is trained with the `tokenizers` library on the task's own
text, given its family's chat template, and saved beside a randomly initialised model of that
family. The result loads with `load_model` / `load_tokenizer` and with
transformers, like any downloaded checkpoint.

Two families: "qwen2" (q/k/v biases, tied embeddings, ChatML; special tokens in id order
`<|endoftext|>` (padding), `<|im_start|>`, `<|im_end|>` (EOS)) and "llama" (Llama 3's layout: no
biases, untied head, rope theta 500000, its header/`<|eot_id|>` chat template; special tokens
`<|end_of_text|>` (padding), `<|begin_of_text|>` (BOS), `<|start_header_id|>`,
`<|end_header_id|>`, `<|eot_id|>` (EOS)).
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path

from flax import nnx

from corea_jax.errors import CoreaError
from corea_jax.models.config import ModelConfig
from corea_jax.models.loading import save_model
from corea_jax.models.transformer import CausalLM

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
LLAMA3_SPECIAL_TOKENS = (
    "<|end_of_text|>", "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
    "<|eot_id|>",
)  # fmt: skip
LLAMA3_TEMPLATE = (
    "<|begin_of_text|>{% for message in messages %}<|start_header_id|>{{ message['role'] }}"
    "<|end_header_id|>\n\n{{ message['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
# family -> (special tokens: padding first, EOS last; chat template)
_TOKENS = {
    "qwen2": (SPECIAL_TOKENS, CHATML_TEMPLATE),
    "llama": (LLAMA3_SPECIAL_TOKENS, LLAMA3_TEMPLATE),
}


@dataclasses.dataclass(frozen=True)
class ScratchModel:
    """Shape of the from-scratch model; the vocabulary size comes from the trained tokenizer."""

    hidden_size: int = 128
    intermediate_size: int = 384
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    vocab_size: int = 512  # BPE target size (the tokenizer may stop short of it)
    seed: int = 0
    # Numbers are split into single digits before BPE, as Qwen2's and Llama 3's pre-tokenizers
    # do: BPE merges of frequent numbers ("34", "127") would make every sum a table lookup the
    # tiny model cannot learn. False merges digits like any other bytes.
    split_digits: bool = True
    family: str = "qwen2"  # "qwen2" | "llama" (see the module docstring)


def train_tokenizer(
    texts: Iterable[str],
    out_dir: Path,
    vocab_size: int = 512,
    split_digits: bool = True,
    family: str = "qwen2",
):
    """Trains a byte-level BPE tokenizer on `texts` and saves it (HF layout) to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    if family not in _TOKENS:
        raise CoreaError(f"scratch model family {family!r}: expected one of {sorted(_TOKENS)}")
    special, template = _TOKENS[family]
    tok = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.pre_tokenizer = (
        pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
        if split_digits
        else byte_level
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token=special[0],
        eos_token=special[-1],
        chat_template=template,
    )
    fast.save_pretrained(out_dir)
    return fast


def build_scratch_model(out_dir: str | Path, texts: Iterable[str], spec: ScratchModel) -> Path:
    """Writes tokenizer + random weights of `spec.family` + config.json to `out_dir`."""
    out_dir = Path(out_dir)
    tok_dir = out_dir.with_name(out_dir.name + ".tokenizer")
    tokenizer = train_tokenizer(texts, tok_dir, spec.vocab_size, spec.split_digits, spec.family)
    llama = spec.family == "llama"
    cfg = ModelConfig(
        family=spec.family,
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_layers=spec.num_layers,
        num_heads=spec.num_heads,
        num_kv_heads=spec.num_kv_heads,
        head_dim=spec.hidden_size // spec.num_heads,
        rope_theta=500_000.0 if llama else 10_000.0,
        qkv_bias=not llama,
        tie_word_embeddings=not llama,
        max_position_embeddings=4096,
        bos_token_id=tokenizer.convert_tokens_to_ids(LLAMA3_SPECIAL_TOKENS[1]) if llama else None,
        eos_token_id=tokenizer.eos_token_id,
    )
    save_model(CausalLM(cfg, rngs=nnx.Rngs(spec.seed)), out_dir, tokenizer_dir=tok_dir)
    shutil.rmtree(tok_dir, ignore_errors=True)
    return out_dir
