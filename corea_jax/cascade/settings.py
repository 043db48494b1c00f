"""The cascade's settings: one frozen dataclass per section of an eval config, built once.

`CascadeConfig.from_config(config)` is the one place the ConfigDict of `configs/eval_*.py` is
read (by `corea-jax cascade`, `corea-jax evaluate --config` and the demo); everything after it
takes these typed objects. Each section's keys are its dataclass's fields and each is built with
`Cls(**section)`, so a misspelt key is a one-line error naming the section, and each default has
one home: here, or the dataclass this one reads it from (the LLM client's defaults are those of
`endpoint.ClientConfig`, `RetryPolicy` and `SamplingParams`; the grading time limit that of
`scoring.grading.GradingConfig`). `configs/eval_common.py` builds its sections from these
defaults and overrides only what differs.

[open] defaults chosen here: SLM decoding greedy (`temperature=0`) with the paper's 2048-token
responses; tau picked on half of each dataset (`calibration_fraction=0.5`) from a 0.01 grid by
the paper's rule first ("llm_pass"), then "within_llm" (2 points) and "budget" (0.8 x LLM-only);
an invalid confidence counts as 0 (defer); the simulated LLM is right at 0.7.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from corea_jax.cascade.cost import DEFAULT_PRICES, PriceTable
from corea_jax.cascade.endpoint import ClientConfig, LLMEndpoint, RetryPolicy, SamplingParams
from corea_jax.cascade.slm_answers import QuestionSource, ScratchConfig, SLMConfig
from corea_jax.cascade.sweep import TAU_RULES
from corea_jax.errors import CoreaError
from corea_jax.scoring.grading import GradingConfig
from corea_jax.sections import build_section


@dataclasses.dataclass(frozen=True)
class LLMConfig:
    """The LLM: where it is, how it samples, how the client calls it, or the SIMULATED one.

    `api_key_env` names the environment variable holding the key ("" = no key). `system` is the
    LLM's system text ("" = `corea_jax.data.DEFAULT_SYSTEM`, the SLM's instructions, so both
    answer in the same layout). With `simulated=True` no endpoint is called: the in-process
    `corea_jax.testing.simulated_llm` answers with the gold answer at `simulated_accuracy`, or
    at `simulated_accuracy_by_level["STEPS,DIGITS"]` for a synthetic question of that level.
    """

    base_url: str = "http://localhost:8000/v1"
    model: str = "Qwen/Qwen2.5-32B-Instruct"
    api_key_env: str = "OPENAI_API_KEY"
    system: str = ""
    temperature: float = SamplingParams.temperature
    max_tokens: int = SamplingParams.max_tokens
    concurrency: int = ClientConfig.concurrency
    timeout_s: float = ClientConfig.timeout_s
    max_attempts: int = RetryPolicy.max_attempts
    max_failed_questions: int = ClientConfig.max_failed_questions
    simulated: bool = False
    simulated_accuracy: float = 0.7
    simulated_seed: int = 0
    simulated_accuracy_by_level: Mapping[str, float] = dataclasses.field(default_factory=dict)

    def endpoint(self) -> LLMEndpoint:
        return LLMEndpoint(self.base_url, self.model, self.api_key_env or None)

    def sampling(self) -> SamplingParams:
        return SamplingParams(temperature=self.temperature, max_tokens=self.max_tokens)

    def client(self) -> ClientConfig:
        return ClientConfig(
            concurrency=self.concurrency,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            max_failed_questions=self.max_failed_questions,
        )


@dataclasses.dataclass(frozen=True)
class TauConfig:
    """How tau is chosen on the calibration split (rules of `sweep.TAU_RULES`, in report order).

    `max_drop_points`: "within_llm"'s allowed pass@1 drop below LLM-only, in points. `budget`:
    "budget"'s limit, a fraction of the LLM-only cost (`budget_relative`) or USD per question.
    """

    grid_step: float = 0.01
    rules: tuple[str, ...] = ("llm_pass", "within_llm", "budget")
    max_drop_points: float = 2.0
    budget: float = 0.8
    budget_relative: bool = True
    invalid_confidence: float = 0.0
    calibration_fraction: float = 0.5
    seed: int = 0
    # A tau to apply, not to choose: the LLM is asked only for the questions it defers and no
    # sweep runs (`cascade.fixed`). None: the sweep mode (every question to the LLM once).
    fixed: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "rules", tuple(self.rules))
        if self.fixed is not None and not np.isfinite(self.fixed):
            raise CoreaError(f"tau.fixed={self.fixed}: must be a finite number")
        for rule in self.rules:
            if rule not in TAU_RULES:
                known = sorted(TAU_RULES)
                raise CoreaError(f"tau.rules: unknown rule {rule!r}; choose from {known}")

    def grid(self) -> np.ndarray:
        return np.round(np.arange(0.0, 1.0 + 1e-9, self.grid_step), 10)

    def rule_options(self, rule: str) -> dict:
        """The keyword arguments `sweep.select_tau` passes to `rule`."""
        return {
            "llm_pass": {},
            "within_llm": {"max_drop_points": self.max_drop_points},
            "budget": {"budget": self.budget, "relative": self.budget_relative},
        }[rule]


@dataclasses.dataclass(frozen=True)
class ReportConfig:
    bins: int = 10  # ECE / reliability bins (PAPER.md: 10 equal-width bins [open])


@dataclasses.dataclass(frozen=True)
class GraderConfig:
    """The grading pool: `workers` processes (0 grades in-process) with a time limit per answer."""

    workers: int = 4
    time_limit_s: float = GradingConfig.time_limit_s

    def grader(self):
        from corea_jax.scoring.grading_workers import Grader

        return Grader(workers=self.workers, options=GradingConfig(time_limit_s=self.time_limit_s))


@dataclasses.dataclass(frozen=True)
class CascadeConfig:
    """Everything `pipeline.run` and `pipeline.evaluate` need.

    `datasets` are `QuestionSource`s (config: `{name: {reader, path, split, limit}}`); `prices`
    are (model, input USD / 1M tokens, output USD / 1M tokens) entries added to, or replacing,
    `cost.DEFAULT_PRICES`; `output_format` names a layout of `corea_jax.scoring.parsing.FORMATS`
    (a multiple-choice question always reads a letter); `seed` seeds the LLM client's backoff.
    """

    datasets: tuple[QuestionSource, ...]
    seed: int = 0
    output_format: str = "tags"
    slm: SLMConfig = SLMConfig()
    llm: LLMConfig = LLMConfig()
    prices: tuple[tuple[str, float, float], ...] = ()
    tau: TauConfig = TauConfig()
    report: ReportConfig = ReportConfig()
    grading: GraderConfig = GraderConfig()

    def __post_init__(self):
        if not self.datasets:
            raise CoreaError("datasets: empty; name at least one dataset")

    @classmethod
    def from_config(cls, config) -> CascadeConfig:
        """From the ConfigDict (or plain dict) of `configs/eval_*.py`."""
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        sections = {"slm": SLMConfig, "llm": LLMConfig, "tau": TauConfig,
                    "report": ReportConfig, "grading": GraderConfig}  # fmt: skip
        kwargs = {k: v for k, v in c.items() if k not in sections and k != "datasets"}
        for name, section_cls in sections.items():
            if name in c:
                kwargs[name] = _build(section_cls, c[name], name)
        kwargs["datasets"] = tuple(
            _build(QuestionSource, {"name": name, **d}, f"datasets.{name}")
            for name, d in (c.get("datasets") or {}).items()
        )
        kwargs["prices"] = tuple(tuple(e) for e in kwargs.get("prices", ()))
        return _build(cls, kwargs, "config")

    def price_table(self) -> PriceTable:
        extra = {str(e[0]): (e[1], e[2]) for e in self.prices}
        return PriceTable({**DEFAULT_PRICES, **PriceTable.from_dict(extra, source="prices").prices})


def _build(cls, section: Mapping, where: str):
    """`cls(**section)` (`build_section`), the SLM's nested `scratch` section built first."""
    if cls is SLMConfig and "scratch" in section:
        section = {**section, "scratch": _build(ScratchConfig, section["scratch"], "slm.scratch")}
    return build_section(cls, section, where, hidden=frozenset({"name"}))
