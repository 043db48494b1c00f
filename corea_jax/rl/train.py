"""The training loop: rollout -> score -> rewards -> advantages -> update -> log -> save.

`run(config, workdir)` is what `corea-jax train` calls: it turns each config section into its
settings dataclass (`Cls(**section)`, the dataclass holding every default) and everything
below it takes typed arguments. The pieces live in their own modules: `rollout` (sample groups
-> texts), `rollout_rewards` (texts -> scores -> rewards, advantages), `batch` (layout,
shardings, the jitted update per shape), `checkpoint`, `evaluation`, `metric_writers` (with
`corea_jax.progress` for the bar: reward, mean stated confidence, accuracy per step), and the
data order in `corea_jax.data.pipeline`.

Determinism and resume. Step s trains on batch s of the grain data order (per-epoch
permutations seeded by (seed, epoch)) with rollout seed `rollout_seed(seed, s)`, and applies
`num_iterations` (mu) updates to that batch. Two counters: rollout steps (the loop's, the
checkpoint's name, the data position) and updates (`TrainState.updates` and optax's count, which
drive the learning-rate schedule: `make_optimizer`). A checkpoint holds the TrainState and the
grain iterator's state: a run killed at any step and resumed from `--workdir` replays exactly
the steps it had not finished, bit for bit.

Precision. The TrainState holds the master copy (`optim.master_dtype`, float32); the sampler,
the evaluation and the KL reference get the parameters in the model's dtype, cast once per
rollout step (`train_step.compute_copy`; why there, in `train_step`'s docstring). The export
writes the model's dtype.

Faults. A non-finite loss or gradient is rejected inside the step (parameters kept) and stops
the run with an error naming the step; checkpoints are only written after finite steps, so the
last good one is never overwritten. SIGTERM (preemption) saves a checkpoint and exits cleanly.

Departures from standard GRPO (see `grpo.py` for the loss): advantages are mean-centred
without std scaling by default (RLCR's choice; std scaling pushes models to overconfidence), and
the rollout log-probs come from the sampler, so no extra forward pass computes the old policy.
Optionally (`advantage.spans="confidence"`, off by default) the confidence span's tokens get
the calibration advantage and the others the correctness one (`advantages`, `spans`).
"""

from __future__ import annotations

import functools
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from jax.sharding import Mesh

from corea_jax.atomic_files import write_atomic
from corea_jax.data.pipeline import index_batches
from corea_jax.errors import CoreaError
from corea_jax.models import ModelConfig, check_preset, load_model, load_tokenizer, save_model
from corea_jax.models.scratch import ScratchModel, build_scratch_model
from corea_jax.parallel.sharding import make_mesh, put_global, to_host
from corea_jax.progress import progress
from corea_jax.rl import checkpoint as ckpt
from corea_jax.rl.batch import ReferencePolicy, StepCache, reference_tokens, sft_batch
from corea_jax.rl.config import RunConfig
from corea_jax.rl.evaluation import evaluate
from corea_jax.rl.metric_writers import MetricsWriter, peak_flops_per_chip, train_flops
from corea_jax.rl.rollout import Task, rollout_seed, sample_groups
from corea_jax.rl.rollout_rewards import load_extra_term, rewards_and_advantages, score_groups
from corea_jax.rl.spans import confidence_span_mask
from corea_jax.rl.task import build_task, check_data_source, scratch_texts
from corea_jax.rl.train_step import (
    Batch,
    compute_copy,
    init_train_state,
    learning_rate_schedule,
    make_batch,
    make_optimizer,
)
from corea_jax.sampling import Sampler, bucket
from corea_jax.scoring.grading_workers import Grader


def grpo_batch(sampler, tokenizer, task: Task, idx, *, run: RunConfig, step: int, params,
               grader, prompt_slots: int, extra_term=None) -> tuple[Batch, dict]:  # fmt: skip
    """Rollout of B = len(idx) questions -> the update's Batch (R = B x G rows) and metrics."""
    prompts = [task.prompts[i] for i in idx]
    rollout = sample_groups(
        sampler, tokenizer, prompts, run.rollout, seed=rollout_seed(run.train.seed, step),
        params=params,
    )  # fmt: skip
    t0 = time.perf_counter()
    items = [task.items[i] for i in idx]
    scored = score_groups(rollout.texts, items, run.rollout.group_size, grader)
    seconds = time.perf_counter() - t0
    out = rollout.out
    span_mask = None
    if run.advantage.spans == "confidence":
        span_mask = confidence_span_mask(tokenizer, out.tokens, out.lengths, rollout.texts)
    advantages, metrics = rewards_and_advantages(
        scored, rollout.texts, run.reward.kernel(), run.advantage, extra_term,
        span_mask=span_mask,
        levels=None if task.levels is None else [task.levels[i] for i in idx],
    )  # fmt: skip
    batch = make_batch(
        prompts, out.prompt_index, out.tokens, out.lengths, prompt_slots=prompt_slots,
        loss_config=run.loss, advantages=advantages, old_logprobs=out.logprobs,
        pad_id=sampler.pad_id,
    )  # fmt: skip
    metrics.update({
        "completion_length": float(out.lengths.mean()),
        "tokens_per_s": float(out.lengths.sum() / max(rollout.seconds, 1e-9)),
        "time/rollout": rollout.seconds,
        "time/grading": seconds,
    })  # fmt: skip
    return batch, metrics


def print_stderr(message: str) -> None:
    print(message, file=sys.stderr)


class _SigtermFlag:
    """While entered, SIGTERM (preemption) only sets `.raised`: the loop saves and stops."""

    def __enter__(self):
        self.raised = False
        self.previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.raised = True

    def __exit__(self, *exc):
        signal.signal(signal.SIGTERM, self.previous)


def train_loop(
    model, tokenizer, task: Task, run: RunConfig, *, workdir: Path, mesh: Mesh,
    eval_task: Task | None = None, config_json: str = "{}",
    log: Callable[[str], None] = print_stderr,
) -> tuple[nnx.GraphDef, object, int]:  # fmt: skip
    """Trains `model` on `task` for `run.train.steps` steps (resuming from `workdir`'s latest
    checkpoint). Returns (graphdef, params, the step reached)."""
    cfg = run.train
    graphdef, params = nnx.split(model)
    compute_dtype = model_dtype(params)
    optimizer = make_optimizer(
        run.optim, total_steps=cfg.steps, updates_per_step=cfg.num_iterations
    )
    schedule = learning_rate_schedule(run.optim, cfg.steps, cfg.num_iterations)
    state, state_shardings = init_train_state(
        optimizer, params, jax.tree.map(lambda x: x.sharding, params), mesh,
        master_dtype=run.optim.master_dtype,
    )  # fmt: skip
    # The master copy in the model's dtype, for the sampler and the evaluation (an identity
    # when the dtypes agree).
    policy_params = jax.jit(functools.partial(compute_copy, dtype=compute_dtype))
    if compute_copy(state.params, compute_dtype) is state.params:
        policy_params = lambda p: p  # noqa: E731
    reference = None
    if run.loss.beta > 0:
        reference = ReferencePolicy(graphdef, params, run.compute.logprob_chunk)
    sampler = Sampler.for_tokenizer(model, tokenizer, mesh=mesh)
    prompt_slots = bucket(max(len(p) for p in task.prompts))
    update_fns = StepCache(
        graphdef, state_shardings, mesh, prompt_slots=prompt_slots, with_ref=reference is not None,
        optimizer=optimizer, loss_config=run.loss, mode=cfg.mode, micro_batches=cfg.micro_batches,
        compute_dtype=compute_dtype, compute=run.compute,
    )  # fmt: skip
    extra_term = load_extra_term(run.reward.extra_term)
    batches = index_batches(
        len(task.prompts), batch_size=cfg.prompts_per_step, seed=cfg.seed, num_batches=cfg.steps
    ).to_iter_dataset()
    data = iter(batches)
    meta = lambda step: ckpt.RunMetadata(  # noqa: E731
        step, data.get_state(), cfg.prompts_per_step, cfg.seed, config_json, cfg.num_iterations
    )
    checkpoints = ckpt.checkpoint_manager(workdir / "checkpoints", cfg.keep_checkpoints)
    start, restored = 0, ckpt.restore(checkpoints, state, state_shardings)
    if restored is not None:
        state, saved = restored
        ckpt.check_resumable(saved, meta(saved["step"]), checkpoints.directory)
        start = saved["step"]
        if "updates" in saved and int(to_host(state.updates)) != saved["updates"]:
            raise CoreaError(
                f"{checkpoints.directory}: checkpoint {start} holds {int(to_host(state.updates))}"
                f" updates, its record says {saved['updates']}"
            )
        data.set_state(ckpt.data_state_of(saved))
        log(f"resumed from checkpoint at step {start} (data position {saved['data_position']})")
    ckpt.trim_metrics(workdir / "metrics.jsonl", start)
    grader = Grader(workers=cfg.grading_workers) if cfg.mode == "grpo" or eval_task else None
    peak, num_params = peak_flops_per_chip(), model.config.num_params()
    writer = MetricsWriter(workdir, tensorboard=cfg.tensorboard)
    done = start  # steps finished
    try:
        with (
            _SigtermFlag() as sigterm,
            progress(cfg.steps, f"train ({cfg.mode})", "step", initial=start) as bar,
        ):
            for step in range(start, cfg.steps):
                t0 = time.perf_counter()
                idx = next(data)
                if cfg.mode == "sft":
                    references = reference_tokens(tokenizer, [task.references[i] for i in idx])
                    batch, metrics = sft_batch(
                        [task.prompts[i] for i in idx], references, prompt_slots=prompt_slots,
                        pad_id=sampler.pad_id,
                    )  # fmt: skip
                else:
                    batch, metrics = grpo_batch(
                        sampler, tokenizer, task, idx, run=run, step=step,
                        params=policy_params(state.params),
                        grader=grader, prompt_slots=prompt_slots, extra_term=extra_term,
                    )  # fmt: skip
                if reference is not None:
                    batch = reference.add_logprobs(batch)
                t1 = time.perf_counter()
                batch_tokens = int(np.asarray(batch.valid).sum())  # host numpy, before placement
                shardings, update = update_fns(*batch.weights.shape)
                batch = jax.tree.map(put_global, batch, shardings)
                for _ in range(cfg.num_iterations):
                    state, update_metrics = update(state, batch)
                    update_metrics = jax.tree.map(to_host, update_metrics)
                    if not update_metrics["finite"]:  # the step kept the old parameters
                        raise CoreaError(
                            f"step {step}: non-finite loss or gradient (loss="
                            f"{float(update_metrics['loss'])}, grad_norm="
                            f"{float(update_metrics['grad_norm'])}); parameters not updated, "
                            f"last checkpoint kept: {checkpoints.latest_step()}"
                        )
                t2 = time.perf_counter()
                metrics.update({k: float(v) for k, v in update_metrics.items()})
                # The rate of this step's last update (the schedule counts updates).
                metrics["learning_rate"] = float(schedule((step + 1) * cfg.num_iterations - 1))
                metrics.update({"step": step + 1, "time/update": t2 - t1, "time/step": t2 - t0})
                if peak is not None:
                    flops = train_flops(num_params, batch_tokens * cfg.num_iterations)
                    metrics["mfu/update"] = flops / ((t2 - t1) * peak * mesh.size)
                if (
                    eval_task is not None
                    and cfg.eval_every
                    and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps)
                ):
                    metrics.update(evaluate(
                        sampler, tokenizer, eval_task, grader,
                        params=policy_params(state.params),
                        batch_size=cfg.eval_batch, max_new_tokens=cfg.eval_max_new_tokens,
                    ))  # fmt: skip
                if (step + 1) % cfg.log_every == 0:
                    writer.write(step + 1, metrics)
                bar.update(**bar_figures(metrics, cfg.mode))
                done = step + 1
                if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                    ckpt.save(checkpoints, state, meta(step + 1))
                if sigterm.raised:
                    ckpt.save(checkpoints, state, meta(step + 1), force=True)
                    log(f"SIGTERM: saved step {step + 1} and stopped")
                    break
    finally:
        writer.close()
        if grader is not None:
            grader.close()
        checkpoints.wait_until_finished()
    return graphdef, state.params, done


# The progress bar's figures, metric key -> short name: the rollout's reward, mean stated
# confidence, accuracy and format rate (`rollout_rewards.rollout_metrics`; an SFT step has its
# loss instead) and the last in-training evaluation's pass@1 and ECE (`evaluation.EVAL_KEYS`).
BAR_FIGURES = {
    "loss": "loss", "reward": "reward", "confidence_mean": "conf", "accuracy": "acc",
    "format_rate": "fmt", "eval/pass@1": "eval_acc", "eval/ece": "eval_ece",
}  # fmt: skip


def bar_figures(metrics: dict, mode: str) -> dict:
    """The step's figures for the progress bar (those it has; the loss only in SFT mode)."""
    keys = BAR_FIGURES if mode == "sft" else {k: v for k, v in BAR_FIGURES.items() if k != "loss"}
    return {short: metrics[key] for key, short in keys.items() if key in metrics}


def model_dtype(params) -> jnp.dtype:
    """The dtype of the model's floating parameters: the update's compute dtype."""
    dtypes = {x.dtype for x in jax.tree.leaves(params) if jnp.issubdtype(x.dtype, jnp.floating)}
    if len(dtypes) != 1:
        raise CoreaError(f"the model's parameters mix dtypes {sorted(map(str, dtypes))}")
    return dtypes.pop()


def model_directory(model, data, workdir: Path) -> Path:
    """The HF directory to start from: `model.path`, or a from-scratch model built (once, by
    process 0) in WORKDIR/initial_model."""
    if not model.scratch.enabled:
        if not model.path:
            raise CoreaError("model.path: set a HF model directory (or model.scratch.enabled)")
        return Path(model.path)
    model_dir = workdir / "initial_model"
    if jax.process_index() == 0 and not (model_dir / "config.json").exists():
        spec = ScratchModel(**model.scratch.spec.to_dict())
        build_scratch_model(model_dir, scratch_texts(data), spec)
    if jax.process_count() > 1:  # the others wait until process 0 has written it
        multihost_utils.sync_global_devices("corea_jax.rl.train: initial model")
    return model_dir


def run(config, workdir: str | Path) -> Path:
    """Trains as the config says; checkpoints, metrics and the exported model go to workdir."""
    workdir = Path(workdir)
    settings = RunConfig.from_config(config)
    t = settings.train
    check_data_source(config.data)  # before a large checkpoint is loaded
    workdir.mkdir(parents=True, exist_ok=True)
    model_dir = model_directory(config.model, config.data, workdir)
    hf_id = config.model.get("hf_id", "")
    if hf_id and not config.model.scratch.enabled:  # the checkpoint the run says it trains
        config_json = Path(model_dir) / "config.json"
        check_preset(hf_id, ModelConfig.from_hf_config(config_json), str(config_json))
    mesh = make_mesh(tuple(config.mesh.shape))
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, dtype=jnp.dtype(config.model.dtype), mesh=mesh)
    task_of = functools.partial(
        build_task, config.data, tokenizer, eval_size=t.eval_size,
        sft_confidence=t.sft_confidence, sft_random_confidence=t.sft_random_confidence,
    )  # fmt: skip
    task = task_of("train")
    if t.mode == "sft" and task.references is None:
        raise CoreaError("train.mode=sft needs reference completions (the synthetic task)")
    if jax.process_index() == 0:
        write_atomic(workdir / "config.json", config.to_json_best_effort(indent=2))
    graphdef, params, step = train_loop(
        model, tokenizer, task, settings, workdir=workdir, mesh=mesh,
        eval_task=task_of("eval") if t.eval_every else None,
        config_json=config.to_json_best_effort(),
    )  # fmt: skip
    if t.export and step >= t.steps:
        out = save_model(
            nnx.merge(graphdef, params), workdir / "export", dtype=jnp.dtype(config.model.dtype),
            tokenizer_dir=model_dir,
        )  # fmt: skip
        if jax.process_index() == 0:
            print(f"exported the policy to {out}", file=sys.stderr)
    return workdir
