"""The demo's settings: `DemoConfig`, built once from `configs/demo.py`'s ConfigDict.

    config = DemoConfig.from_config(load_config("configs/demo.py"))

The ConfigDict stops here. Every stage takes these frozen dataclasses, and every training run
the demo starts is derived from one base with `dataclasses.replace` (`TrainSpec.for_policy`,
`TrainSpec.for_warmup`). Only `TrainSpec.config_dict()` turns a run back into the ConfigDict
that `corea_jax.rl.train.run` reads, at the moment it is started.

Sections (each a config section of the same name, with the key names as fields):
- `warmup` (`WarmupConfig`): stage 1, the SFT warm start and the settings it was made with;
- `tune` (`TuneConfig`): the `:tune` variant's validation search;
- `rl` (`TrainSpec`): the GRPO policies' training run, the warm-up's base too;
- `cascade` (`corea_jax.cascade.CascadeConfig`): the compare stage's questions, SLM decoding,
  simulated LLM, tau rules and signals.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from corea_jax.cascade.settings import CascadeConfig
from corea_jax.errors import CoreaError
from corea_jax.rl.config import SECTIONS, RunConfig
from corea_jax.sections import build_section

MODES = ("experiment", "tune")

# The demo's policies: name -> (reward preset, training overrides `{section: {field: value}}`).
# A policy is a reward preset unless it also changes how the reward is used (beyond the paper).
POLICIES: dict[str, tuple[str, dict]] = {
    "rlvr": ("rlvr", {}),
    "brier": ("brier", {}),
    "corea": ("corea", {}),
    "corea_l2": ("corea_l2", {}),
    "corea_kl": ("corea_kl", {}),
    # Beyond the paper: COREA's reward with segment-wise advantages (DCPO, BAE): the tokens of
    # the <confidence> span get the calibration advantage only, the others the correctness +
    # format advantage (`corea_jax.rl.advantages`). COREA's target is one value per group, so
    # the calibration reward is centred within the group ("group" baseline).
    "corea_split": (
        "corea",
        {"advantage": {"spans": "confidence", "confidence_baseline": "group"}},
    ),
}


@dataclasses.dataclass(frozen=True)
class WarmupConfig:
    """Stage 1: the SFT warm-up on reference traces (`configs/demo.py` says why each value).

    `model`: "bundled" (corea_jax/assets/demo_warmup, used while every other field here and the
    recorded training settings match), "" (train one), or a HF model directory to start from.
    `random_confidence`: the share of traces stating a two-decimal confidence drawn by the
    question's hash instead of `rl.train.sft_confidence`.
    """

    model: str = "bundled"
    steps: int = 1000
    batch: int = 128
    learning_rate: float = 1e-3
    lr_warmup_steps: int = 50
    schedule: str = "constant"
    train_size: int = 30_000
    random_confidence: float = 0.5


@dataclasses.dataclass(frozen=True)
class TuneConfig:
    """The validation search of `:tune` (`corea_jax.demo.tuning`): every policy x learning
    rate x std scaling x calibration weight (for a reward with a calibration term), trained with
    seed `seed`, scored on `questions` validation questions by `objective`
    (`tuning.OBJECTIVES`)."""

    learning_rates: tuple[float, ...] = (2e-5, 5e-5, 1e-4)
    std_scalings: tuple[str, ...] = ("group", "none")
    calibration_weights: tuple[float, ...] = (1.0,)
    questions: int = 300
    seed: int = 0
    objective: str = "brier"

    def __post_init__(self):
        from corea_jax.demo.tuning import OBJECTIVES

        if self.objective not in OBJECTIVES:
            raise CoreaError(f"tune.objective={self.objective!r}: expected one of "
                             f"{sorted(OBJECTIVES)}")  # fmt: skip
        if not (self.learning_rates and self.std_scalings and self.calibration_weights):
            raise CoreaError("tune: learning_rates, std_scalings and calibration_weights need "
                             "at least one value each")  # fmt: skip


# The parts of a training config that are not yet typed sections of `RunConfig`: they travel
# as plain dicts and go back into the ConfigDict unchanged.
UNTYPED = ("model", "data", "mesh")


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """One training run: its typed sections (`RunConfig`) and the model, data and mesh
    sections as plain mappings. Derive a run with `dataclasses.replace` or the helpers below."""

    run: RunConfig
    model: Mapping[str, Any]
    data: Mapping[str, Any]
    mesh: Mapping[str, Any]

    @classmethod
    def from_config(cls, config) -> TrainSpec:
        missing = [k for k in UNTYPED if k not in config]
        if missing:
            raise CoreaError(f"rl: missing section(s) {', '.join('rl.' + k for k in missing)}")
        return cls(
            run=RunConfig.from_config(config),
            **{k: _plain(config[k].to_dict()) for k in UNTYPED},
        )

    def config_dict(self):
        """The ConfigDict `corea_jax.rl.train.run` takes: every section, typed ones as dicts."""
        import ml_collections

        sections = {name: dataclasses.asdict(getattr(self.run, name)) for name in SECTIONS}
        return ml_collections.ConfigDict(
            {**sections, **{k: _plain(getattr(self, k)) for k in UNTYPED}}
        )

    def settings(self) -> dict:
        """Every section as plain JSON-able dicts (what `config.json` records of the run)."""
        return json.loads(self.config_dict().to_json())

    def replace(self, **sections) -> TrainSpec:
        """This run with some sections' fields replaced: `replace(train={"seed": 1})`."""
        run_fields, other = {}, {}
        for name, fields in sections.items():
            if name in SECTIONS:
                run_fields[name] = dataclasses.replace(getattr(self.run, name), **fields)
            elif name in UNTYPED:
                other[name] = {**getattr(self, name), **fields}
            else:
                raise CoreaError(f"rl: no section {name!r}")
        return dataclasses.replace(self, run=dataclasses.replace(self.run, **run_fields), **other)

    def from_model(self, model_dir: str) -> TrainSpec:
        """This run started from the HF model directory `model_dir` (not from scratch)."""
        scratch = {**self.model["scratch"], "enabled": False}
        return self.replace(model={"path": str(model_dir), "scratch": scratch})


def _section(config, name: str) -> dict:
    return config[name].to_dict() if name in config else {}


def _plain(value):
    """Nested mappings as dicts and lists as tuples, so a spec compares and copies as data."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_plain(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """Everything `corea-jax demo` runs (`configs/demo.py` documents each value's origin).

    Attributes:
      policies: the reward presets trained with GRPO (`corea_jax.rl.rewards.PRESETS`).
      seeds: GRPO seeds per reward; seed s is the data order and every rollout draw.
      greedy: also decode every SLM greedily on the test questions (the second table).
      bootstrap: replicates of the question x seed bootstrap behind every interval.
      mode: "experiment" (the stages, the report) or "tune" (the validation search).
      learning_rates, std_scalings, calibration_weights: per policy, as chosen on validation by
        `:tune`; a policy missing here uses `rl.optim.learning_rate`,
        `rl.advantage.std_scaling` / `rl.reward.calibration_weight`.
      llm_gaps: the simulated LLMs nearer the SLM the cascade is also shown against, in pass@1
        above the trained SLMs' mean on the calibration split (`corea_jax.demo.strengths`).
    """

    policies: tuple[str, ...]
    seeds: tuple[int, ...]
    rl: TrainSpec
    cascade: CascadeConfig
    warmup: WarmupConfig = WarmupConfig()
    tune: TuneConfig = TuneConfig()
    greedy: bool = True
    bootstrap: int = 1000
    mode: str = "experiment"
    learning_rates: Mapping[str, float] = dataclasses.field(default_factory=dict)
    std_scalings: Mapping[str, str] = dataclasses.field(default_factory=dict)
    calibration_weights: Mapping[str, float] = dataclasses.field(default_factory=dict)
    llm_gaps: tuple[float, ...] = (0.20, 0.10)

    def __post_init__(self):
        if self.mode not in MODES:
            raise CoreaError(f"demo config: mode={self.mode!r}: expected one of {MODES}")
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown or not self.policies:
            raise CoreaError(
                f"demo config: policies={self.policies!r}: expected some of {sorted(POLICIES)}"
            )
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise CoreaError(f"demo config: seeds={self.seeds!r}: expected distinct seeds")
        if any(not 0 < g < 1 for g in self.llm_gaps):
            raise CoreaError(f"demo config: llm_gaps={self.llm_gaps!r}: expected values in (0, 1)")
        if self.bootstrap < 10:
            raise CoreaError(f"demo config: bootstrap={self.bootstrap}: expected >= 10")

    @classmethod
    def from_config(cls, config) -> DemoConfig:
        """The ConfigDict of `configs/demo.py` as typed settings; a misspelt key is an error."""
        sections = {"rl", "cascade", "warmup", "tune"}
        plain = {f.name for f in dataclasses.fields(cls)} - sections
        unknown = sorted(set(config) - plain - sections)
        if unknown:
            raise CoreaError(
                f"unknown config key {', '.join(unknown)} (known: {sorted(plain | sections)})"
            )
        values = {k: config[k] for k in plain if k in config}
        for key in ("learning_rates", "std_scalings", "calibration_weights"):
            if key in values:
                values[key] = dict(values[key])
        for key in ("policies", "seeds", "llm_gaps"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(
            rl=TrainSpec.from_config(config.rl),
            cascade=CascadeConfig.from_config(config.cascade),
            warmup=build_section(WarmupConfig, _section(config, "warmup"), "warmup"),
            tune=build_section(TuneConfig, _section(config, "tune"), "tune"),
            **values,
        )

    def learning_rate(self, preset: str) -> float:
        return self.learning_rates.get(preset, self.rl.run.optim.learning_rate)

    def std_scaling(self, preset: str) -> str:
        return self.std_scalings.get(preset, self.rl.run.advantage.std_scaling)

    def calibration_weight(self, preset: str) -> float:
        return self.calibration_weights.get(preset, self.rl.run.reward.calibration_weight)
