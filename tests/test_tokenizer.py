"""Tokenizer loading and chat rendering from a model directory."""

from pathlib import Path

import pytest
from tiny_models import make_jax_checkpoint, make_tokenizer

from corea_jax.errors import CoreaError
from corea_jax.models import encode_text, load_tokenizer, render_chat, save_model

DEMO_TOKENIZER = Path(__file__).resolve().parents[1] / "corea_jax" / "assets" / "demo_warmup"


def test_chat_template_comes_from_the_model_directory(tmp_path):
    tok = load_tokenizer(make_tokenizer(tmp_path / "tok"))
    text = render_chat(tok, [{"role": "user", "content": "What is 12 + 30?"}])
    assert text == "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    assert ids[0] == 1 and tok.decode(ids) == text
    assert tok.convert_tokens_to_ids("<|im_end|>") == 2


def test_export_copies_tokenizer_files(tmp_path):
    from corea_jax.models import load_model

    tok_dir = make_tokenizer(tmp_path / "tok")
    model = load_model(make_jax_checkpoint("qwen2", tmp_path / "m"))
    out = save_model(model, tmp_path / "export", tokenizer_dir=tok_dir)
    tok = load_tokenizer(out)
    assert render_chat(tok, [{"role": "user", "content": "hi"}]).endswith("assistant\n")


def test_missing_tokenizer_is_a_clear_error(tmp_path):
    with pytest.raises(CoreaError, match="not found"):
        load_tokenizer(tmp_path / "nope")


@pytest.mark.parametrize("which", ["tiny", "demo"])
def test_encode_text_gives_the_tokenizer_calls_ids(tmp_path, which):
    """The server's fast path (the Rust backend's single-text encode) and the transformers
    call agree on chat prompts, special tokens written in the text, unicode and empty text."""
    tok = load_tokenizer(make_tokenizer(tmp_path / "tok") if which == "tiny" else DEMO_TOKENIZER)
    texts = [
        render_chat(tok, [{"role": "user", "content": "[steps 2, digits 3] What is 512 + 7?"}]),
        "<|im_start|>assistant\n<think>12 + 30 = 42</think><answer>42</answer><|im_end|>",
        "  leading spaces, tabs\tand\nnewlines  ",
        "unicode: é ü 数学 🙂",
        "",
    ]
    for text in texts:
        assert encode_text(tok, text) == list(tok(text, add_special_tokens=False)["input_ids"])
