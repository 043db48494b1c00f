"""Tokenizer loading and chat rendering from a model directory."""

import pytest
from tiny_models import make_jax_checkpoint, make_tokenizer

from corea_jax.errors import CoreaError
from corea_jax.models import load_tokenizer, render_chat, save_model


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
