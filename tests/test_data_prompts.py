"""Prompt templates rendered through Qwen- and Llama-style chat templates built in the test."""

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors

from corea_jax.data import (
    DEFAULT_SYSTEM,
    DataError,
    PromptTemplates,
    Record,
    encode_prompt,
    read_dataset,
    render_prompt,
)

QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if message['role'] != 'system' %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
LLAMA_TEMPLATE = (
    "{{- bos_token }}{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' "
    "+ message['content'] | trim + '<|eot_id|>' }}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)

MATH = Record("m1", "Find $x$ if $\\frac{x}{2} = 3$ {choices}.", "6", "math")
CHOICE = Record("c1", "Where do you keep milk?", "B", "choice", ("garage", "fridge", "oven"))
NUMERIC = Record("n1", "Tom has 3 apples and buys 4. How many?", "7", "numeric")


def byte_level_tokenizer(special: list[str], chat_template: str, bos: str | None, eos: str):
    """A byte-level BPE tokenizer without merges (every byte is a token), for transformers."""
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(special)
    if bos is not None:  # Llama's tokenizer adds BOS by itself when asked for special tokens
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=bos, eos_token=eos)
    wrapped.chat_template = chat_template
    return wrapped


@pytest.fixture(scope="module")
def qwen():
    pytest.importorskip(
        "jinja2", reason="jinja2 not installed: transformers needs it to render chat templates"
    )
    return byte_level_tokenizer(
        ["<|im_start|>", "<|im_end|>", "<|endoftext|>"], QWEN_TEMPLATE, None, "<|im_end|>"
    )


@pytest.fixture(scope="module")
def llama():
    pytest.importorskip(
        "jinja2", reason="jinja2 not installed: transformers needs it to render chat templates"
    )
    return byte_level_tokenizer(
        ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        LLAMA_TEMPLATE,
        "<|begin_of_text|>",
        "<|eot_id|>",
    )


# --- the text, without a tokenizer ----------------------------------------------------------------


def test_default_texts_ask_for_reasoning_answer_and_confidence_in_the_output_format():
    for tag in ("<think>", "</think>", "<answer>", "</answer>", "<confidence>", "</confidence>"):
        assert tag in DEFAULT_SYSTEM
    assert "between 0 and 1" in DEFAULT_SYSTEM
    assert "0.85" not in DEFAULT_SYSTEM  # no example number to anchor on
    templates = PromptTemplates()
    assert templates.user_text(CHOICE) == (
        "Where do you keep milk?\n\nA. garage\nB. fridge\nC. oven\n\n"
        "The final answer is the letter of the correct option."
    )
    assert templates.user_text(NUMERIC).endswith("\n\nThe final answer is a single number.")


def test_placeholders_are_filled_once_and_braces_need_no_escaping():
    templates = PromptTemplates(math="Solve {question} and box it: \\boxed{{ans}} {question}")
    text = templates.user_text(MATH)
    # The question's literal "{choices}" and the template's LaTeX braces are left as they are.
    assert text == f"Solve {MATH.question} and box it: \\boxed{{{{ans}}}} {MATH.question}"


def test_system_text_placement_options():
    assert [m["role"] for m in PromptTemplates().messages(MATH)] == ["system", "user"]
    merged = PromptTemplates(use_system_role=False).messages(MATH)
    assert merged == [{"role": "user", "content": f"{DEFAULT_SYSTEM}\n\n{MATH.question}"}]
    assert PromptTemplates(system="").messages(MATH) == [{"role": "user", "content": MATH.question}]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"math": "no placeholder"}, "'math' must contain '{question}'"),
        ({"choice": "{question} without options"}, "'choice' must contain '{choices}'"),
    ],
)
def test_templates_without_placeholders_are_rejected(kwargs, message):
    with pytest.raises(DataError, match=message):
        PromptTemplates(**kwargs)


# --- through chat templates -----------------------------------------------------------------------


def test_qwen_style_rendering_is_exact(qwen):
    assert render_prompt(MATH, qwen) == (
        f"<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"
        f"<|im_start|>user\n{MATH.question}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    # No system text: the chat template's own default system message appears instead.
    assert render_prompt(MATH, qwen, PromptTemplates(system="")).startswith(
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    )


def test_llama_style_rendering_is_exact_and_encodes_with_one_bos(llama):
    text = render_prompt(CHOICE, llama)
    user = PromptTemplates().user_text(CHOICE)
    assert text == (
        "<|begin_of_text|>"
        f"<|start_header_id|>system<|end_header_id|>\n\n{DEFAULT_SYSTEM}<|eot_id|>"
        f"<|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    bos = llama.convert_tokens_to_ids("<|begin_of_text|>")
    ids = encode_prompt(CHOICE, llama)
    assert ids[0] == bos and ids.count(bos) == 1
    assert llama(text)["input_ids"][:2] == [bos, bos]  # what add_special_tokens=True would do
    assert llama.decode(ids) == text


def test_every_shipped_question_renders_verbatim_once_ending_in_the_assistant_turn(
    qwen, llama, shared_data
):
    for name in ("math500", "commonsenseqa", "gsm8k"):
        for record in read_dataset(name, shared_data / name).records:
            for tokenizer, opening in ((qwen, "<|im_start|>assistant\n"), (llama, "assistant")):
                text = render_prompt(record, tokenizer)
                assert text.count(record.question.strip()) == 1
                assert text.endswith(
                    opening + ("<|end_header_id|>\n\n" if tokenizer is llama else "")
                )
                if record.kind == "choice":
                    assert "\nE. " in text and "letter of the correct option" in text


def test_unicode_prompt_round_trips_through_encode(qwen):
    record = Record("u1", "Résoudre: √2 ≈ 1.414, π ≈ 3.14 — vrai ou faux?", "vrai", "math")
    ids = encode_prompt(record, qwen)
    assert qwen.decode(ids) == render_prompt(record, qwen)


def test_missing_chat_template_or_jinja_is_a_data_error():
    class NoTemplate:
        chat_template = None
        name_or_path = "tiny"

    with pytest.raises(DataError, match="tokenizer tiny has no chat_template"):
        render_prompt(MATH, NoTemplate())

    class NoJinja:
        chat_template = "{{ messages }}"

        def apply_chat_template(self, *args, **kwargs):
            raise ImportError("apply_chat_template requires jinja2 to be installed.")

    with pytest.raises(DataError, match="needs jinja2"):
        render_prompt(MATH, NoJinja())
