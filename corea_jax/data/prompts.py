"""Prompt templates per answer kind, rendered with the model's own chat template.

The model is asked for reasoning, a final answer and a verbalized confidence in the project's
default output format [open, see PAPER.md]:

    <think>...</think><answer>...</answer><confidence>0.85</confidence>

The exact wording is not in the paper [open]; ours is `PromptTemplates()`, every field of which is
a config option. The default texts, verbatim:

  system  = DEFAULT_SYSTEM (below): the output format and what the confidence means.
  math    = "{question}"
  numeric = "{question}\n\nThe final answer is a single number."
  choice  = "{question}\n\n{choices}\n\nThe final answer is the letter of the correct option."

`{question}` is replaced by the record's question and `{choices}` by its options, one per line as
"A. text". Only these two placeholders are substituted, in one pass, so LaTeX braces in a template
or a question need no escaping.

Two choices that depart from common practice, and why:
  - The format line shows `<confidence>...</confidence>`, not an example number such as 0.85: a
    concrete number in the prompt anchors the stated confidences of untrained models.
  - The instructions go in a system message (`use_system_role=True`); set it to False for chat
    templates without a system role, and the system text is put before the user text instead.
    An empty system text sends no system message (the chat template may then add its own).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

from corea_jax.data.records import LETTERS, DataError, Record

DEFAULT_SYSTEM = (
    "Solve the problem. First reason step by step inside <think></think>. Then write only the "
    "final answer inside <answer></answer>. Last, write the probability that your answer is "
    "correct, a number between 0 and 1, inside <confidence></confidence>. Reply in the format "
    "<think>...</think><answer>...</answer><confidence>...</confidence>"
)
DEFAULT_MATH = "{question}"
DEFAULT_NUMERIC = "{question}\n\nThe final answer is a single number."
DEFAULT_CHOICE = "{question}\n\n{choices}\n\nThe final answer is the letter of the correct option."

_PLACEHOLDER = re.compile(r"\{(question|choices)\}")


@dataclasses.dataclass(frozen=True)
class PromptTemplates:
    """The prompt text, per answer kind (see the module docstring for the defaults and reasons).

    Attributes:
      system: instructions sent as the system message ("" sends none).
      math / numeric / choice: the user message for records of that kind; must contain
        "{question}"; `choice` must also contain "{choices}".
      use_system_role: False puts the system text before the user text, for chat templates
        that reject a system role.
    """

    system: str = DEFAULT_SYSTEM
    math: str = DEFAULT_MATH
    numeric: str = DEFAULT_NUMERIC
    choice: str = DEFAULT_CHOICE
    use_system_role: bool = True

    def __post_init__(self):
        for kind in ("math", "numeric", "choice"):
            if "{question}" not in getattr(self, kind):
                raise DataError(f"prompt template {kind!r} must contain '{{question}}'")
        if "{choices}" not in self.choice:
            raise DataError("prompt template 'choice' must contain '{choices}'")

    def user_text(self, record: Record) -> str:
        """The user message for `record`, placeholders filled."""
        template = getattr(self, record.kind)
        values = {"question": record.question, "choices": format_choices(record.choices)}
        return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)

    def messages(self, record: Record) -> list[dict[str, str]]:
        """The chat messages (role/content dicts) for `record`, ending with the user turn."""
        user = self.user_text(record)
        if not self.system:
            return [{"role": "user", "content": user}]
        if self.use_system_role:
            return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]
        return [{"role": "user", "content": f"{self.system}\n\n{user}"}]


def format_choices(choices: Sequence[str]) -> str:
    """Options one per line, lettered: "A. first\\nB. second"."""
    return "\n".join(f"{LETTERS[i]}. {text}" for i, text in enumerate(choices))


def render_prompt(
    record: Record, tokenizer: Any, templates: PromptTemplates = PromptTemplates()
) -> str:
    """The prompt text for `record`, through `tokenizer.apply_chat_template`.

    The text ends with the chat template's generation prompt (the assistant turn is opened), so
    the model's completion follows it directly. Needs `jinja2` (transformers renders chat
    templates with it).
    """
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '') or type(tokenizer).__name__} has "
            "no chat_template; set tokenizer.chat_template or use a chat model's tokenizer"
        )
    try:
        return tokenizer.apply_chat_template(
            templates.messages(record), tokenize=False, add_generation_prompt=True
        )
    except ImportError as e:
        raise DataError(f"rendering a chat template needs jinja2 (pip install jinja2): {e}") from e


def encode_prompt(
    record: Record, tokenizer: Any, templates: PromptTemplates = PromptTemplates()
) -> list[int]:
    """Token ids of `render_prompt(...)`.

    Encoded with `add_special_tokens=False`: chat templates already write the BOS token into the
    text (Llama 3), and letting the tokenizer add it again would double it.
    """
    text = render_prompt(record, tokenizer, templates)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
