"""Batched KV-cache sampling (see `sampler.py` for the cache layout and the loop state)."""

from corea_jax.sampling.methods import Greedy, Temperature, TopK, TopP, make_method
from corea_jax.sampling.sampler import (
    FINISH_REASONS,
    DecodeState,
    SampleBatch,
    Sampler,
    apply_stop_strings,
    bucket,
    decode_step,
    prefill,
)

__all__ = [
    "FINISH_REASONS",
    "DecodeState",
    "Greedy",
    "SampleBatch",
    "Sampler",
    "Temperature",
    "TopK",
    "TopP",
    "apply_stop_strings",
    "bucket",
    "decode_step",
    "make_method",
    "prefill",
]
