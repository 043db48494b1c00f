"""Cost accounting: tokens x price per 1M input / output tokens, per model.

The paper reports cost relative to "LLM alone" but leaves the cost model open [open]. Ours:

- Every model, the SLM included, is priced like a serverless API: `input_per_mtok` US dollars
  per million prompt tokens plus `output_per_mtok` per million completion tokens
  (`Price`, the project's one price type). The SLM is charged even
  though it may run locally, because a deferred question pays for both generations (no router runs
  before generation) and leaving the SLM out would flatter the cascade.
- A question's system cost is `slm_cost + defer * llm_cost` (`cascade_cost`). The LLM-only
  baseline pays `llm_cost` alone: it never runs the SLM.

Default prices (`DEFAULT_PRICES`, USD per 1M tokens, input / output) are *assumptions*, recalled
serverless list prices of 2025 (Together AI's "Turbo" endpoints), not fetched or verified at
runtime; override them with `PriceTable.from_dict(...)` from the config before quoting dollars:

    Qwen/Qwen2.5-1.5B-Instruct       0.10 / 0.10   (no list price found; assumed below the 7B)
    Qwen/Qwen2.5-7B-Instruct         0.30 / 0.30   (Together, Qwen2.5-7B-Instruct-Turbo)
    meta-llama/Llama-3.1-8B-Instruct 0.18 / 0.18   (Together, Meta-Llama-3.1-8B-Instruct-Turbo)
    Qwen/Qwen2.5-32B-Instruct        0.80 / 0.80   (Together listed Qwen2.5-Coder-32B-Instruct at
                                                    this price; taken for the 32B Instruct too)

Relative figures ("-20% cost vs LLM alone") depend only on the price ratio between the two models
and on the token counts, not on the absolute level.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import numpy as np

from corea_jax.errors import CoreaError

PER_MILLION = 1_000_000


@dataclasses.dataclass(frozen=True)
class Price:
    """A model's price in US dollars per 1M input and per 1M output tokens."""

    input_per_mtok: float
    output_per_mtok: float


def token_cost(price: Price, prompt_tokens, completion_tokens) -> np.ndarray:
    """Dollar cost of each call under `price`; token counts shaped [Q] (or scalars)."""
    prompt = np.asarray(prompt_tokens, dtype=np.float64)
    completion = np.asarray(completion_tokens, dtype=np.float64)
    return (prompt * price.input_per_mtok + completion * price.output_per_mtok) / PER_MILLION


DEFAULT_PRICES: Mapping[str, Price] = {
    "Qwen/Qwen2.5-1.5B-Instruct": Price(0.10, 0.10),
    "Qwen/Qwen2.5-7B-Instruct": Price(0.30, 0.30),
    "meta-llama/Llama-3.1-8B-Instruct": Price(0.18, 0.18),
    "Qwen/Qwen2.5-32B-Instruct": Price(0.80, 0.80),
}


@dataclasses.dataclass(frozen=True)
class PriceTable:
    """Prices per model name; `price(model)` names the missing model and the known ones.

    Model names are matched exactly, then case-insensitively, then by the part after the last
    `/` (an endpoint may serve "Qwen2.5-32B-Instruct" for the hub id "Qwen/Qwen2.5-32B-Instruct").
    """

    prices: Mapping[str, Price] = dataclasses.field(default_factory=lambda: DEFAULT_PRICES)

    @classmethod
    def from_dict(cls, table: Mapping[str, object], *, source: str = "price table") -> PriceTable:
        """From `{model: {"input_per_mtok": x, "output_per_mtok": y}}` or `{model: (x, y)}`."""
        prices = {}
        for model, entry in table.items():
            where = f"{source}: model {model!r}"
            if isinstance(entry, Price):
                prices[model] = entry
            elif isinstance(entry, Mapping):
                if set(entry) != {"input_per_mtok", "output_per_mtok"}:
                    raise CoreaError(
                        f"{where}: expected keys input_per_mtok and output_per_mtok, "
                        f"got {sorted(entry)}"
                    )
                prices[model] = _price(where, entry["input_per_mtok"], entry["output_per_mtok"])
            elif isinstance(entry, list | tuple) and len(entry) == 2:
                prices[model] = _price(where, *entry)
            else:
                raise CoreaError(
                    f"{where}: expected (input_per_mtok, output_per_mtok), got {entry!r}"
                )
        return cls(prices)

    def price(self, model: str) -> Price:
        if model in self.prices:
            return self.prices[model]
        folded = {name.lower(): p for name, p in self.prices.items()}
        short = {name.rsplit("/", 1)[-1].lower(): p for name, p in self.prices.items()}
        for key, table in ((model.lower(), folded), (model.rsplit("/", 1)[-1].lower(), short)):
            if key in table:
                return table[key]
        raise CoreaError(
            f"no price for model {model!r} in the price table (known: {sorted(self.prices)}); "
            "add it to the config's price table"
        )

    def cost(self, model: str, prompt_tokens, completion_tokens) -> np.ndarray:
        """Dollar cost of each of `model`'s calls; token counts shaped [Q] (or scalars)."""
        return token_cost(self.price(model), prompt_tokens, completion_tokens)


def _price(where: str, input_per_mtok, output_per_mtok) -> Price:
    values = {"input_per_mtok": input_per_mtok, "output_per_mtok": output_per_mtok}
    for name, value in values.items():
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not (ok and math.isfinite(value) and value >= 0):
            raise CoreaError(f"{where}: {name}={value!r} must be a finite number >= 0")
    return Price(float(input_per_mtok), float(output_per_mtok))


def cascade_cost(slm_cost, llm_cost, defer) -> np.ndarray:
    """Per-question system cost [Q]: the SLM always runs; a deferred question adds the LLM call."""
    return np.asarray(slm_cost, np.float64) + np.where(np.asarray(defer, bool), llm_cost, 0.0)
