"""User-defined reward terms for tests (given to the trainer as `module:function`)."""

import jax.numpy as jnp


def nan_reward(correct, confidence, format_ok, texts):
    del confidence, format_ok, texts
    return jnp.full(correct.shape, jnp.nan)


def length_bonus(correct, confidence, format_ok, texts):
    del confidence, format_ok
    return jnp.asarray([len(t) / 1000 for t in texts]).reshape(correct.shape)
