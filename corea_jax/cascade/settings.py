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
an invalid confidence counts as 0 (defer); the simulated LLM is right at 0.7; both models are
sent the SLM's messages and, for the simulated LLM, counted with the SLM's tokenizer, the
simulated LLM writing reference-trace replies (`LLMConfig`: billing alike).
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

LLM_MESSAGES = ("slm", "system")  # LLMConfig.messages
LLM_USAGE = ("auto", "slm", "api")  # LLMConfig.usage


@dataclasses.dataclass(frozen=True)
class LLMConfig:
    """The LLM: where it is, how it samples, how the client calls it, or the SIMULATED one.

    `api_key_env` names the environment variable holding the key ("" = no key). With
    `simulated=True` no endpoint is called: the in-process `corea_jax.testing.simulated_llm`
    answers with the gold answer at `simulated_accuracy`, or at
    `simulated_accuracy_by_level["STEPS,DIGITS"]` for a synthetic question of that level, or,
    with `simulated_difficulty_decay` > 0, at `simulated_difficulty_ceiling *
    exp(-decay * digit operations)` of the question (`simulated_llm.question_accuracy`).

    Billing both models alike (PAPER.md, "A cost model that is fair to both sides"), three
    choices, each [open]:

    `messages`, what the LLM is sent: "slm" (default) the SLM's own chat messages, whatever
    its prompt template sends (`PromptTemplates.messages`: on the benchmarks `DEFAULT_SYSTEM`
    and the question, so a paper run sends exactly what it always did; on the synthetic task,
    `SYNTHETIC_PROMPTS`, the bare question with no system message, as the demo's SLM was
    trained), so both models are billed for the same prompt; "system" the system text
    `system` ("" = `corea_jax.data.DEFAULT_SYSTEM`) and the SLM's user text, for an LLM that
    needs instructions the SLM was trained without (it is then billed for them). `system`
    set with `messages="slm"` is an error: it would not be sent. `corea-jax serve` reads
    `system` only (its requests bring their own messages).

    `usage`, whose token counts the LLM is billed at: "slm" counts its prompt and reply with
    the SLM's tokenizer exactly as the SLM's own rows are counted (`SLMAnswerer.token_counter`:
    the prompt rendered by the SLM's chat template with its generation prompt, the reply's
    tokens plus the end-of-turn token a finished reply ends with; chat-template tokens counted
    on both sides), so equal texts cost equal tokens; "api" what the endpoint reports (what a
    provider bills; the SLM's tokenizer over the message contents where it reports nothing);
    "auto" (default) "slm" for the simulated LLM (it has no usage of its own: it reports that
    count) and "api" for a real endpoint (a paper run bills what it always did).

    `simulated_reply`, what the simulated LLM writes (`simulated_llm.SIMULATED_REPLIES`):
    "trace" (default) a reasoning-length reply, the synthetic task's reference trace of the
    question with the policy's answer (a stub where a question has none: not synthetic);
    "stub" the 18-token `<think>simulated</think>` reply of earlier versions. The simulated
    identity (the cache key) names it, so cached stub replies are never read as traces.
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
    simulated_difficulty_decay: float = 0.0
    simulated_difficulty_ceiling: float = 0.99
    messages: str = "slm"
    usage: str = "auto"
    simulated_reply: str = "trace"

    def __post_init__(self):
        from corea_jax.testing.simulated_llm import SIMULATED_REPLIES

        for name, allowed in (("messages", LLM_MESSAGES), ("usage", LLM_USAGE),
                              ("simulated_reply", SIMULATED_REPLIES)):  # fmt: skip
            if getattr(self, name) not in allowed:
                raise CoreaError(f"llm.{name}={getattr(self, name)!r}: choose from {allowed}")

    @property
    def billed_usage(self) -> str:
        """`usage` resolved: "slm" or "api"."""
        if self.usage == "auto":
            return "slm" if self.simulated else "api"
        return self.usage

    def simulated_accuracy_of(self, record) -> float:
        """The simulated LLM's probability of answering `record` right."""
        from corea_jax.testing.simulated_llm import question_accuracy

        return question_accuracy(
            record, self.simulated_accuracy, self.simulated_accuracy_by_level,
            self.simulated_difficulty_decay, self.simulated_difficulty_ceiling,
        )  # fmt: skip

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
            usage="counted" if self.billed_usage == "slm" else "api",
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


SIGNALS = ("verbalized", "avgprob", "probe", "router")


@dataclasses.dataclass(frozen=True)
class SignalsConfig:
    """Which confidence signals the sweep compares side by side, and how probe and router are made.

    `use` names signals of `SIGNALS`: "verbalized" (the stated confidence), "avgprob" (mean token
    probability), "probe" (a logistic regression on the SLM's hidden state at the end of its
    answer) and "router" (one on the hidden state at the last prompt token: it decides before
    the SLM generates). Default: the two that need no fitting [open]; the compare configs and the
    demo use all four. Probe and router are fitted on the calibration split, pooled over the
    configured datasets (one probe per SLM, as a deployment would have), with their L2 strength
    chosen from `c_grid` by `folds`-fold cross-validation inside that split; the calibration
    questions' own scores are out-of-fold (cross-fitted), so tau is never chosen on scores the
    probe was fitted to. `probe_layer` / `router_layer`: the decoder layer read (negative from
    the end) [open]; `probe_pooling`: "last" (the completion's final token), "answer_mean" (the
    answer's tokens) or "completion_mean"
    (see `corea_jax.probes.features`). `router_cost`: what a routed-away question costs on the
    SLM's side, "prefill" (the prompt's tokens at the SLM's input price: the router reads the
    prefill's hidden state) or "none" (a router with its own tiny model) [open]. `probe_dir`: a
    folder holding fitted `probe.json` / `router.json` to reuse ("" = fit them in the
    cascade's workdir under `probes/`, reused on re-runs); a probe fitted for another model is
    refused.
    """

    use: tuple[str, ...] = ("verbalized", "avgprob")
    probe_layer: int = -1
    probe_pooling: str = "last"
    router_layer: int = -1
    router_cost: str = "prefill"
    c_grid: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    folds: int = 5
    feature_batch: int = 16
    seed: int = 0
    probe_dir: str = ""

    def __post_init__(self):
        object.__setattr__(self, "use", tuple(self.use))
        object.__setattr__(self, "c_grid", tuple(float(c) for c in self.c_grid))
        for name in self.use:
            if name not in SIGNALS:
                raise CoreaError(f"signals.use: unknown signal {name!r}; choose from {SIGNALS}")
        if not self.use:
            raise CoreaError("signals.use: empty; name at least one signal")
        if self.router_cost not in ("prefill", "none"):
            raise CoreaError(f"signals.router_cost={self.router_cost!r}: 'prefill' or 'none'")
        if self.folds < 2:
            raise CoreaError(f"signals.folds={self.folds}: must be >= 2")
        if not self.c_grid or min(self.c_grid) <= 0:
            raise CoreaError("signals.c_grid: one or more positive regularisation values")

    @property
    def fitted(self) -> tuple[str, ...]:
        """The signals that need a probe fitted: "probe" and/or "router"."""
        return tuple(s for s in self.use if s in ("probe", "router"))


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
    signals: SignalsConfig = SignalsConfig()
    report: ReportConfig = ReportConfig()
    grading: GraderConfig = GraderConfig()

    def __post_init__(self):
        if not self.datasets:
            raise CoreaError("datasets: empty; name at least one dataset")
        if self.llm.system and self.llm.messages == "slm":
            raise CoreaError(
                "llm.system is set but llm.messages='slm' sends the SLM's own messages; set "
                "llm.messages='system' to send it"
            )
        if self.tau.fixed is not None and self.slm.samples != 1:
            raise CoreaError(
                f"tau.fixed with slm.samples={self.slm.samples}: a fixed-tau cascade serves one "
                "answer per question; set slm.samples=1"
            )

    @classmethod
    def from_config(cls, config) -> CascadeConfig:
        """From the ConfigDict (or plain dict) of `configs/eval_*.py`."""
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        sections = {"slm": SLMConfig, "llm": LLMConfig, "tau": TauConfig,
                    "signals": SignalsConfig, "report": ReportConfig,
                    "grading": GraderConfig}  # fmt: skip
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
