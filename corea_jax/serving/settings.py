"""`corea-jax serve` settings: one frozen dataclass per section of `configs/serve.py`.

`ServeConfig.from_config(config)` is the one place the ConfigDict is read; each section is
`Cls(**section)`, so a misspelt key is a one-line error naming it, and each default lives on
its field here (the upstream LLM's are `corea_jax.cascade.LLMConfig`'s, the engine's
`EngineConfig`'s).

[open] defaults chosen here: a request without a system message gets the project's
instructions (`DEFAULT_SYSTEM`, as in training) before it reaches the SLM, and the upstream LLM
gets the same (`LLMConfig.system`); an unparseable confidence counts as 0 (defer, PAPER.md);
when the upstream LLM fails or times out the SLM's answer is returned, flagged as a fallback
(`upstream_failure="fallback"`; "error" answers 502); tau 0.69 (the paper's LLM pass@1) when no
`summary.json` is named; no server-side request deadline (`request_timeout_s=0`: the upstream
has its own, and a client that gives up disconnects, which stops its work anyway).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from corea_jax.cascade import DEFAULT_PRICES, LLMConfig, PriceTable
from corea_jax.errors import CoreaError
from corea_jax.sections import build_section
from corea_jax.serving.engine import EngineConfig
from corea_jax.serving.protocol import Limits

DEFAULT = "default"  # SLMServeConfig.system: the project's DEFAULT_SYSTEM


@dataclasses.dataclass(frozen=True)
class SLMServeConfig:
    """The SLM: a HF model directory, the name it is served and priced under."""

    path: str = ""
    served_name: str = "corea-cascade"
    price_name: str = "Qwen/Qwen2.5-7B-Instruct"
    system: str = DEFAULT  # "default" = DEFAULT_SYSTEM; "" sends none
    missing_hint: str = ""  # the command that creates `path`, named when it is absent


@dataclasses.dataclass(frozen=True)
class TauSource:
    """tau: `value`, or the one chosen offline by `rule` in a cascade `summary.json`
    (`group`: a dataset name or "all"; "" = the only group or "all"; `signal`: verbalized)."""

    value: float = 0.69
    summary: str = ""
    rule: str = "llm_pass"
    group: str = ""
    signal: str = "verbalized"
    invalid_confidence: float = 0.0

    def resolve(self) -> tuple[float, str]:
        """(tau, where it came from)."""
        if not self.summary:
            if not 0.0 <= self.value <= 1.0:
                raise CoreaError(f"tau.value={self.value}: must be in [0, 1]")
            return float(self.value), "config"
        return read_tau(Path(self.summary), self.rule, self.group, self.signal)


def read_tau(path: Path, rule: str, group: str = "", signal: str = "verbalized"):
    """The tau that `rule` chose in a `corea-jax cascade` summary.json -> (tau, source)."""
    if not path.is_file():
        raise CoreaError(f"tau.summary: {path} not found (written by `corea-jax cascade`)")
    try:
        groups = json.loads(path.read_text())["groups"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CoreaError(f"tau.summary: {path} is not a cascade summary.json ({exc!r})") from None
    if not group:
        group = "all" if "all" in groups else next(iter(groups)) if len(groups) == 1 else ""
    if group not in groups:
        raise CoreaError(f"tau.group: {group!r} not in {path} (groups: {sorted(groups)})")
    try:
        choices = groups[group]["signals"][signal]["choices"]
    except (KeyError, TypeError):
        raise CoreaError(f"tau.signal: no {signal!r} signal in {path} group {group!r}") from None
    for choice in choices:
        name = str(choice.get("rule"))
        if name == rule or name.startswith(f"{rule}("):  # "within_llm(2 points)" is within_llm
            return float(choice["tau"]), f"{path} (rule {rule}, group {group}, {signal})"
    known = [c.get("rule") for c in choices]
    raise CoreaError(f"tau.rule: {rule!r} not in {path} (rules: {known})")


@dataclasses.dataclass(frozen=True)
class ServerConfig:
    """HTTP side: address, request limits, the upstream failure policy, shutdown."""

    host: str = "127.0.0.1"
    port: int = 8000
    default_max_tokens: int = 256  # when a request names none (the limit: engine.max_new_tokens)
    max_temperature: float = 2.0
    # When a request names none. [open] 0 (greedy, reproducible answers); a tau chosen offline
    # on sampled answers (`corea-jax cascade` with `slm.temperature` > 0) is matched by serving
    # at that temperature (configs/serve.py:demo does).
    default_temperature: float = 0.0
    upstream_failure: str = "fallback"  # "fallback" | "error" (502)
    upstream_timeout_s: float = 60.0  # the whole upstream answer, retries included
    upstream_concurrency: int = 64
    request_timeout_s: float = 0.0  # a request's deadline, SLM and LLM included; 0 = none
    drain_timeout_s: float = 30.0
    log_level: str = "info"
    # Once warm, move every object start-up made (model, tokenizer, compiled kernels) out of
    # the garbage collector's view (`gc.freeze`): a full collection over them paused every
    # thread for about 170 ms under load (benchmarks/serve.py's p99), after it about 2 ms.
    # Off here, for a service embedded in another process (tests, a notebook), whose objects
    # are not the server's to freeze; configs/serve.py, a process that only serves, sets it.
    gc_freeze: bool = False

    def __post_init__(self):
        if self.upstream_failure not in ("fallback", "error"):
            raise CoreaError(
                f"server.upstream_failure={self.upstream_failure!r}: use 'fallback' or 'error'"
            )
        if not 0.0 <= self.default_temperature <= self.max_temperature:
            raise CoreaError(
                f"server.default_temperature={self.default_temperature}: must be in "
                f"[0, server.max_temperature={self.max_temperature}]"
            )
        if self.request_timeout_s < 0:
            raise CoreaError(f"server.request_timeout_s={self.request_timeout_s}: must be >= 0")

    def limits(self, max_tokens: int) -> Limits:
        return Limits(
            max_tokens=max_tokens,
            default_max_tokens=min(self.default_max_tokens, max_tokens),
            max_temperature=self.max_temperature,
            default_temperature=min(self.default_temperature, self.max_temperature),
        )


@dataclasses.dataclass(frozen=True)
class DemoUpstream:
    """The :demo variant's SIMULATED LLM: gold answers for the synthetic task's questions of
    these splits (others get a wrong answer), right as often as
    `LLMConfig.simulated_accuracy_of` says."""

    enabled: bool = False
    splits: tuple[str, ...] = ("calibration", "test")
    size: int = 400


@dataclasses.dataclass(frozen=True)
class ServeConfig:
    slm: SLMServeConfig = SLMServeConfig()
    engine: EngineConfig = EngineConfig()
    llm: LLMConfig = LLMConfig()
    tau: TauSource = TauSource()
    server: ServerConfig = ServerConfig()
    demo: DemoUpstream = DemoUpstream()
    prices: tuple[tuple[str, float, float], ...] = ()

    @classmethod
    def from_config(cls, config) -> ServeConfig:
        c = config.to_dict() if hasattr(config, "to_dict") else dict(config)
        sections = {"slm": SLMServeConfig, "engine": EngineConfig, "llm": LLMConfig,
                    "tau": TauSource, "server": ServerConfig, "demo": DemoUpstream}  # fmt: skip
        unknown = sorted(set(c) - set(sections) - {"prices"})
        if unknown:
            raise CoreaError(f"unknown config key {unknown[0]} (known: {sorted(sections)})")
        kwargs = {name: build_section(s, c.get(name) or {}, name) for name, s in sections.items()}
        kwargs["prices"] = tuple(tuple(e) for e in c.get("prices", ()))
        return cls(**kwargs)

    def price_table(self) -> PriceTable:
        extra = {str(e[0]): (e[1], e[2]) for e in self.prices}
        return PriceTable({**DEFAULT_PRICES, **PriceTable.from_dict(extra, source="prices").prices})
