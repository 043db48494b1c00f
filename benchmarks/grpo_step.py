"""One full GRPO iteration on a CPU: corea-jax's trainer vs TRL's `GRPOTrainer`, same run.

    .venv-py3.11/bin/python benchmarks/grpo_step.py [--steps 3] [--new-tokens 128]
        [--layers 4] [--hidden 256] [--vocab 8192] [--skip-trl]

Needs the `bench` extra (TRL with the pinned CPU torch): pip install -e .[bench]

Both sides get the same tiny random Qwen2 checkpoint (a HF directory written here with
transformers; 4 layers, hidden 256, vocab 8192 by default), the same tokenizer (a byte-level
BPE trained on the synthetic task, padded with added tokens to the model's vocabulary so any
sampled id decodes), the same 8 prompts x G = 8 per step (the synthetic task's questions in
ChatML), 128 new tokens (a random model rarely samples EOS, so nearly every row runs to the
limit; the mean completion lengths are printed), temperature 1, the same COREA reward (our
parser and grader, L1 calibration against the group accuracy), no KL term (beta = 0, no
reference model), one optimizer step per iteration (mu = 1), fp32, no activation
checkpointing on either side. corea-jax's update accumulates the gradient over
`--micro-batches` (default 8, the shared configs' default; the gradient is the full batch's):
smaller activations stay in cache, which is 15-20% faster on a CPU.

Timed: `--steps` iterations after one warm-up iteration (which includes jit compilation on our
side and lazy initialisation on TRL's), median reported. The split:
  - corea-jax: rollout = sampling + parsing + grading + rewards + advantages (the trainer's
    `time/step - time/update`), update = the jitted loss/gradient/AdamW step;
  - TRL: rollout = `_generate_and_score_completions` (generation, rewards, advantages and any
    extra log-prob pass), update = the rest of `training_step` (forward, backward, AdamW).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PROMPTS_PER_STEP = 8
GROUP = 8
REPO = Path(__file__).resolve().parents[1]

# torch, transformers, datasets and TRL (the `bench` extra) are imported inside the functions
# that use them, so `--skip-trl` runs without them.


def synthetic_config():
    """The shared defaults (configs/common.py) on the synthetic task."""
    if str(REPO) not in sys.path:  # a script's path is benchmarks/, not the checkout
        sys.path.insert(0, str(REPO))
    from configs.common import base_config

    c = base_config()
    c.data.source = "synthetic"
    return c


def build_checkpoint(out: Path, layers: int, hidden: int, vocab: int) -> None:
    """A random Qwen2 checkpoint and its tokenizer, written with transformers (torch)."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from corea_jax.models.scratch import train_tokenizer
    from corea_jax.rl.task import scratch_texts

    tokenizer = train_tokenizer(scratch_texts(synthetic_config().data), out, vocab_size=512)
    tokenizer.add_tokens([f"<x{i}>" for i in range(vocab - len(tokenizer))])
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    cfg = Qwen2Config(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=3 * hidden,
        num_hidden_layers=layers, num_attention_heads=hidden // 64, num_key_value_heads=2,
        max_position_embeddings=1024, tie_word_embeddings=True, rope_theta=10_000.0,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )  # fmt: skip
    Qwen2ForCausalLM(cfg).save_pretrained(out)


def bench_corea(
    model_dir: Path, workdir: Path, steps: int, new_tokens: int, micro_batches: int
) -> dict:
    from corea_jax.rl.train import run

    c = synthetic_config()
    c.data.train_size = PROMPTS_PER_STEP * (steps + 1)
    c.model.path = str(model_dir)
    c.model.dtype = "float32"
    c.rollout.max_new_tokens = new_tokens
    c.rollout.group_size = GROUP
    c.train.prompts_per_step = PROMPTS_PER_STEP
    c.train.steps = steps + 1
    c.train.micro_batches = micro_batches
    c.train.grading_workers = 1
    c.train.checkpoint_every = 10_000
    c.train.export = False
    c.train.tensorboard = False
    c.train.eval_every = 0
    c.optim.warmup_steps = 0
    run(c, workdir)
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()][1:]
    return {
        "step": [r["time/step"] for r in rows],
        "rollout": [r["time/step"] - r["time/update"] for r in rows],
        "update": [r["time/update"] for r in rows],
        "completion_length": [r["completion_length"] for r in rows],
    }


def bench_trl(model_dir: Path, workdir: Path, steps: int, new_tokens: int) -> dict:
    import datasets
    import jax.numpy as jnp
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from corea_jax.data import prompts as prompt_lib
    from corea_jax.data import synthetic
    from corea_jax.rl import rewards
    from corea_jax.rl.rollout_rewards import score_groups
    from corea_jax.scoring.grading_workers import Grader
    from corea_jax.scoring.score import ScoreItem

    torch.set_num_threads(os.cpu_count() or 1)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.padding_side = "left"
    records = synthetic.make_split(
        synthetic.SyntheticTask(), "train", PROMPTS_PER_STEP * (steps + 1)
    )
    texts = [
        tokenizer.decode(prompt_lib.encode_prompt(r, tokenizer, synthetic.SYNTHETIC_PROMPTS))
        for r in records
    ]
    data = datasets.Dataset.from_dict({"prompt": texts, "answer": [r.answer for r in records]})
    grader = Grader(workers=1)
    preset = rewards.reward_config("corea")

    def corea_reward(prompts, completions, answer, **_):
        # TRL repeats each question's answer G times; the scoring path takes one per question.
        items = [ScoreItem(a, "numeric") for a in answer[::GROUP]]
        scored = score_groups(completions, items, GROUP, grader)
        parts = rewards.compute_rewards(
            jnp.asarray(scored.correct), jnp.asarray(scored.confidence_or(0.0)),
            jnp.asarray(scored.format_ok), preset,
        )  # fmt: skip
        return np.asarray(parts["reward"]).reshape(-1).tolist()

    args = GRPOConfig(
        output_dir=str(workdir), per_device_train_batch_size=PROMPTS_PER_STEP * GROUP,
        num_generations=GROUP, max_completion_length=new_tokens, max_steps=steps + 1,
        learning_rate=1e-6, beta=0.0, num_iterations=1, temperature=1.0,
        gradient_accumulation_steps=1, use_cpu=True, bf16=False, logging_steps=1,
        report_to="none", save_strategy="no", shuffle_dataset=False, seed=0,
        dataloader_num_workers=0, gradient_checkpointing=False,
    )  # fmt: skip
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    trainer = GRPOTrainer(
        model=model, reward_funcs=[corea_reward], args=args, train_dataset=data,
        processing_class=tokenizer,
    )  # fmt: skip

    times = {"step": [], "rollout": [], "completion_length": []}
    inner = trainer._generate_and_score_completions

    def timed_generate(*a, **k):
        t0 = time.perf_counter()
        out = inner(*a, **k)
        times["rollout"].append(time.perf_counter() - t0)
        times["completion_length"].append(float(out["completion_mask"].sum(1).float().mean()))
        return out

    trainer._generate_and_score_completions = timed_generate

    class StepTimer(TrainerCallback):
        def on_step_begin(self, *_, **__):
            self.t0 = time.perf_counter()

        def on_step_end(self, *_, **__):
            times["step"].append(time.perf_counter() - self.t0)

    trainer.add_callback(StepTimer())
    trainer.train()
    grader.close()
    out = {k: v[1:] for k, v in times.items()}
    out["update"] = [s - r for s, r in zip(out["step"], out["rollout"], strict=True)]
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed iterations (after 1 warm-up)")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument(
        "--micro-batches", type=int, default=8,
        help="corea-jax's gradient accumulation (configs/common.py's default; same gradient)",
    )  # fmt: skip
    parser.add_argument("--skip-trl", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        build_checkpoint(tmp / "model", args.layers, args.hidden, args.vocab)
        results = {
            "corea-jax": bench_corea(
                tmp / "model", tmp / "corea", args.steps, args.new_tokens, args.micro_batches
            )
        }
        if not args.skip_trl:
            results["TRL"] = bench_trl(tmp / "model", tmp / "trl", args.steps, args.new_tokens)

    print(
        f"\nGRPO iteration, {PROMPTS_PER_STEP} prompts x G={GROUP}, {args.new_tokens} new tokens,"
        f" Qwen2 {args.layers} layers / hidden {args.hidden} / vocab {args.vocab}, fp32, "
        f"{os.cpu_count()} CPU cores; median of {args.steps} iterations after a warm-up one; "
        f"corea-jax accumulates over {args.micro_batches} micro-batches, TRL runs one batch"
    )
    print(f"{'':10s} {'step s':>8s} {'rollout s':>10s} {'update s':>9s} {'mean completion':>16s}")
    med = {name: {k: statistics.median(v) for k, v in r.items()} for name, r in results.items()}
    for name, m in med.items():
        print(
            f"{name:10s} {m['step']:8.2f} {m['rollout']:10.2f} {m['update']:9.2f} "
            f"{m['completion_length']:16.1f}"
        )
    if "TRL" in med:
        ratio = med["TRL"]["step"] / med["corea-jax"]["step"]
        print(f"corea-jax is {ratio:.2f}x faster than TRL per iteration (target: >= 2x)")


if __name__ == "__main__":
    main()
