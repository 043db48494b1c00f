"""The per-parameter table: HF checkpoint name, layout transpose and logical sharding axes.

A parameter is identified by its NNX path, e.g. `('model', 'layers', 3, 'self_attn', 'q_proj',
'kernel')`. The HF name is the same path joined by dots, with flax's leaf names mapped to HF's
(`kernel`/`embedding` -> `weight`); kernels are stored [in, out] here and [out, in] in HF, hence
the transpose. Logical axes come from the module and leaf names (see `corea_jax.parallel.sharding`).
"""

from __future__ import annotations

import re

# Checkpoint keys that are deliberately not loaded, with the reason.
IGNORED_KEYS = {
    r"(.*\.)?rotary_emb\.inv_freq": "RoPE frequencies are recomputed from config.json",
}
# When embeddings are tied, a stored `lm_head.weight` is a copy of `embed_tokens` and is ignored.
TIED_HEAD_KEY = "lm_head.weight"

_LOGICAL_AXES = {
    ("embed_tokens", "embedding"): ("vocab", "embed"),
    ("q_proj", "kernel"): ("embed", "heads"),
    ("q_proj", "bias"): ("heads",),
    ("k_proj", "kernel"): ("embed", "kv_heads"),
    ("k_proj", "bias"): ("kv_heads",),
    ("v_proj", "kernel"): ("embed", "kv_heads"),
    ("v_proj", "bias"): ("kv_heads",),
    ("o_proj", "kernel"): ("heads", "embed"),
    ("o_proj", "bias"): ("norm",),
    ("gate_proj", "kernel"): ("embed", "mlp"),
    ("up_proj", "kernel"): ("embed", "mlp"),
    ("down_proj", "kernel"): ("mlp", "embed"),
    ("lm_head", "kernel"): ("embed", "vocab"),
}
_HF_LEAF = {"kernel": "weight", "embedding": "weight", "weight": "weight", "bias": "bias"}


def hf_name(path: tuple) -> str:
    """NNX parameter path -> HF checkpoint key."""
    *parents, leaf = (str(p) for p in path)
    return ".".join([*parents, _HF_LEAF[leaf]])


def is_transposed(path: tuple) -> bool:
    """Whether the HF tensor is the transpose of ours (linear kernels: [out, in] vs [in, out])."""
    return str(path[-1]) == "kernel"


def logical_axes(path: tuple) -> tuple[str, ...]:
    parent, leaf = str(path[-2]), str(path[-1])
    if leaf == "weight":  # RMSNorm scales
        return ("norm",)
    return _LOGICAL_AXES[(parent, leaf)]


def is_ignored(key: str, tied: bool) -> bool:
    if tied and key == TIED_HEAD_KEY:
        return True
    return any(re.fullmatch(pattern, key) for pattern in IGNORED_KEYS)
