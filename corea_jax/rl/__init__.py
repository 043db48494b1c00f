"""GRPO with a calibration reward: the kernels, the update and the loop that ties them together.

  rewards.py          reward kernels and presets over [B, G] (RewardConfig, RewardPresetConfig)
  advantages.py       group-relative advantages (AdvantageConfig), segment-wise ones for the
                      confidence span (spans="confidence")
  spans.py            the confidence span's completion tokens (host side, from decodes)
  grpo.py             the clipped loss, KL to a reference, loss weights (LossConfig)
  train_step.py       the jitted update: TrainState (float32 master copy), Batch, make_batch,
                      OptimConfig, UpdateComputeConfig (config.compute), the schedule
  config.py           TrainConfig and RunConfig: one dataclass per config section
  rollout.py          RolloutConfig, Task, sample_groups: prompts -> G completions each, as texts
  rollout_rewards.py  texts -> scores (corea_jax.scoring.score) -> rewards, advantages, metrics
  diagnostics.py      per-step calibration diagnostics (per-level confidence, AUROC, group SD)
  batch.py            batch shardings, the update per batch shape, SFT batches, the KL reference
  checkpoint.py       orbax save / restore with the run's metadata (data iterator state, seeds)
  evaluation.py       the held-out greedy evaluation
  task.py             the config's data section -> a Task (synthetic, files or TFDS)
  metric_writers.py   metrics.jsonl, TensorBoard, MFU (the progress line: corea_jax.progress)
  train.py            run(config, workdir) and train_loop: the loop itself

Axis letters: B prompts (questions) in a batch, G samples per prompt, R = B * G rows (one
completion each), T positions of a forward pass (= P + C in the update), P prompt slots,
C completion slots, V vocab.

Nothing is imported here, so that `configs/` can read the settings dataclasses without paying
for orbax, grain and the models; import the modules themselves.
"""
