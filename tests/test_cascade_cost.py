"""Cost accounting: tokens x price per 1M tokens, the price table, the cascade's cost."""

import numpy as np
import pytest

from corea_jax.cascade.cost import DEFAULT_PRICES, Price, PriceTable, cascade_cost, token_cost
from corea_jax.errors import CoreaError


def test_token_cost_hand_values():
    price = Price(input_per_mtok=0.30, output_per_mtok=0.60)
    # 1M prompt tokens at 0.30 + 0.5M completion tokens at 0.60 = 0.30 + 0.30.
    assert float(token_cost(price, 1_000_000, 500_000)) == pytest.approx(0.60)
    # 2000 in, 500 out: (2000 * 0.3 + 500 * 0.6) / 1e6 = 0.0009.
    costs = token_cost(price, np.array([2000, 0]), np.array([500, 1000]))
    assert costs == pytest.approx([0.0009, 0.0006])


def test_cascade_cost_pays_the_slm_always_and_the_llm_when_deferred():
    slm = np.array([0.001, 0.002, 0.003])
    llm = np.array([0.01, 0.02, 0.03])
    defer = np.array([True, False, True])
    assert cascade_cost(slm, llm, defer) == pytest.approx([0.011, 0.002, 0.033])


def test_mean_cost_per_question_hand_values():
    slm, llm = Price(0.1, 0.4), Price(1.0, 3.0)
    deferred = np.array([True, False, False, True])
    slm_cost = token_cost(slm, np.full(4, 100.0), np.full(4, 1000.0))
    llm_cost = token_cost(llm, np.full(4, 100.0), np.array([500.0, 500.0, 500.0, 1500.0]))
    # SLM: 100 * .1 + 1000 * .4 = 410 per question. LLM (deferred only): 100 + 1500 and 100 + 4500.
    expected = (4 * 410 + 1600 + 4600) / 4 / 1e6
    assert cascade_cost(slm_cost, llm_cost, deferred).mean() == pytest.approx(expected)


def test_price_table_lookup_exact_case_insensitive_and_short_name():
    table = PriceTable()
    assert table.price("Qwen/Qwen2.5-32B-Instruct") == DEFAULT_PRICES["Qwen/Qwen2.5-32B-Instruct"]
    assert table.price("qwen/qwen2.5-7b-instruct") == DEFAULT_PRICES["Qwen/Qwen2.5-7B-Instruct"]
    assert table.price("Qwen2.5-32B-Instruct") == DEFAULT_PRICES["Qwen/Qwen2.5-32B-Instruct"]
    llm, slm = table.price("Qwen/Qwen2.5-32B-Instruct"), table.price("Qwen/Qwen2.5-7B-Instruct")
    assert llm.output_per_mtok > slm.output_per_mtok  # the LLM is the expensive one
    cost = table.cost("Qwen/Qwen2.5-7B-Instruct", 1_000_000, 1_000_000)
    assert float(cost) == pytest.approx(slm.input_per_mtok + slm.output_per_mtok)


def test_price_table_errors_name_the_model_and_field():
    with pytest.raises(CoreaError, match="no price for model 'gpt-x'"):
        PriceTable().price("gpt-x")
    table = PriceTable.from_dict({"a": {"input_per_mtok": 1, "output_per_mtok": 2}, "b": (3, 4)})
    assert table.price("a") == Price(1.0, 2.0) and table.price("b") == Price(3.0, 4.0)
    with pytest.raises(CoreaError, match="model 'c'.*expected keys"):
        PriceTable.from_dict({"c": {"input": 1, "output_per_mtok": 2}})
    with pytest.raises(CoreaError, match="model 'd'.*output_per_mtok=-2"):
        PriceTable.from_dict({"d": (1, -2)})
    with pytest.raises(CoreaError, match="model 'e'"):
        PriceTable.from_dict({"e": "cheap"}, source="config llm.prices")
