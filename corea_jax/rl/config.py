"""The settings of a training run: one frozen dataclass per config section, holding its defaults.

    run_config = RunConfig.from_config(config)     # each section built as Cls(**section)

| section            | dataclass                                   |
|--------------------|---------------------------------------------|
| `config.train`     | `TrainConfig` (the loop, below)             |
| `config.rollout`   | `corea_jax.rl.rollout.RolloutConfig`        |
| `config.optim`     | `corea_jax.rl.train_step.OptimConfig`       |
| `config.loss`      | `corea_jax.rl.grpo.LossConfig`              |
| `config.advantage` | `corea_jax.rl.advantages.AdvantageConfig`   |
| `config.reward`    | `corea_jax.rl.rewards.RewardPresetConfig`   |
| `config.compute`   | `corea_jax.rl.train_step.UpdateComputeConfig` |

`configs/common.py` builds these sections from the dataclasses' defaults
(`dataclasses.asdict(Cls())`) and overrides only what differs, so each default has one home.
"""

from __future__ import annotations

import dataclasses

from corea_jax.errors import CoreaError
from corea_jax.rl.advantages import AdvantageConfig
from corea_jax.rl.grpo import LossConfig
from corea_jax.rl.rewards import RewardPresetConfig
from corea_jax.rl.rollout import RolloutConfig
from corea_jax.rl.train_step import OptimConfig, UpdateComputeConfig
from corea_jax.sections import build_section

MODES = ("grpo", "sft")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """The `config.train` section: the loop's settings (`corea_jax.rl.train`). Defaults are the
    paper runs' (B = 32 questions per step, 8 micro-batches; PAPER.md leaves both open)."""

    steps: int = 500
    prompts_per_step: int = 32  # B; a GRPO batch has R = B x G rows
    num_iterations: int = 1  # mu: updates per rollout batch (the schedule counts updates)
    micro_batches: int = 8  # gradient accumulation: R splits into this many equal parts
    seed: int = 0  # the data order and every rollout seed
    mode: str = "grpo"  # "grpo" | "sft" (the supervised warm-up on reference traces)
    sft_confidence: float = 0.9  # the confidence the synthetic SFT traces state
    sft_random_confidence: float = 0.0  # share of traces stating a random one instead
    log_every: int = 1
    checkpoint_every: int = 25
    keep_checkpoints: int = 3
    grading_workers: int = 8
    export: bool = True  # write the final policy as a HF model directory (WORKDIR/export)
    tensorboard: bool = True
    eval_every: int = 50  # steps between held-out evaluations (0: never)
    eval_size: int = 500
    eval_batch: int = 64  # prompts per greedy generate call of the evaluation
    eval_max_new_tokens: int = 2048

    def __post_init__(self):
        if self.mode not in MODES:
            raise CoreaError(f"train.mode {self.mode!r}: expected grpo or sft")
        if self.num_iterations < 1:
            raise CoreaError(f"train.num_iterations={self.num_iterations}: expected >= 1")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every typed setting of a run, one dataclass per config section."""

    train: TrainConfig = TrainConfig()
    rollout: RolloutConfig = RolloutConfig()
    optim: OptimConfig = OptimConfig()
    loss: LossConfig = LossConfig()
    advantage: AdvantageConfig = AdvantageConfig()
    reward: RewardPresetConfig = RewardPresetConfig()
    compute: UpdateComputeConfig = UpdateComputeConfig()

    @classmethod
    def from_config(cls, config) -> RunConfig:
        """Each section built as `Cls(**section)`: a misspelt key is an error naming it."""
        return cls(
            **{
                name: build_section(section_cls, config[name].to_dict(), name)
                for name, section_cls in SECTIONS.items()
            }
        )


SECTIONS = {
    "train": TrainConfig,
    "rollout": RolloutConfig,
    "optim": OptimConfig,
    "loss": LossConfig,
    "advantage": AdvantageConfig,
    "reward": RewardPresetConfig,
    "compute": UpdateComputeConfig,
}
