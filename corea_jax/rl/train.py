"""The training loop: rollout -> parse -> grade -> rewards -> advantages -> update -> log -> save.

`run(config, workdir)` is what `corea-jax train` calls; everything below it takes typed
arguments. One copy of the weights: the sampler is given the trainer's current (sharded)
parameters on every rollout, so there is no trainer -> sampler weight sync.

Determinism and resume. Step s uses prompts s*B .. s*B + B - 1 of a per-epoch permutation of
the training set (seeded by (seed, epoch)), and rollout seed (seed, s). A checkpoint therefore
needs only the TrainState (its `step` is the data position) and the run's config: a run killed
at any step and resumed from `--workdir` replays exactly the steps it had not finished, and
resuming at an epoch boundary simply starts the next epoch's permutation.

Faults. A non-finite loss or gradient is rejected inside the step (parameters kept) and stops
the run with an error naming the step; checkpoints are only written after finite steps, so the
last good one is never overwritten. SIGTERM (preemption) saves a checkpoint and exits cleanly.

Departures from standard GRPO (see `grpo.py` for the loss): advantages are mean-centred
without std scaling by default (RLCR's choice; std scaling pushes models to overconfidence), and
the rollout log-probs come from the sampler, so no extra forward pass computes the old policy.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh

from corea_jax.atomic_files import write_atomic
from corea_jax.errors import CoreaError
from corea_jax.parallel.sharding import DEFAULT_RULES, named_sharding, put_global, to_host
from corea_jax.rl import advantages as adv_lib
from corea_jax.rl import grpo, rewards
from corea_jax.rl.metric_writers import MetricsWriter, peak_flops_per_chip, train_flops
from corea_jax.rl.train_step import (
    Batch,
    OptimConfig,
    TrainState,
    completion_logprobs,
    init_train_state,
    jit_train_step,
    make_batch,
    make_optimizer,
)
from corea_jax.sampling import Sampler, bucket, make_method
from corea_jax.scoring import metrics as metrics_lib


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    """Sampling for GRPO groups. Defaults: G = 8, temperature 1.0, 256 new tokens."""

    group_size: int = 8
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None


@dataclasses.dataclass(frozen=True)
class LoopConfig:
    steps: int = 100
    prompts_per_step: int = 8  # B; the batch has B x G rows
    num_iterations: int = 1  # mu: updates per rollout batch
    micro_batches: int = 1
    seed: int = 0
    mode: str = "grpo"  # "grpo" | "sft"
    sft_confidence: float = 0.9  # the confidence the SFT reference traces state
    log_every: int = 1
    checkpoint_every: int = 10
    keep_checkpoints: int = 3
    grading_workers: int = 1
    eval_every: int = 0  # steps between held-out evaluations (0: never)
    eval_max_new_tokens: int = 256


@dataclasses.dataclass
class Task:
    """What the loop trains on: tokenised prompts plus everything needed to grade them."""

    prompts: list[list[int]]  # per record
    golds: list[str]
    kinds: list[str]
    references: list[str] | None  # SFT targets (completion text), or None


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n)


def batch_indices(n: int, batch: int, step: int, seed: int) -> np.ndarray:
    """Record indices of step `step`: a slice of the per-epoch permutation, across epochs."""
    flat = np.arange(step * batch, (step + 1) * batch)
    epochs = flat // n
    return np.array([epoch_order(n, seed, e)[i % n] for e, i in zip(epochs, flat, strict=True)])


def load_user_function(spec: str) -> Callable:
    """`package.module:function` -> the function (user reward terms, without editing us).

    The working directory is put on `sys.path` first, so a module next to where the command
    runs imports under the console script too (which, unlike `python -m`, does not add it).
    """
    module, _, name = spec.partition(":")
    if not module or not name:
        raise CoreaError(f"reward.extra_term {spec!r}: expected 'module:function'")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise CoreaError(f"reward.extra_term {spec!r}: cannot import ({e})") from e


class Trainer:
    """Holds the jitted step, the sampler and the checkpoint manager for one run."""

    def __init__(
        self,
        model,
        tokenizer,
        task: Task,
        *,
        workdir: Path,
        mesh: Mesh,
        rollout: RolloutConfig,
        loop: LoopConfig,
        optim: OptimConfig,
        loss: grpo.LossConfig,
        reward: rewards.RewardConfig,
        advantage: adv_lib.AdvantageConfig,
        extra_reward: Callable | None = None,
        eval_task: Task | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.tokenizer, self.task, self.workdir, self.mesh = tokenizer, task, workdir, mesh
        self.rollout, self.loop, self.optim, self.loss = rollout, loop, optim, loss
        self.reward, self.advantage, self.extra_reward = reward, advantage, extra_reward
        self.log = log or functools.partial(print, file=sys.stderr)
        self.eval_task = eval_task
        self.config_json = "{}"  # set by `run` to the run's config (recorded in checkpoints)
        self.model_config = model.config
        self.graphdef, params = nnx.split(model)
        self.optimizer = make_optimizer(optim)
        param_shardings = jax.tree.map(lambda x: x.sharding, params)
        self.state, self.state_shardings = init_train_state(
            self.optimizer, params, param_shardings, mesh
        )
        # The frozen reference policy for the KL penalty: the initial parameters, copied only
        # when beta > 0 (with beta = 0 no reference model is materialised).
        self.ref_params = None
        if loss.beta > 0:
            self.ref_params = jax.tree.map(jnp.copy, self.state.params)
            self._ref_logprobs = jax.jit(
                functools.partial(completion_logprobs, self.graphdef), static_argnums=(3,)
            )
        eos = set(model.config.eos_token_ids)
        if tokenizer.eos_token_id is not None:
            eos.add(tokenizer.eos_token_id)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.sampler = Sampler(model, eos_ids=sorted(eos), pad_id=self.pad_id, mesh=mesh)
        self.method = make_method(rollout.temperature, rollout.top_k, rollout.top_p)
        self.prompt_slots = bucket(max(len(p) for p in task.prompts))
        self.eval_batch = 64
        self._steps = {}
        self._stop = False
        self.checkpoints = _checkpoint_manager(workdir / "checkpoints", loop)
        self._grader = None

    # -- pieces ------------------------------------------------------------------------------

    def _step_fn(self, rows: int, completion_len: int):
        key = (rows, completion_len)
        if key not in self._steps:
            shape = (rows, self.prompt_slots + completion_len)
            batch_sharding = Batch(
                tokens=named_sharding(self.mesh, ("batch", None), shape, DEFAULT_RULES),
                valid=named_sharding(self.mesh, ("batch", None), shape, DEFAULT_RULES),
                weights=named_sharding(self.mesh, ("batch", None), (rows, completion_len)),
                advantages=named_sharding(self.mesh, ("batch",), (rows,)),
                old_logprobs=named_sharding(self.mesh, ("batch", None), (rows, completion_len)),
                ref_logprobs=None
                if self.ref_params is None
                else named_sharding(self.mesh, ("batch", None), (rows, completion_len)),
            )
            self._steps[key] = (
                batch_sharding,
                jit_train_step(
                    self.graphdef,
                    self.state_shardings,
                    batch_sharding,
                    self.mesh,
                    optimizer=self.optimizer,
                    loss_config=self.loss,
                    mode=self.loop.mode,
                    num_micro=self.loop.micro_batches,
                ),
            )
        return self._steps[key]

    def _grade(self, golds, kinds, answers) -> np.ndarray:
        from corea_jax.scoring.grading import GradeTask
        from corea_jax.scoring.grading_workers import Grader

        if self._grader is None:
            self._grader = Grader(workers=self.loop.grading_workers)
        tasks = [GradeTask(g, a, k) for g, k, a in zip(golds, kinds, answers, strict=True)]
        return np.array([grade.correct for grade in self._grader.grade(tasks)], bool)

    def close(self):
        if self._grader is not None:
            self._grader.close()
        self.checkpoints.wait_until_finished()

    def _rollout_batch(self, step: int, idx: np.ndarray) -> tuple[Batch, dict]:
        from corea_jax.scoring.parsing import parse_groups

        b, g = len(idx), self.rollout.group_size
        prompts = [self.task.prompts[i] for i in idx]
        t0 = time.perf_counter()
        out = self.sampler.generate(
            prompts,
            max_new_tokens=self.rollout.max_new_tokens,
            n=g,
            method=self.method,
            seed=self.loop.seed * 1_000_003 + step,
            params=self.state.params,
        )
        t1 = time.perf_counter()
        texts = [
            self.tokenizer.decode(out.row_tokens(r), skip_special_tokens=True) for r in range(b * g)
        ]
        parsed = parse_groups([texts[i * g : (i + 1) * g] for i in range(b)])
        answers = [a for row in parsed.answers for a in row]
        golds = [self.task.golds[i] for i in idx for _ in range(g)]
        kinds = [self.task.kinds[i] for i in idx for _ in range(g)]
        correct = self._grade(golds, kinds, answers).reshape(b, g)
        t2 = time.perf_counter()
        parts = rewards.compute_rewards(
            jnp.asarray(correct), jnp.asarray(parsed.confidence),
            jnp.asarray(parsed.format_ok), self.reward,
        )  # fmt: skip
        reward = parts["reward"]
        if self.extra_reward is not None:
            extra = self.extra_reward(
                correct=jnp.asarray(correct), confidence=jnp.asarray(parsed.confidence),
                format_ok=jnp.asarray(parsed.format_ok), texts=texts,
            )  # fmt: skip
            extra = jnp.asarray(extra, jnp.float32)
            if extra.shape not in ((b, g), (b * g,)):  # a [G, B] array must not slip through
                raise CoreaError(
                    f"reward.extra_term {self.extra_reward.__name__}: returned shape "
                    f"{extra.shape}, expected [{b}, {g}] (prompts x group)"
                )
            reward = reward + extra.reshape(b, g)
            parts["extra"] = extra.reshape(b, g)
        adv, adv_stats = adv_lib.group_advantages(reward, self.advantage)
        batch = make_batch(
            prompts,
            out.prompt_index,
            out.tokens,
            out.lengths,
            prompt_slots=self.prompt_slots,
            loss_config=self.loss,
            advantages=np.asarray(adv).reshape(-1),
            old_logprobs=out.logprobs,
            pad_id=self.pad_id,
        )
        if self.ref_params is not None:
            n = batch.weights.shape[1]
            ref, _ = self._ref_logprobs(self.ref_params, batch.tokens, batch.valid, n)
            batch = batch._replace(ref_logprobs=to_host(ref) * (batch.weights > 0))
        conf = parsed.confidence[parsed.format_ok]
        metrics = {
            "reward": float(jnp.mean(reward)),
            **{f"reward/{k}": float(jnp.mean(v)) for k, v in parts.items() if k != "reward"},
            "accuracy": float(correct.mean()),
            "format_rate": float(parsed.format_ok.mean()),
            "confidence_mean": float(conf.mean()) if conf.size else float("nan"),
            "confidence_hist": np.histogram(conf, bins=10, range=(0, 1))[0].tolist(),
            # Invalid confidences count as 0 (the deferral rule's reading of them).
            "batch_ece": float(
                metrics_lib.expected_calibration_error(
                    jnp.asarray(np.where(parsed.format_ok, parsed.confidence, 0.0)),
                    jnp.asarray(correct),
                )
            ),
            "zero_variance_groups": float(adv_stats["zero_variance_fraction"]),
            "completion_length": float(out.lengths.mean()),
            "tokens_per_s": float(out.lengths.sum() / max(t1 - t0, 1e-9)),
            "time/rollout": t1 - t0,
            "time/grading": t2 - t1,
        }
        return batch, metrics

    def _sft_batch(self, idx: np.ndarray) -> tuple[Batch, dict]:
        if self.task.references is None:
            raise CoreaError("train.mode=sft needs reference completions (the synthetic task)")
        prompts = [self.task.prompts[i] for i in idx]
        eos = self.tokenizer.eos_token_id
        targets = [
            self.tokenizer(self.task.references[i], add_special_tokens=False)["input_ids"]
            + ([eos] if eos is not None else [])
            for i in idx
        ]
        # Multiples of 16, finer than the sampler's buckets: SFT batches are full of long
        # traces, and the few shapes this gives compile once each.
        n = -(-max(len(t) for t in targets) // 16) * 16
        completions = np.full((len(idx), n), self.pad_id, np.int32)
        for r, t in enumerate(targets):
            completions[r, : len(t)] = t
        lengths = np.array([len(t) for t in targets], np.int32)
        batch = make_batch(
            prompts, np.arange(len(idx)), completions, lengths,
            prompt_slots=self.prompt_slots, loss_config=grpo.LossConfig(), pad_id=self.pad_id,
        )  # fmt: skip
        return batch, {"completion_length": float(lengths.mean())}

    def evaluate(self) -> dict:
        """Greedy answers on the held-out task: pass@1, format rate, ECE, AUROC (`eval/...`)."""
        from corea_jax.sampling.sampler import GREEDY
        from corea_jax.scoring.parsing import parse_completion

        task = self.eval_task
        texts = []
        for start in range(0, len(task.prompts), self.eval_batch):
            out = self.sampler.generate(
                task.prompts[start : start + self.eval_batch],
                max_new_tokens=self.loop.eval_max_new_tokens,
                method=GREEDY,
                params=self.state.params,
            )
            texts += [
                self.tokenizer.decode(out.row_tokens(r), skip_special_tokens=True)
                for r in range(len(out.lengths))
            ]
        parsed = [parse_completion(t) for t in texts]
        correct = self._grade(task.golds, task.kinds, [p.answer for p in parsed])
        summary = metrics_lib.calibration_summary(
            correct,
            [p.confidence if p.confidence is not None else 0.0 for p in parsed],
            confidence_valid=[p.confidence is not None for p in parsed],
            format_ok=[p.format_ok for p in parsed],
        )
        keys = ("pass@1", "format_rate", "ece", "auroc", "brier", "mean_confidence")
        return {f"eval/{k}": summary[k] for k in keys}

    # -- the loop ----------------------------------------------------------------------------

    def _meta(self, step: int) -> dict:
        """What the checkpoint records beside the TrainState: the data position and the seeds
        it follows from (the loop derives both from the step), and the run's config."""
        return {
            "step": step,
            "data_position": step * self.loop.prompts_per_step,
            "prompts_per_step": self.loop.prompts_per_step,
            "seed": self.loop.seed,
            "rollout_seed_base": self.loop.seed * 1_000_003,
            "config": self.config_json,
        }

    def restore(self) -> int:
        latest = self.checkpoints.latest_step()
        if latest is None:
            return 0
        self.state, meta = _restore(self.checkpoints, latest, self.state, self.state_shardings)
        for key in ("prompts_per_step", "seed"):
            if meta.get(key) != self._meta(latest)[key]:
                raise CoreaError(
                    f"{self.checkpoints.directory}: checkpoint {latest} was trained with "
                    f"train.{key}={meta.get(key)}, this run has {self._meta(latest)[key]}; "
                    "resuming would change the data order (use a new --workdir)"
                )
        self.log(
            f"resumed from checkpoint at step {latest} (data position {meta['data_position']})"
        )
        return latest

    def save(self, step: int, *, force: bool = False) -> None:
        if self.checkpoints.latest_step() == step:
            return
        _save(self.checkpoints, step, self.state, self._meta(step), force=force)

    def train(self, steps: int, writer: MetricsWriter) -> TrainState:
        from tqdm import tqdm

        peak = peak_flops_per_chip()
        num_params = self.model_config.num_params()

        start = int(to_host(self.state.step))
        previous = signal.signal(signal.SIGTERM, self._on_sigterm)
        bar = tqdm(total=steps, initial=start, desc=f"train ({self.loop.mode})", file=sys.stderr,
                   disable=None, mininterval=5)  # fmt: skip
        try:
            for step in range(start, steps):
                t0 = time.perf_counter()
                idx = batch_indices(
                    len(self.task.prompts), self.loop.prompts_per_step, step, self.loop.seed
                )
                if self.loop.mode == "sft":
                    batch, metrics = self._sft_batch(idx)
                else:
                    batch, metrics = self._rollout_batch(step, idx)
                t1 = time.perf_counter()
                rows, n = batch.weights.shape
                batch_tokens = int(np.asarray(batch.valid).sum())  # host numpy, before placement
                batch_sharding, step_fn = self._step_fn(rows, n)
                batch = jax.tree.map(put_global, batch, batch_sharding)
                for _ in range(self.loop.num_iterations):
                    new_state, update_metrics = step_fn(self.state, batch)
                    update_metrics = jax.tree.map(to_host, update_metrics)
                    if not update_metrics["finite"]:
                        self.state = new_state  # unchanged params: the step kept the old ones
                        raise CoreaError(
                            f"step {step}: non-finite loss or gradient (loss="
                            f"{float(update_metrics['loss'])}, grad_norm="
                            f"{float(update_metrics['grad_norm'])}); parameters not updated, "
                            f"last checkpoint kept: {self.checkpoints.latest_step()}"
                        )
                    self.state = new_state
                t2 = time.perf_counter()
                metrics.update({k: float(v) for k, v in update_metrics.items()})
                metrics.update({"step": step + 1, "time/update": t2 - t1, "time/step": t2 - t0})
                if peak is not None:
                    flops = train_flops(num_params, batch_tokens * self.loop.num_iterations)
                    metrics["mfu/update"] = flops / ((t2 - t1) * peak * self.mesh.size)
                if (
                    self.eval_task is not None
                    and self.loop.eval_every
                    and ((step + 1) % self.loop.eval_every == 0 or step + 1 == steps)
                ):
                    metrics.update(self.evaluate())
                if (step + 1) % self.loop.log_every == 0:
                    writer.write(step + 1, metrics)
                bar.update(1)
                bar.set_postfix(
                    {
                        k: round(metrics[k], 3)
                        for k in ("loss", "reward", "accuracy")
                        if k in metrics
                    }
                )
                if (step + 1) % self.loop.checkpoint_every == 0 or step + 1 == steps:
                    self.save(step + 1)
                if self._stop:
                    self.save(step + 1, force=True)
                    self.log(f"SIGTERM: saved step {step + 1} and stopped")
                    break
        finally:
            bar.close()
            signal.signal(signal.SIGTERM, previous)
        return self.state

    def _on_sigterm(self, signum, frame):
        self._stop = True

    def export(self, out_dir: Path, tokenizer_dir: Path) -> Path:
        from corea_jax.models import save_model

        model = nnx.merge(self.graphdef, self.state.params)
        return save_model(model, out_dir, tokenizer_dir=tokenizer_dir)


def _trim_metrics(path: Path, step: int) -> None:
    """Drops log lines of steps after `step` (logged, then lost to a crash before a checkpoint),
    so a resumed run's metrics.jsonl has each step once. Rewritten atomically."""
    if not path.exists() or jax.process_index() != 0:
        return
    kept = [
        line for line in path.read_text().splitlines() if json.loads(line).get("step", 0) <= step
    ]
    write_atomic(path, "".join(line + "\n" for line in kept))


# -- checkpoints -----------------------------------------------------------------------------


def _checkpoint_manager(directory: Path, loop: LoopConfig):
    import orbax.checkpoint as ocp

    options = ocp.CheckpointManagerOptions(
        max_to_keep=loop.keep_checkpoints, enable_async_checkpointing=True, create=True
    )
    return ocp.CheckpointManager(directory.absolute(), options=options)


def _save(manager, step: int, state: TrainState, meta: dict, *, force: bool) -> None:
    import orbax.checkpoint as ocp

    args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
    manager.save(step, args=args, force=force)


def _restore(manager, step: int, like: TrainState, shardings) -> tuple[TrainState, dict]:
    import orbax.checkpoint as ocp

    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), like, shardings
    )
    args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
    restored = manager.restore(step, args=args)
    return restored["state"], dict(restored["meta"])


# -- entry point -----------------------------------------------------------------------------


def build_task(config, tokenizer, split: str = "train") -> Task:
    """Prompts of the config's data source (`split`: "train" or "eval"), chat-template encoded.

    Synthetic task: "eval" is its "calibration" split, `config.train.eval_size` questions.
    DeepMath: "eval" is the DeepMath500 side of our split. Other sources: the first
    `eval_size` records (a user should point `data.path` at a held-out file).
    """
    from corea_jax.data import prompts as prompt_lib
    from corea_jax.data import synthetic

    data = config.data
    if data.source == "synthetic":
        task = synthetic.SyntheticTask(**data.synthetic.to_dict())
        records = synthetic.make_split(
            task,
            "train" if split == "train" else "calibration",
            data.train_size if split == "train" else config.train.eval_size,
        )
        templates = synthetic.SYNTHETIC_PROMPTS
        references = [
            synthetic.reference_completion(
                r,
                synthetic.warmup_confidence(
                    r, config.train.sft_confidence, config.train.sft_random_confidence
                ),
            )
            for r in records
        ]
    else:
        from corea_jax.data import deepmath_split, read_dataset

        if not data.path:
            raise CoreaError(f"data.path: needed for data.source={data.source!r}")
        records = read_dataset(data.source, data.path).records
        if data.source == "deepmath":
            parts = deepmath_split(records, train_size=data.train_size)
            records = parts.train if split == "train" else parts.test
        elif split != "train":
            records = records[: config.train.eval_size]
        templates = prompt_lib.PromptTemplates()
        references = None
    prompts = [prompt_lib.encode_prompt(r, tokenizer, templates) for r in records]
    return Task(
        prompts=prompts,
        golds=[r.answer for r in records],
        kinds=[r.kind for r in records],
        references=references,
    )


def scratch_texts(config) -> list[str]:
    from corea_jax.data import synthetic

    task = synthetic.SyntheticTask(**config.data.synthetic.to_dict())
    records = synthetic.make_split(task, "train", min(config.data.train_size, 2000))
    return [r.question for r in records] + [
        synthetic.reference_completion(r, c) for r in records for c in (0.1, 0.5, 0.9)
    ]


def run(config, workdir: str | Path) -> Path:
    """Trains as the config says; checkpoints, metrics and the exported model go to workdir."""
    from corea_jax.models import load_model, load_tokenizer
    from corea_jax.models.scratch import ScratchModel, build_scratch_model
    from corea_jax.parallel.sharding import make_mesh
    from corea_jax.rl.advantages import AdvantageConfig

    workdir = Path(workdir)
    data = config.data
    if data.source != "synthetic":  # fail before a large checkpoint is loaded
        if not data.path:
            raise CoreaError(f"data.path: needed for data.source={data.source!r}")
        if not Path(data.path).exists():
            raise CoreaError(f"data.path: {data.path}: no such file or directory")
    workdir.mkdir(parents=True, exist_ok=True)
    if config.model.scratch.enabled:
        model_dir = workdir / "initial_model"
        if jax.process_index() == 0 and not (model_dir / "config.json").exists():
            build_scratch_model(
                model_dir,
                scratch_texts(config),
                ScratchModel(**config.model.scratch.spec.to_dict()),
            )
        if jax.process_count() > 1:  # the others wait until process 0 has written it
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("corea_jax.rl.train: initial model")
    else:
        if not config.model.path:
            raise CoreaError("model.path: set a HF model directory (or model.scratch.enabled)")
        model_dir = Path(config.model.path)
    mesh = make_mesh(tuple(config.mesh.shape))
    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir, dtype=jnp.dtype(config.model.dtype), mesh=mesh)
    task = build_task(config, tokenizer)

    r = config.reward
    reward_cfg = rewards.reward_config(
        r.preset,
        correctness_weight=r.correctness_weight,
        format_weight=r.format_weight,
        calibration_weight=r.calibration_weight,
        kl_eps=r.kl_eps,
    )
    t = config.train
    loop = LoopConfig(
        steps=t.steps, prompts_per_step=t.prompts_per_step, num_iterations=t.num_iterations,
        micro_batches=t.micro_batches, seed=t.seed, mode=t.mode, sft_confidence=t.sft_confidence,
        checkpoint_every=t.checkpoint_every, keep_checkpoints=t.keep_checkpoints,
        grading_workers=t.grading_workers, eval_every=t.eval_every,
        eval_max_new_tokens=t.eval_max_new_tokens,
    )  # fmt: skip
    if loop.mode not in ("grpo", "sft"):
        raise CoreaError(f"train.mode {loop.mode!r}: expected grpo or sft")
    ro = config.rollout
    trainer = Trainer(
        model,
        tokenizer,
        task,
        workdir=workdir,
        mesh=mesh,
        rollout=RolloutConfig(
            group_size=ro.group_size,
            max_new_tokens=ro.max_new_tokens,
            temperature=ro.temperature,
            top_p=ro.top_p,
            top_k=ro.top_k or None,
        ),  # fmt: skip
        loop=loop,
        optim=OptimConfig(**config.optim.to_dict(), total_steps=t.steps),
        loss=grpo.LossConfig(**config.loss.to_dict()),
        reward=reward_cfg,
        advantage=AdvantageConfig(**config.advantage.to_dict()),
        extra_reward=load_user_function(r.extra_term) if r.extra_term else None,
        eval_task=build_task(config, tokenizer, "eval") if t.eval_every else None,
    )
    trainer.config_json = config.to_json_best_effort()
    if jax.process_index() == 0:
        write_atomic(workdir / "config.json", config.to_json_best_effort(indent=2))
    try:
        resumed = trainer.restore()
        _trim_metrics(workdir / "metrics.jsonl", resumed)
        writer = MetricsWriter(workdir, tensorboard=t.tensorboard)
        try:
            trainer.train(t.steps, writer)
        finally:
            writer.close()
        if t.export and int(to_host(trainer.state.step)) >= t.steps:
            out = trainer.export(workdir / "export", model_dir)
            if jax.process_index() == 0:
                print(f"exported the policy to {out}", file=sys.stderr)
    finally:
        trainer.close()
    return workdir
