"""The offline demo as a library: COREA and the paper's baselines on the synthetic task.

`corea-jax demo` (`corea_jax.cli.demo`) parses flags and calls `run(DemoConfig, workdir)`.
Modules, in the order the experiment uses them:
- `settings`: `DemoConfig` and its sections, built once from `configs/demo.py`;
- `stages`: the SFT warm start, the GRPO policies, greedy decoding;
- `tuning`: the `:tune` validation search;
- `tables`: every system over seeds with question x seed bootstrap intervals;
- `claims`: the verdicts, decided by whole intervals;
- `strengths`: the cascade at simulated LLMs nearer the SLM;
- `plots`, `report`: the figures and `report.md`;
- `experiment`: `run`, the stages in order, and `analyse`, every figure from the rows.
"""

from corea_jax.demo.experiment import analyse, run
from corea_jax.demo.settings import DemoConfig, TrainSpec, TuneConfig, WarmupConfig

__all__ = ["DemoConfig", "TrainSpec", "TuneConfig", "WarmupConfig", "analyse", "run"]
