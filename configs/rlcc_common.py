"""The paper's training runs ("RLCC": GRPO with a calibration reward on DeepMath16K), built once.

One file per SLM (`rlcc_qwen7b.py`, `rlcc_qwen1_5b.py`, `rlcc_llama8b.py`) plus the group-size
ablation (`rlcc_group_size.py`). Within a file the runs differ only in the reward, so the reward
is the ARG (variants are data: a key of corea_jax.rl.rewards.PRESETS), and `,smoke` shrinks any of
them to the CPU run of configs/smoke.py:

    --config=configs/rlcc_qwen7b.py:PRESET[,smoke]   PRESET: rlvr | brier | corea (default)
                                                             | corea_l2 | corea_kl

Everything else comes from configs/common.py, whose training sections are the defaults of
corea_jax/rl/config.py's dataclasses, PAPER.md's values: G=8, lr 1e-6, clip 0.2/0.2, beta 0,
temperature 1.0, 2048 new tokens, AdamW with a constant rate after a 10-step warm-up, 32
questions per step in 8 micro-batches, and DeepMath16K (`data.train_size=16_000` of our
seeded split).

Two keys have no default, on purpose:
  model.path  the local HF directory of the checkpoint named by `model.hf_id` (nothing is
              downloaded: fetch it first, e.g. `huggingface-cli download Qwen/Qwen2.5-7B-Instruct
              --local-dir DIR`).
  data.path   DeepMath-103K: its HF dataset directory (`data/train-*.parquet`), or any JSONL
              with `question` and `final_answer` fields. corea_jax.data.deepmath_split puts
              each question on a side by a hash of its text; DeepMath16K is the first 16,000
              train-side questions (the 3,996-row subset in shared/data has 2,787), DeepMath500
              the first 500 test-side ones, whichever file is read.
A relative default would resolve against whatever directory each TPU worker or SLURM task
starts in, and a default pointing at the small subset would train on the wrong data without a
word; left empty, the trainer refuses with `data.path: needed for data.source='deepmath'`.

`model.hf_id` names the checkpoint the run is for: the trainer refuses a `model.path` whose
config.json is another architecture (`corea_jax.models.check_preset`), before loading it, and
`corea-jax plan` sizes the run from the preset.
"""

import ml_collections

from corea_jax.cli.config import ConfigError

from . import smoke as smoke_run
from .common import base_config

PRESETS = ("rlvr", "brier", "corea", "corea_l2", "corea_kl")


def parse_arg(arg, choices, default):
    """`CHOICE[,smoke]` -> (choice, smoke?); "smoke" alone is the default choice, shrunk."""
    parts = [p for p in (arg or "").split(",") if p]
    is_smoke = "smoke" in parts
    rest = [p for p in parts if p != "smoke"]
    if len(rest) > 1 or (rest and rest[0] not in choices):
        raise ConfigError(f"config arg {arg!r}: expected one of {'|'.join(choices)}[,smoke]")
    return (rest[0] if rest else default), is_smoke


def rlcc_config(hf_id: str, preset: str, **optim) -> ml_collections.ConfigDict:
    """COREA training of `hf_id` with reward `preset`; `optim` overrides keys of `c.optim`."""
    c = base_config()
    c.model.hf_id = hf_id
    c.reward.preset = preset
    c.optim.update(optim)
    # What `corea-jax plan` needed for the paper runs to fit (README "Will it fit?"): each
    # decoder layer rematerialised in the update, log-probs in chunks of 256 completion
    # tokens so [rows, 2048, 152k] float32 logits never exist, and the layers as one scan
    # (one layer's FSDP-gathered weights alive at a time: what fits v5e at all, and 22-38% less
    # per chip for 7-8B on 16 v4 / v6e chips). The `,smoke` variants keep all three, so the CPU
    # runs exercise the same update options on their tiny model.
    c.compute.remat = "full"
    c.compute.logprob_chunk = 256
    c.compute.scan_layers = True
    return c


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, ml_collections.ConfigDict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def smoke(c: ml_collections.ConfigDict, keep=()) -> ml_collections.ConfigDict:
    """Shrinks `c` to configs/smoke.py's CPU run: every key smoke.py changes from base_config()
    is copied onto `c` (so the two never drift), except the dotted keys in `keep`, which are the
    point of the variant. The reward, loss and advantage settings of `c` stay as they are."""
    base = dict(_leaves(base_config()))
    for key, value in _leaves(smoke_run.get_config()):
        if key in keep or base.get(key) == value:
            continue
        *parents, leaf = key.split(".")
        node = c
        for name in parents:
            node = node[name]
        node[leaf] = value
    return c
